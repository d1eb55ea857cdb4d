"""Acquisition speed: camera frame rates and per-point overhead of step and fly scans.

Usage: python bench/acquire.py [--frames N] [--out bench/results/acquire.json]

Starts the beamline IOC in a subprocess on loopback and measures, for each frame size:

* ``stream``: the IOC alone, one ``Acquire`` of N frames (ImageMode Multiple, 1 ms
  exposure, no period) written to HDF5: the compute + write rate of the camera;
* ``stream_100ms``: the same with a 100 ms exposure (the rate a 10 frames/s scan needs);
* ``step``: one ophyd ``trigger()`` per frame over Channel Access (1 ms exposure), as a
  step scan sees it;
* ``raster overhead``: the ``defocused_raster`` plan, 10 x 10 points, 128^2 frames, at
  100 ms and 20 ms exposures, in step mode and in fly mode (step and continuous motion),
  through the session's RunEngine with delivery to an embedded Tiled server (and step
  mode once without Tiled): the mean spacing of frame starts minus the exposure.

Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators.ioc.testing import IOCProcess, configure_client  # noqa: E402

#: (frame size, SizeX in raw pixels, binning)
CASES = [(256, 768, 3), (512, 1536, 3)]


def stream_rate(camera, frames: int, exposure: float) -> float:
    """Frames/s of one multi-frame acquisition written to HDF5."""
    cam, h5 = camera.cam, camera.hdf5
    camera.stage()
    try:
        cam.image_mode.put("Multiple", wait=True)
        cam.num_images.put(frames, wait=True)
        cam.acquire_time.put(exposure, wait=True)
        cam.acquire_period.put(0.0, wait=True)
        start = int(h5.num_captured.get(use_monitor=False))
        finished = threading.Event()

        def count(value=None, **_):
            if value is not None and int(value) >= start + frames:
                finished.set()

        cid = h5.num_captured.subscribe(count, run=False)
        try:
            t0 = time.perf_counter()
            cam.acquire.put(1, wait=False)
            if not finished.wait(60 + frames * (exposure + 1)):
                raise TimeoutError(f"{frames} frames were not written in time")
            return frames / (time.perf_counter() - t0)
        finally:
            h5.num_captured.unsubscribe(cid)
    finally:
        camera.unstage()


def step_rate(camera, frames: int, exposure: float) -> float:
    """Frames/s of one trigger()+wait per frame."""
    camera.cam.acquire_time.put(exposure, wait=True)
    camera.stage()
    try:
        t0 = time.perf_counter()
        for _ in range(frames):
            camera.trigger().wait(30)
        return frames / (time.perf_counter() - t0)
    finally:
        camera.unstage()


def raster_overhead(
    bl, tmp: str, *, mode: str, motion: str, exposure: float, with_tiled: bool
) -> dict:
    """Per-point overhead of a 10 x 10 raster (128^2 frames) beyond the exposure.

    The overhead is the mean spacing of consecutive frame starts minus the exposure, over
    the whole raster (line changes included): event times in step mode, the scan
    controller's trigger times (``frame_time``) in fly mode.
    """
    from plans.ptycho import defocused_raster
    from services.acquisition import make_run_engine
    from services.tiled_server import TiledServer

    params = dict(
        energy_ev=192.0,
        spot_m=0.5e-6,
        overlap=0.8,
        area_m=0.9e-6,
        exposure_s=exposure,
        frame_size=128,
        n_dark=0,
        mode=mode,
        motion=motion,
    )
    label = f"{mode}-{motion}-{exposure:g}-{int(with_tiled)}"
    server = TiledServer(Path(tmp) / f"tiled-{label}", readable=[tmp]) if with_tiled else None
    client = server.start().client() if server else None
    starts: list[float] = []

    def record(name: str, doc: dict) -> None:
        if name == "event":
            starts.append(doc["time"])
        elif name == "event_page":
            starts.extend(doc["data"]["frame_time"])

    try:
        RE = make_run_engine(client, context_managers=[])
        RE(defocused_raster(bl, params))  # warm-up (energy, spot, first file)
        RE.subscribe(record)
        t0 = time.perf_counter()
        RE(defocused_raster(bl, params))
        wall = time.perf_counter() - t0
    finally:
        if server:
            server.stop()
    starts.sort()
    per_point = (starts[-1] - starts[0]) / (len(starts) - 1)
    return {
        "mode": mode,
        "motion": motion,
        "exposure_s": exposure,
        "tiled": with_tiled,
        "points": len(starts),
        "s_per_point": round(per_point, 4),
        "overhead_ms": round((per_point - exposure) * 1e3, 1),
        "run_wall_s": round(wall, 2),
    }


#: (mode, motion) of the overhead cases, each at 100 ms and 20 ms.
MODES = [("step", "step"), ("fly", "step"), ("fly", "continuous")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "acquire.json"))
    args = ap.parse_args()
    configure_client()
    from devices.beamline import make_beamline

    prefix = "BENCH:"
    rows = []
    with tempfile.TemporaryDirectory() as tmp, IOCProcess(prefix, args=["--sample", "bn-bamboo"]):
        bl = make_beamline(prefix, data_dir=tmp, timeout=20)
        bl.shutter.set("open").wait(5)
        camera = bl.camera
        for size, raw, binning in CASES:
            camera.cam.bin_x.put(binning, wait=True)
            camera.cam.bin_y.put(binning, wait=True)
            camera.cam.size_x.put(raw, wait=True)
            camera.cam.size_y.put(raw, wait=True)
            stream_rate(camera, 3, 0.001)  # warm-up: render the object and probe once
            row = {
                "frame_size": size,
                "binning": binning,
                "frames": args.frames,
                "stream_fps": round(stream_rate(camera, args.frames, 0.001), 1),
                "stream_100ms_fps": round(stream_rate(camera, args.frames // 3, 0.1), 2),
                "step_fps": round(step_rate(camera, args.frames, 0.001), 1),
            }
            rows.append(row)
        overhead = [
            raster_overhead(bl, tmp, mode=m, motion=v, exposure=e, with_tiled=True)
            for e in (0.1, 0.02)
            for m, v in MODES
        ]
        overhead.append(
            raster_overhead(bl, tmp, mode="step", motion="step", exposure=0.1, with_tiled=False)
        )
    result = {
        "benchmark": "acquire",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "python": platform.python_version(),
        "results": rows,
        "raster_overhead": overhead,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'frame':>7} {'bin':>4} {'stream fps':>11} {'100 ms fps':>11} {'step fps':>9}")
    for r in rows:
        print(
            f"{r['frame_size']:>5}^2 {r['binning']:>4} {r['stream_fps']:>11} "
            f"{r['stream_100ms_fps']:>11} {r['step_fps']:>9}"
        )
    print(f"{'10x10 raster, 128^2':30} {'exposure':>8} {'s/point':>8} {'overhead ms':>12}")
    for o in overhead:
        label = f"{o['mode']} ({o['motion']} motion)" + ("" if o["tiled"] else ", no Tiled")
        print(f"{label:30} {o['exposure_s']:>8} {o['s_per_point']:>8} {o['overhead_ms']:>12}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
