"""Replay ptychograms as bluesky documents (as the ``spectro_stack`` plan lays them out).

For benchmarks and tests of the worker without an IOC: the documents go to any callback,
typically a :class:`bluesky_tiled_plugins.TiledWriter`, with the frames inline in the
events (Tiled stores them as an internal array ``primary/camera_image``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from event_model import compose_run

from recon.cxi import Ptychogram

Callback = Callable[[str, dict], Any]


def geometry_from(p: Ptychogram, energies: list[float], polarizations: list[str]) -> dict:
    """The start document's ``geometry`` for ptychograms shaped like ``p``."""
    zp = dict(p.zone_plate or {})
    spot = None
    if zp:
        from recon.probe import ZonePlate

        optics = ZonePlate(
            zp["outer_diameter"], zp["outermost_zone_width"], zp.get("central_stop_diameter", 0)
        )
        spot = optics.spot_size_m(zp.get("defocus", 0.0), p.energy_ev)
    return {
        "energies": list(energies),
        "polarizations": list(polarizations),
        "points_per_ptychogram": p.n_frames,
        "spot_m": spot,
        "zone_plate": {k: v for k, v in zp.items() if k != "defocus"},
        "detector_distance_m": p.distance_m,
        "detector_pixel_m": p.pixel_m,
        "binning": int(p.truth.get("binning", 1)),
        "frame_size": p.frame_shape[0],
    }


def replay(
    callback: Callback,
    ptychograms: list[Ptychogram],
    dark_frames: np.ndarray | None = None,
    *,
    md: dict | None = None,
    frame_delay_s: float = 0.0,
    on_frame: Callable[[int, int], None] | None = None,
    stop: bool = True,
    i0: list[np.ndarray] | None = None,
) -> str:
    """Emit one run holding ``ptychograms`` (one after the other, one event per frame).

    Parameters
    ----------
    callback : receives ``(name, doc)``
    ptychograms : the ptychograms, all of one frame shape
    dark_frames : (D, ny, nx) raw dark frames, emitted once in stream ``dark`` first
    md : extra start metadata
    frame_delay_s : sleep between frames (to mimic a camera)
    on_frame : called as ``on_frame(ptychogram, point)`` after each frame's event
    stop : emit the stop document at the end
    i0 : one (n_frames,) array per ptychogram: the incident flux of each frame, recorded
        as ``beam_i0`` (the beam monitor's column); None: no I0 column

    Returns
    -------
    the run's uid
    """
    first = ptychograms[0]
    pols = list(dict.fromkeys(p.polarization for p in ptychograms))
    geometry = geometry_from(first, [p.energy_ev for p in ptychograms], pols)
    bundle = compose_run(
        metadata={
            "plan_name": "replay",
            "geometry": geometry,
            "n_ptychograms": len(ptychograms),
            **(md or {}),
        }
    )
    callback("start", bundle.start_doc)
    shape = list(first.frame_shape)
    dtype = np.dtype(first.frames.dtype).str
    image_key = {"dtype": "array", "shape": shape, "dtype_numpy": dtype, "source": "replay"}
    if dark_frames is not None and len(dark_frames):
        dark = bundle.compose_descriptor(name="dark", data_keys={"camera_image": dict(image_key)})
        callback("descriptor", dark.descriptor_doc)
        for frame in dark_frames:
            now = time.time()
            event = dark.compose_event(
                data={"camera_image": np.asarray(frame)}, timestamps={"camera_image": now}
            )
            callback("event", event)
    number = {"dtype": "number", "shape": [], "source": "replay"}
    integer = {"dtype": "integer", "shape": [], "source": "replay"}
    data_keys = {
        "camera_image": dict(image_key),
        "sample_fx": dict(number),
        "sample_fy": dict(number),
        "optics_energy": dict(number),
        "polarization_readback": {"dtype": "string", "shape": [], "source": "replay"},
        "ptychogram": dict(integer),
        "point": dict(integer),
    }
    if i0 is not None:
        if len(i0) != len(ptychograms) or any(
            len(v) != q.n_frames for v, q in zip(i0, ptychograms, strict=True)
        ):
            raise ValueError("i0: one value per frame of every ptychogram")
        data_keys["beam_i0"] = dict(number)
    primary = bundle.compose_descriptor(name="primary", data_keys=data_keys)
    callback("descriptor", primary.descriptor_doc)
    for k, p in enumerate(ptychograms):
        for i in range(p.n_frames):
            y, x = np.asarray(p.positions_m[i], np.float64) * 1e6
            data = {
                "camera_image": np.asarray(p.frames[i]),
                "sample_fx": float(x),
                "sample_fy": float(y),
                "optics_energy": float(p.energy_ev),
                "polarization_readback": p.polarization or "LH",
                "ptychogram": k,
                "point": i,
            }
            if i0 is not None:
                data["beam_i0"] = float(i0[k][i])
            now = time.time()
            event = primary.compose_event(data=data, timestamps={key: now for key in data})
            callback("event", event)
            if on_frame is not None:
                on_frame(k, i)
            if frame_delay_s:
                time.sleep(frame_delay_s)
    if stop:
        callback("stop", bundle.compose_stop())
    return bundle.start_doc["uid"]


def raw_dark(p: Ptychogram, n: int = 5) -> np.ndarray:
    """(n, ny, nx) stand-in raw dark frames: the ptychogram's averaged dark repeated."""
    dark = np.zeros(p.frame_shape, np.float32) if p.dark is None else p.dark
    return np.repeat(np.rint(dark)[None].astype(p.frames.dtype), n, axis=0)


def iter_documents(*args: Any, **kwargs: Any) -> Iterable[tuple[str, dict]]:
    """The documents of :func:`replay` as a list of ``(name, doc)``."""
    docs: list[tuple[str, dict]] = []
    replay(lambda name, doc: docs.append((name, doc)), *args, **kwargs)
    return docs
