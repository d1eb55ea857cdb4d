"""Frames per second the simulated IOC camera sustains at 256^2 and 512^2.

Usage: python bench/acquire.py [--frames N] [--out bench/results/acquire.json]

Starts the beamline IOC in a subprocess on loopback and measures, for each frame size:

* ``stream``: the IOC alone, one ``Acquire`` of N frames (ImageMode Multiple, 1 ms
  exposure, no period) written to HDF5: the compute + write rate of the camera;
* ``stream_100ms``: the same with a 100 ms exposure (the rate a 10 frames/s scan needs);
* ``step``: one ophyd ``trigger()`` per frame over Channel Access (1 ms exposure), as a
  step scan sees it;
* ``raster overhead``: the ``defocused_raster`` plan, 10 x 10 points at 100 ms exposure,
  128^2 frames, through a RunEngine, without and with the Tiled writer (embedded Tiled
  server): wall time per point minus the exposure.

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


def raster_overhead(bl, tmp: str, with_tiled: bool) -> dict:
    """Per-point overhead (s) of a 10 x 10 raster at 100 ms beyond the exposure."""
    from plans.ptycho import defocused_raster
    from services.acquisition import make_run_engine
    from services.tiled_server import TiledServer

    params = dict(
        energy_ev=192.0,
        spot_m=0.5e-6,
        overlap=0.8,
        area_m=0.9e-6,
        exposure_s=0.1,
        frame_size=128,
        n_dark=0,
    )
    server = (
        TiledServer(Path(tmp) / f"tiled{int(with_tiled)}", readable=[tmp]) if with_tiled else None
    )
    client = server.start().client() if server else None
    times: list[float] = []
    try:
        RE = make_run_engine(client, context_managers=[])
        RE.subscribe(
            lambda name, doc: times.append(time.perf_counter()) if name == "event" else None
        )
        RE(defocused_raster(bl, params))  # warm-up (energy, spot, first file)
        times.clear()
        RE(defocused_raster(bl, params))
    finally:
        if server:
            server.stop()
    per_point = (times[-1] - times[0]) / (len(times) - 1)
    return {
        "tiled": with_tiled,
        "points": len(times),
        "s_per_point": round(per_point, 4),
        "overhead_ms": round((per_point - 0.1) * 1e3, 1),
    }


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
        overhead = [raster_overhead(bl, tmp, False), raster_overhead(bl, tmp, True)]
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
    print(f"{'10x10 raster, 100 ms':24} {'s/point':>8} {'overhead ms':>12}")
    for o in overhead:
        label = "RunEngine + Tiled" if o["tiled"] else "RunEngine only"
        print(f"{label:24} {o['s_per_point']:>8} {o['overhead_ms']:>12}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
