"""Simulated frames per second for 256^2 and 512^2 frames (sample x probe -> camera counts).

Usage: python bench/simulate.py [--frames N] [--out bench/results/simulate.json]

Writes JSON and prints a table. Setup (sample rendering, probe) is timed apart from the
per-frame work (sub-pixel probe shift, exit wave, FFT, detector noise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Run as a script, bench/ comes first on sys.path and bench/recon.py would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from simulators.dataset import Simulation, SimulationParams  # noqa: E402

CASES = [
    ("bn-bamboo", 192.0, 1e-6, 0.9, 256),
    ("bn-bamboo", 192.0, 1e-6, 0.9, 512),
    ("permalloy-rods", 706.0, 0.2e-6, 0.5, 256),
    ("permalloy-rods", 706.0, 0.2e-6, 0.5, 512),
]


def run_case(sample: str, energy: float, spot: float, overlap: float, size: int, frames: int):
    t0 = time.perf_counter()
    params = SimulationParams(
        sample=sample,
        energy_ev=energy,
        spot_m=spot,
        overlap=overlap,
        area_m=2e-6,
        frame_size=size,
        seed=1,
    )
    sim = Simulation(params)
    setup = time.perf_counter() - t0
    n = min(frames, sim.n_points)
    sim.frame(0)  # warm-up (FFT plans, caches)
    t0 = time.perf_counter()
    for i in range(n):
        sim.frame(i)
    dt = time.perf_counter() - t0
    return {
        "sample": sample,
        "energy_ev": energy,
        "frame_size": size,
        "binning": sim.binning,
        "frames": n,
        "setup_s": round(setup, 3),
        "seconds": round(dt, 3),
        "frames_per_s": round(n / dt, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--out", default="bench/results/simulate.json")
    args = ap.parse_args()
    rows = [run_case(*case, args.frames) for case in CASES]
    result = {
        "benchmark": "simulate",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{'sample':16} {'frame':>6} {'bin':>4} {'setup s':>8} {'frames/s':>9}")
    for r in rows:
        print(
            f"{r['sample']:16} {r['frame_size']:>6} {r['binning']:>4} {r['setup_s']:>8.2f} "
            f"{r['frames_per_s']:>9.1f}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
