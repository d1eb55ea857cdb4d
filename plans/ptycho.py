"""Bluesky plans for defocused (spectro-)ptychography.

The plans take the beamline's devices (see :func:`devices.beamline.make_beamline`) and a
validated parameter model; they never move anything before the parameters are accepted.
Every point is one event in the ``primary`` stream carrying the camera frame (as an external
reference), the fine stage readbacks (in fly mode, :mod:`plans.fly`, the encoder positions
measured during the exposure and their spread), the energy, the polarization, the incident
flux and the ptychogram and point indices. Dark frames go to the ``dark`` stream. The
shutter is closed at the end, on abort and on Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg
from ophyd import Signal

from plans.dose_check import check_scan_dose, coarse_offset_um
from plans.fly import fly_ptychogram, make_flyer
from plans.guards import BeamGuard, acquire_point, move_or_pause
from plans.parameters import RasterParams, ScanParams, StackParams, total_dose_gray

Plan = Generator[Msg, Any, Any]


def dark_frames(
    camera: Any,
    shutter: Any,
    num: int = 25,
    *,
    stream: str = "dark",
    monitor: Any,
    guard: BeamGuard | None = None,
) -> Plan:
    """Close the shutter, read ``num`` camera frames into ``stream``, restore the shutter.

    Must run inside an open run with ``camera`` staged. The camera is re-staged before and
    after, so the dark frames get an HDF5 file of their own (one file per stream, as the
    Tiled writer maps each file onto one stream). Camera faults that persist pause the scan
    (see :func:`plans.guards.acquire_point`); ``monitor`` is the beam monitor.
    """
    reading = yield from bps.rd(shutter.status)
    was_open = reading == "Open"
    yield from bps.mv(shutter, "close")
    yield from _new_file(camera)
    for _ in range(num):
        yield from bps.checkpoint()
        if monitor is None:
            yield from bps.trigger_and_read([camera], name=stream)
        else:
            yield from acquire_point(
                [camera],
                camera,
                monitor,
                shutter,
                guard or BeamGuard(),
                stream=stream,
                check_beam=False,
            )
    yield from _new_file(camera)
    yield from bps.checkpoint()  # a replay never rewinds into the closed dark file
    if was_open:
        yield from bps.mv(shutter, "open")


def _new_file(camera: Any) -> Plan:
    """Close the camera's file and open a new one."""
    yield from bps.unstage(camera)
    yield from bps.stage(camera)


class _Index:
    """Soft signals stamped on every event: which ptychogram, which point."""

    def __init__(self) -> None:
        self.ptychogram = Signal(name="ptychogram", value=0, kind="hinted")
        self.point = Signal(name="point", value=0, kind="hinted")


def _ptychogram(bl: Any, params: ScanParams, index: _Index, number: int, guard: BeamGuard) -> Plan:
    """Raster the sample through one ptychogram (inside an open run, camera staged).

    Every point starts at a checkpoint (a pause or a suspension takes it again) and is
    saved only with beam (:func:`plans.guards.acquire_point`); a stalled stage pauses.
    """
    stage_um = params.stage_positions_um()
    yield from bps.mv(index.ptychogram, number)
    yield from bps.mv(bl.shutter, "open")
    detectors = [
        bl.camera,
        bl.sample.fx,
        bl.sample.fy,
        bl.optics.energy,
        bl.undulator,
        bl.monitor.i0,
        index.ptychogram,
        index.point,
    ]
    for i, (y_um, x_um) in enumerate(stage_um):
        yield from bps.checkpoint()  # a pause resumes from this point
        yield from move_or_pause(bl.shutter, bl.sample.fx, x_um, bl.sample.fy, y_um, index.point, i)
        yield from acquire_point(detectors, bl.camera, bl.monitor, bl.shutter, guard)


def geometry_metadata(params: ScanParams, energies: list[float], polarizations: list[str]) -> dict:
    """Scan geometry and dose estimate for the start document (all the worker needs).

    Units: metres, seconds, eV; ``grid`` is (ny, nx) for a raster, ``None`` for a spiral.
    """
    from recon.scan import raster_shape

    pixel = params.detector_pixel_m * params.detector_binning
    dose = params.dose_per_ptychogram(energies[0])
    return {
        "energies": [float(e) for e in energies],
        "polarizations": list(polarizations),
        "pattern": params.pattern,
        "grid": list(raster_shape(params.area_m, params.step_m))
        if params.pattern == "raster"
        else None,
        "points_per_ptychogram": params.n_points,
        "area_m": params.area_m,
        "step_m": params.step_m,
        "spot_m": params.spot_m,
        "overlap": params.overlap,
        "centre_um": list(params.centre_um),
        "zone_plate": params.zone_plate(),
        "detector_distance_m": params.distance_m,
        "detector_pixel_m": pixel,
        "binning": params.detector_binning,
        "frame_size": params.frame_size,
        "exposure_s": params.exposure_s,
        "dark_frames": params.n_dark,
        "acquisition": acquisition_metadata(params),
        "dose": {
            "k": dose["k"],
            "max_exposures": dose["max_exposures"],
            "mean_exposures": dose["mean_exposures"],
            "dose_gray_per_ptychogram": dose["dose_gray"],
            "dose_gray_total": total_dose_gray(params, energies, len(polarizations)),
            "material": params.material,
            "thickness_m": params.thickness_m,
            "flux_ph_s": params.flux_ph_s,
        },
    }


def acquisition_metadata(params: ScanParams) -> dict:
    """How the frames were taken: ``mode``, ``motion`` and the probe's travel during one
    exposure (``blur_m``, m: about one step in continuous motion, 0 otherwise)."""
    from plans.fly import TRIGGER_MARGIN_S

    blur = 0.0
    if params.mode == "fly" and params.motion == "continuous":
        dead = 0.003 + TRIGGER_MARGIN_S  # camera readout of a small crop, plus the margin
        blur = params.step_m * params.exposure_s / (params.exposure_s + dead)
    return {"mode": params.mode, "motion": params.motion, "blur_m": blur}


def configure_camera(camera: Any, params: ScanParams) -> Plan:
    """Exposure, binning and the centred crop of the camera (before it is staged)."""
    start, span = params.camera_region()
    b = params.detector_binning
    cam = camera.cam
    yield from bps.mv(cam.acquire_time, params.exposure_s, cam.bin_x, b, cam.bin_y, b)
    yield from bps.mv(cam.min_x, start, cam.min_y, start, cam.size_x, span, cam.size_y, span)


def _safe(bl: Any, plan: Plan) -> Plan:
    """Run ``plan`` and close the shutter whatever happens (end, abort, Ctrl-C)."""

    def close() -> Plan:
        yield from bps.abs_set(bl.shutter, "close", wait=True)

    return (yield from bpp.finalize_wrapper(plan, close()))


def raster_as_stack(p: RasterParams) -> StackParams:
    """The one-ptychogram stack a raster is run as."""
    return StackParams(
        **p.model_dump(exclude={"energy_ev", "polarization"}),
        energies=[p.energy_ev],
        polarizations=[p.polarization],
        dark="once" if p.n_dark else "none",
    )


def defocused_raster(
    bl: Any,
    params: RasterParams | dict,
    *,
    md: dict | None = None,
    guard: BeamGuard | None = None,
    dose_ledger: Any = None,
) -> Plan:
    """One defocused ptychogram: dark frames, spot size, energy, polarization, raster.

    Parameters
    ----------
    bl : beamline devices (camera, shutter, sample, optics, undulator, monitor)
    params : :class:`RasterParams` or a dict of its fields (validated first)
    md : extra start-document metadata
    guard : beam thresholds of the per-frame check (defaults of :class:`BeamGuard`)
    dose_ledger : the sample's received dose (``read(sample)``), for the budget check
        (:func:`plans.dose_check.check_scan_dose`, before anything moves)
    """
    p = params if isinstance(params, RasterParams) else RasterParams(**params)
    stack = raster_as_stack(p)
    return (
        yield from _run(
            bl,
            stack,
            plan_name="defocused_raster",
            plan_args=p.model_dump(),
            md=md,
            guard=guard,
            dose_ledger=dose_ledger,
        )
    )


def spectro_stack(
    bl: Any,
    params: StackParams | dict,
    *,
    md: dict | None = None,
    guard: BeamGuard | None = None,
    dose_ledger: Any = None,
) -> Plan:
    """Energies x polarizations of defocused ptychograms in one run.

    The spot size is kept at every energy (the zone plate follows the focal length), dark
    frames are taken once or at every energy change, and every event carries energy,
    polarization, ptychogram index and point index. With a dose budget the scan is refused
    before anything moves when it would take the sample over it (``dose_ledger``: see
    :func:`defocused_raster`).
    """
    p = params if isinstance(params, StackParams) else StackParams(**params)
    return (
        yield from _run(
            bl,
            p,
            plan_name="spectro_stack",
            plan_args=p.model_dump(),
            md=md,
            guard=guard,
            dose_ledger=dose_ledger,
        )
    )


def _run(
    bl: Any,
    p: StackParams,
    *,
    plan_name: str,
    plan_args: dict,
    md: dict | None,
    guard: BeamGuard | None,
    dose_ledger: Any = None,
) -> Plan:
    dose_check = check_scan_dose(p, bl, dose_ledger)  # raises before any message
    index = _Index()
    guard = guard or BeamGuard()
    flyer = make_flyer(bl, index) if p.mode == "fly" else None
    metadata = {
        "plan_name": plan_name,
        "plan_args": plan_args,
        "geometry": geometry_metadata(p, p.energies, p.polarizations),
        "order": p.order,
        "dark_policy": p.dark,
        "n_ptychograms": len(p.energies) * len(p.polarizations),
        "beam_guard": guard.model_dump(),
        "sample_coarse_um": list(coarse_offset_um(bl)),
        "dose_check": dose_check,
        **({"sample": p.sample} if p.sample else {}),  # bluesky wants a str or a dict there
        **(md or {}),
    }

    @bpp.stage_decorator([bl.camera])
    @bpp.run_decorator(md=metadata)
    def inner() -> Plan:
        if flyer is not None:
            yield from bps.declare_stream(flyer, name="primary", collect=True)
        yield from move_or_pause(bl.shutter, bl.optics.spot, p.spot_m * 1e6)
        last_energy = None
        dark_done = False
        for number, energy, pol in p.ptychograms():
            if energy != last_energy:
                yield from move_or_pause(bl.shutter, bl.optics.energy, energy)
                if p.n_dark and (p.dark == "per-energy" or (p.dark == "once" and not dark_done)):
                    yield from dark_frames(
                        bl.camera, bl.shutter, p.n_dark, monitor=bl.monitor, guard=guard
                    )
                    dark_done = True
                last_energy = energy
            yield from move_or_pause(bl.shutter, bl.undulator, pol)
            if flyer is None:
                yield from _ptychogram(bl, p, index, number, guard)
            else:
                yield from fly_ptychogram(bl, p, index, number, guard, flyer)
        yield from bps.mv(bl.shutter, "close")

    yield from configure_camera(bl.camera, p)
    return (yield from _safe(bl, inner()))
