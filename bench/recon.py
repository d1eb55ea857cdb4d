"""Benchmark of the reconstruction engines: seconds per iteration of AP, DM and ML.

Usage::

    .venv/bin/python bench/recon.py [--quick] [--backend auto|numpy|cupy] [--repeat 3]

Cases: N = 100, 400, 1600 frames of 128^2 and 256^2 (``--quick``: N = 100, 400 of 128^2),
plus the reference case of 516 frames of 128^2 whose AP iteration is compared with the
"two-FFT floor" (a forward and an inverse FFT of the same stack, measured in the same run).
Writes ``bench/results/recon.json`` and prints a table. Peak memory: tracemalloc peak of the
case (NumPy registers its buffers with tracemalloc) and the process's max RSS on the CPU; the
CuPy memory pool's total on the GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recon.algorithms import Engine  # noqa: E402
from recon.backend import FFT_WORKERS, fft2c, ifft2c, resolve_backend  # noqa: E402
from recon.engine_options import EngineOptions  # noqa: E402
from recon.operators import PtychoOperator  # noqa: E402
from recon.probe import ZonePlate, zone_plate_probe  # noqa: E402


def scan(n_frames: int, n: int, seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """Raster positions (~85 % overlap of a spot of n/2) with sub-pixel jitter."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_frames)))
    step = 0.075 * n
    g = np.arange(side) * step
    yy, xx = np.meshgrid(g, g, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1)[:n_frames] + 8 + rng.uniform(0, 1, (n_frames, 2))
    size = int(np.ceil(pos.max())) + n + 9
    return pos, (size, size)


def make_case(n_frames: int, n: int, xp, seed: int = 0):
    """Noise-free model intensities of a random phase object (FFT order), on ``xp``."""
    rng = np.random.default_rng(seed)
    pos, shape = scan(n_frames, n, seed)
    obj = np.exp(0.5j * rng.standard_normal(shape)).astype(np.complex64)
    pixel = 25e-9 * 128 / n
    probe = zone_plate_probe(ZonePlate(), 700.0, 30e-6 * n / 128, n, pixel) * np.float32(1e3)
    op = PtychoOperator(pos, (n, n), shape)
    inten = op.intensities(obj, probe[None], centred=False)
    return xp.asarray(inten), xp.asarray(pos), xp.asarray(probe[None]), shape


def sync(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def time_iterations(engine: Engine, name: str, repeat: int) -> float:
    """Best time of ``repeat`` iterations of ``name`` after two warm-up iterations."""
    xp = engine.xp
    for _ in range(2):
        engine.iterate(name)
    sync(xp)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        engine.iterate(name)
        sync(xp)
        best = min(best, time.perf_counter() - t0)
    return best


def run_case(n_frames: int, n: int, xp, repeat: int) -> dict:
    inten, pos, probe, shape = make_case(n_frames, n, xp)
    opts = EngineOptions(probe_update_start=0)
    out: dict = {"frames": n_frames, "frame_size": n, "object_shape": list(shape)}
    for name in ("AP", "DM", "ML"):
        if xp is np:
            tracemalloc.start()
        else:
            xp.get_default_memory_pool().free_all_blocks()
        engine = Engine(inten, pos, probe, shape, options=opts)
        seconds = time_iterations(engine, name, repeat)
        if xp is np:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        else:
            peak = xp.get_default_memory_pool().total_bytes()
        out[name] = {"seconds_per_iteration": seconds, "peak_memory_mb": peak / 2**20}
        out["subpixel_bins"] = int(engine.shifts.shape[0])
        del engine
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def reference(xp, repeat: int) -> dict:
    """516 x 128^2: AP iterations and the two-FFT floor timed alternately (best of each), so
    that both see the same machine load."""
    inten, pos, probe, shape = make_case(516, 128, xp)
    engine = Engine(inten, pos, probe, shape, options=EngineOptions(probe_update_start=0))
    for _ in range(2):
        engine.iterate("AP")
    a = xp.ones((516, 1, 128, 128), np.complex64)
    ap = floor = float("inf")
    for _ in range(repeat):
        sync(xp)
        t0 = time.perf_counter()
        engine.iterate("AP")
        sync(xp)
        ap = min(ap, time.perf_counter() - t0)
        t0 = time.perf_counter()
        a = ifft2c(fft2c(a, overwrite=True), overwrite=True)
        sync(xp)
        floor = min(floor, time.perf_counter() - t0)
    return {"ap_seconds": ap, "two_fft_floor_s": floor, "ap_over_floor": ap / floor}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 100, 400 of 128^2 only")
    ap.add_argument("--backend", default="auto", help="auto, numpy or cupy")
    ap.add_argument("--repeat", type=int, default=3, help="timed iterations per algorithm")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "recon.json"))
    args = ap.parse_args(argv)
    xp = resolve_backend(args.backend)
    backend = "numpy" if xp is np else "cupy"
    sizes = (
        [(100, 128), (400, 128)]
        if args.quick
        else [(100, 128), (400, 128), (1600, 128), (100, 256), (400, 256), (1600, 256)]
    )
    cases = []
    for n_frames, n in sizes:
        cases.append(run_case(n_frames, n, xp, args.repeat))
        c = cases[-1]
        print(
            f"N={n_frames:5d} {n:4d}^2  AP {c['AP']['seconds_per_iteration']:7.3f} s  "
            f"DM {c['DM']['seconds_per_iteration']:7.3f} s  "
            f"ML {c['ML']['seconds_per_iteration']:7.3f} s  "
            f"peak {max(c[a]['peak_memory_mb'] for a in ('AP', 'DM', 'ML')):7.0f} MB",
            flush=True,
        )
    ref = run_case(516, 128, xp, args.repeat)
    pair = reference(xp, max(2 * args.repeat, 8))
    print(
        f"N=  516  128^2  AP {pair['ap_seconds']:7.3f} s  "
        f"2-FFT floor {pair['two_fft_floor_s']:.3f} s  ratio {pair['ap_over_floor']:.2f}  "
        f"(DM {ref['DM']['seconds_per_iteration']:.3f} s, "
        f"ML {ref['ML']['seconds_per_iteration']:.3f} s)"
    )
    result = {
        "backend": backend,
        "fft_workers": FFT_WORKERS,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cases": cases,
        "reference_516x128": {**ref, **pair},
        "command": "bench/recon.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
