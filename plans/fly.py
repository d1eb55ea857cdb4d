"""Hardware-timed (fly) ptychograms: the scan controller moves the stage and triggers the camera.

A ptychogram is loaded into the controller once (:func:`fly_trajectory`: raster lines in
snake order, or the Fermat spiral cut into segments) and flown one segment (a raster line)
at a time with the :class:`devices.flyer.FlyScan` flyer. Each segment starts at a
checkpoint, so a pause or a beam suspension flies it again from its start, and it becomes
events only after its records are checked:

* the controller stopped (servo fault, abort): pause with one line naming it; resuming
  flies the segment again;
* frames missing (dropped by the writer, missed triggers) or none at all (a hung camera):
  the segment is flown again at once, up to ``retries`` times, then the scan pauses;
* a frame without beam (I0 or ring current below the guard's thresholds, or the shutter
  closed during it): the segment is dropped, the scan waits for the beam (as a suspension
  does) and flies it again.

Frames of a segment flown again overwrite the earlier attempt's in the camera file (the
writer's position mode), so the file and the events hold each point once, in order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import FailedStatus, Msg

from devices.flyer import FlyKeys, FlyScan, Trajectory
from devices.scanner import ScannerStoppedError
from plans.guards import (
    BeamGuard,
    _ensure_open,
    _status_line,
    notice,
    pause_for_fault,
    wait_for_beam,
)
from plans.parameters import ScanParams

Plan = Generator[Msg, Any, Any]
log = logging.getLogger("sptycho.plans")

#: Time between the end of a frame's readout and the next trigger (s).
TRIGGER_MARGIN_S = 0.001


def fly_trajectory(params: ScanParams) -> tuple[np.ndarray, list[np.ndarray]]:
    """Acquisition order and segments of a ptychogram.

    Returns
    -------
    order : (N,) int64 indices into ``params.stage_positions_um()`` in acquisition order
        (raster: row by row, every other row reversed; spiral: outwards)
    segments : list of (M_k,) int64 positions in ``order`` of each segment (raster: one
        per row; spiral: ``ceil(sqrt(N))`` consecutive points)
    """
    n = params.n_points
    if params.pattern == "raster":
        from recon.scan import raster_shape

        ny, nx = raster_shape(params.area_m, params.step_m)
        rows = np.arange(ny * nx, dtype=np.int64).reshape(ny, nx)
        rows[1::2] = rows[1::2, ::-1]
        order = rows.ravel()
        segments = [np.arange(r * nx, (r + 1) * nx, dtype=np.int64) for r in range(ny)]
        return order, segments
    order = np.arange(n, dtype=np.int64)
    size = max(1, math.ceil(math.sqrt(n)))
    return order, [order[i : i + size] for i in range(0, n, size)]


def make_flyer(bl: Any, index: Any) -> FlyScan:
    """The flyer of a run: the beamline's camera and scan controller, and the values read
    once per segment (energy, polarization, ptychogram index)."""
    static = {
        bl.optics.energy.name: lambda: float(bl.optics.energy.position),
        bl.undulator.readback.name: lambda: str(bl.undulator.readback.get()),
        index.ptychogram.name: lambda: int(index.ptychogram.get()),
    }
    keys = FlyKeys(
        x=bl.sample.fx.name,
        y=bl.sample.fy.name,
        i0=bl.monitor.i0.name,
        ring=bl.monitor.ring_current.name,
        shutter=bl.shutter.status.name,
        point=index.point.name,
    )
    return FlyScan(bl.camera, bl.scanner, static=static, keys=keys, name="fly")


def segment_beam_problem(rows: dict[str, np.ndarray], guard: BeamGuard) -> str | None:
    """Why a flown segment is not data (its first frame without beam), or None."""
    beam = zip(rows["i0"], rows["ring"], rows["shutter"], strict=True)
    for j, (i0, ring, shutter) in enumerate(beam):
        problem = guard.problem(float(ring), float(i0))
        if problem is None and not shutter > 0.5:
            problem = "the shutter closed by itself"
        if problem is not None:
            return f"{problem} (frame {j} of the line)"
    return None


def _fly_segment(
    flyer: FlyScan,
    bl: Any,
    guard: BeamGuard,
    key: tuple,
    first: int,
    points: np.ndarray,
    retries: int,
) -> Plan:
    """Fly one segment until it is good, then collect it as events."""
    failures = 0
    while True:
        yield from bps.checkpoint()  # a pause or suspension flies the segment again
        flyer.segment(key, first, len(points), points)
        try:
            yield from bps.kickoff(flyer, wait=True)
            yield from bps.complete(flyer, wait=True)
        except FailedStatus as err:
            line = _status_line(err)
            cause = err.args[0].exception() if err.args else None
            failures += 1
            if failures <= retries and not isinstance(cause, ScannerStoppedError):
                log.warning("%s; flying the line again (%d of %d)", line, failures, retries)
                continue
            what = "check the scan controller" if isinstance(cause, ScannerStoppedError) else ""
            yield from pause_for_fault(
                f"{line}; {what or 'check the camera'}, then resume", bl.shutter
            )
            yield from _ensure_open(bl.shutter)
            failures = 0
            continue
        problem = segment_beam_problem(flyer.beam_rows(), guard)
        if problem is None:
            yield from bps.collect(flyer, name="primary")
            yield from bps.checkpoint()  # a replay never repeats a collected segment
            return
        flyer.discard()
        yield from bps.checkpoint()  # a suspension from here on replays only the wait
        notice(f"suspended: {problem}")
        yield from bps.abs_set(bl.shutter, "close", wait=True)
        yield from wait_for_beam(bl.monitor, guard)
        yield from _ensure_open(bl.shutter)
        notice(None)


def fly_ptychogram(
    bl: Any,
    params: ScanParams,
    index: Any,
    number: int,
    guard: BeamGuard,
    flyer: FlyScan,
    *,
    retries: int = 3,
) -> Plan:
    """One hardware-timed ptychogram (inside an open run, camera staged, stream declared).

    Parameters
    ----------
    bl : beamline devices (camera, scanner, shutter, monitor, sample, optics, undulator)
    params : the scan (``motion``: ``step`` or ``continuous``)
    index : the run's ptychogram and point index signals
    number : this ptychogram's index
    guard : beam thresholds of the per-frame check
    flyer : the run's flyer (:func:`make_flyer`)
    retries : segments flown again at once after missing frames before the scan pauses
    """
    order, segments = fly_trajectory(params)
    targets = params.stage_positions_um()[order]  # (N, 2) as (y, x)
    readout = yield from bps.rd(bl.camera.cam.readout_time)
    period = params.exposure_s + float(readout or 0.0) + TRIGGER_MARGIN_S
    trajectory = Trajectory(
        xy_um=targets[:, ::-1].copy(),
        motion="Continuous" if params.motion == "continuous" else "Step",
        period_s=period,
        gate_s=params.exposure_s,
    )
    yield from bps.mv(index.ptychogram, number)
    yield from bps.prepare(flyer, trajectory, wait=True)
    yield from bps.mv(bl.shutter, "open")
    for s, seg in enumerate(segments):
        yield from _fly_segment(
            flyer, bl, guard, (number, s), int(seg[0]), order[seg], retries=retries
        )
