"""Benchmark of the reconstruction engine: seconds per iteration of every algorithm.

Usage::

    .venv/bin/python bench/recon.py [--quick] [--backend auto|numpy|cupy] [--repeat 3]
                                    [--output bench/results/recon.json]

Cases: N = 100, 400, 1600 frames of 128^2 and 256^2 (``--quick``: N = 100, 400 of 128^2),
plus the reference case of 516 frames of 128^2 (timed ``max(2 repeat, 8)`` times;
``max(2 repeat, 3)`` with ``--quick``). Every algorithm of
:data:`recon.algorithms.ALGORITHMS` (AP, DM, RAAR, EPIE, RPIE, ML) runs on a fresh engine:
two warm-up iterations, then ``--repeat`` timed iterations, each followed by the "two-FFT
floor" (one forward and one inverse FFT of a stack of the same shape), so that both see the
same machine load; the best of each is kept. An algorithm that raises (e.g.
``NotImplementedError``) is reported as not available and the run goes on. The stacks of the
small cases partly fit in the CPU's caches, so their bandwidth floor means less.

Three floors per iteration:

* **two-FFT floor** (``/2FFT``): the time of the two stack FFTs that AP and DM cannot avoid,
  done the usual way (``scipy.fft`` over the whole stack, multi-threaded);
* **in-cache two-FFT floor** (``/cache``, NumPy with numba and rocket-fft): the same FFTs
  frame by frame in parallel, each frame in cache, as the engine's Fourier pass of AP, DM
  and RAAR runs them (``recon/numba_fourier.py``). It is the FFT work alone of that pass,
  so AP over it is what everything else in the iteration costs;
* **bandwidth floor**: the modelled bytes an iteration moves through memory
  (:func:`bandwidth.iteration_traffic`, documented in ``bench/bandwidth.py``) over the
  back-end's copy bandwidth, measured at the end of the run (best of ``max(5, repeat)``
  copies ``a[...] = b`` of 256 MiB; NumPy and a numba parallel copy on the CPU, a
  device-to-device copy timed with CUDA events on CuPy). In complex64 wave stacks
  ``S = N K n^2 * 8`` bytes and float32 frame stacks ``F = N n^2 * 4`` bytes read or written
  per iteration (one chunk, probe updated, without the deviance subset; with the Fourier
  pass in cache AP is ``3 S + F`` and DM/RAAR ``5 S + F``): AP ``9 S + F``
  (exit waves 1, FFT 2, modulus projection 2 + F, inverse FFT 2, object and probe
  back-projections 1 each), DM and RAAR ``11 S + F`` (the update reads and writes the
  iterate too), ML ``20 S + 18 F`` (gradient pass as AP; the line search transforms two
  direction waves and keeps 5 coefficient stacks), ePIE/rPIE ``23 S + F`` (over one batch's
  waves, which stay in cache; see ``bench/bandwidth.py``).

Writes the JSON (``--output``) and prints a table. Peak memory: the tracemalloc peak of the
engine's construction and warm-up iterations (NumPy registers its buffers with tracemalloc)
and the process's max RSS on the CPU; the growth of the CuPy memory pool on the GPU.
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The package ``recon`` before this script's folder (where ``bandwidth`` lives).
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bandwidth import copy_bandwidth, iteration_traffic  # noqa: E402

from recon import kernels  # noqa: E402
from recon.algorithms import ALGORITHMS, Engine  # noqa: E402
from recon.backend import FFT_WORKERS, fft2c, ifft2c, resolve_backend  # noqa: E402
from recon.engine_options import EngineOptions  # noqa: E402
from recon.numba_kernels import num_threads  # noqa: E402
from recon.operators import PtychoOperator  # noqa: E402
from recon.probe import ZonePlate, zone_plate_probe  # noqa: E402

REFERENCE = (516, 128)


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
    """Wait for the GPU's queued work (CuPy); nothing on NumPy."""
    if xp is not np:
        xp.cuda.Device().synchronize()


class PeakMemory:
    """Peak memory of a block: tracemalloc (NumPy) or the CuPy pool's growth (bytes)."""

    def __init__(self, xp) -> None:
        self.xp = xp
        self.pool = None if xp is np else xp.get_default_memory_pool()
        self.base = 0

    def start(self) -> None:
        if self.pool is None:
            tracemalloc.start()
        else:
            self.pool.free_all_blocks()
            self.base = self.pool.used_bytes()

    def stop(self) -> int:
        if self.pool is None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            return peak
        return self.pool.total_bytes() - self.base


def two_ffts(stack: Any) -> Any:
    """One forward and one inverse FFT of the (N, K, n, n) complex64 stack (in place);
    returns the result."""
    return ifft2c(fft2c(stack, overwrite=True), overwrite=True)


def fft_pair_in_cache(stack: Any) -> Any:
    """The same FFT pair frame by frame in parallel (numba + rocket-fft), each frame in
    cache: the FFT work of the engine's in-cache Fourier pass alone (NumPy only)."""
    from recon import numba_fourier

    numba_fourier.fft_pair_by_frame(stack)
    return stack


def run_algorithm(name: str, data: tuple, xp, repeat: int, floor: dict) -> dict:
    """Time ``repeat`` iterations of ``name`` alternated with the two-FFT floors.

    ``floor["stack"]`` is the (N, K, n, n) complex64 stack the floors transform (replaced by
    the result on CuPy). Where the engine runs its Fourier side in cache
    (:func:`recon.kernels.fourier_in_cache`) the in-cache floor is timed too.
    """
    inten, pos, probe, shape = data
    memory = PeakMemory(xp)
    memory.start()
    try:
        engine = Engine(inten, pos, probe, shape, options=EngineOptions(probe_update_start=0))
        for _ in range(2):
            engine.iterate(name)
        sync(xp)
    except NotImplementedError as exc:
        memory.stop()
        return {"available": False, "reason": f"not available (NotImplementedError: {exc})"}
    except Exception as exc:  # a benchmark reports a broken algorithm and goes on
        memory.stop()
        return {"available": False, "reason": f"failed ({type(exc).__name__}: {exc})"}
    peak = memory.stop()
    in_cache = kernels.fourier_in_cache(xp)
    seconds = fft = fft_cached = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        engine.iterate(name)
        sync(xp)
        seconds = min(seconds, time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor["stack"] = two_ffts(floor["stack"])
        sync(xp)
        fft = min(fft, time.perf_counter() - t0)
        if in_cache:
            t0 = time.perf_counter()
            fft_pair_in_cache(floor["stack"])
            fft_cached = min(fft_cached, time.perf_counter() - t0)
    traffic = iteration_traffic(
        name,
        engine.n_frames,
        engine.n_modes,
        engine.frame_shape,
        len(engine.chunks),
        engine.deviance_every,
        engine.update_probe_now(),
        fused_deviance=kernels.numba_enabled(xp),
        fused_fourier=in_cache,
    )
    return {
        "available": True,
        "seconds_per_iteration": seconds,
        "two_fft_floor_s": fft,
        "over_two_fft_floor": seconds / fft,
        "two_fft_in_cache_floor_s": fft_cached if in_cache else None,
        "over_two_fft_in_cache_floor": seconds / fft_cached if in_cache else None,
        "bytes_per_iteration": traffic["bytes"],
        "traffic": traffic,
        "peak_memory_mb": peak / 2**20,
        "subpixel_bins": int(engine.shifts.shape[0]),
        "chunks": len(engine.chunks),
    }


def run_case(n_frames: int, n: int, xp, repeat: int) -> dict:
    """Every algorithm on N = ``n_frames`` frames of ``n``^2."""
    data = make_case(n_frames, n, xp)
    floor = {"stack": xp.ones((n_frames, data[2].shape[0], n, n), np.complex64)}
    out: dict = {"frames": n_frames, "frame_size": n, "object_shape": list(data[3])}
    for name in ALGORITHMS:
        out[name] = row = run_algorithm(name, data, xp, repeat, floor)
        text = (
            f"{row['seconds_per_iteration']:.3f} s/it, {row['over_two_fft_floor']:.2f} x "
            f"two-FFT floor"
            if row["available"]
            else row["reason"]
        )
        print(f"  N={n_frames} {n}^2 {name:5s} {text}", flush=True)
    out["algorithms"] = list(ALGORITHMS)
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def add_bandwidth_floor(case: dict, bytes_per_second: float) -> None:
    """Add ``bandwidth_floor_s`` and ``over_bandwidth_floor`` to the case's algorithms."""
    for name in case["algorithms"]:
        row = case[name]
        if row["available"]:
            row["bandwidth_floor_s"] = row["bytes_per_iteration"] / bytes_per_second
            row["over_bandwidth_floor"] = row["seconds_per_iteration"] / row["bandwidth_floor_s"]


def table(cases: list[dict]) -> str:
    """The short text table of all cases and algorithms."""
    lines = [
        f"{'frames':>6} {'n':>4} {'alg':5} {'s/it':>8} {'/2FFT':>6} {'/cache':>6} {'MB/it':>7} "
        f"{'BW floor s':>10} {'/BW':>6} {'peak MB':>8}"
    ]
    for c in cases:
        for name in c["algorithms"]:
            r = c[name]
            head = f"{c['frames']:6d} {c['frame_size']:4d} {name:5}"
            if not r["available"]:
                lines.append(f"{head} {r['reason']}")
                continue
            cached = r.get("over_two_fft_in_cache_floor")
            cached = f"{cached:6.2f}" if cached else f"{'-':>6}"
            lines.append(
                f"{head} {r['seconds_per_iteration']:8.3f} {r['over_two_fft_floor']:6.2f} {cached} "
                f"{r['bytes_per_iteration'] / 1e6:7.0f} {r['bandwidth_floor_s']:10.4f} "
                f"{r['over_bandwidth_floor']:6.1f} {r['peak_memory_mb']:8.0f}"
            )
    return "\n".join(lines)


def device_name(xp) -> str:
    """The processor (NumPy) or the GPU's name (CuPy)."""
    if xp is np:
        return platform.processor() or platform.machine()
    name = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 100, 400 of 128^2 only")
    parser.add_argument("--backend", default="auto", help="auto, numpy or cupy")
    parser.add_argument("--repeat", type=int, default=3, help="timed iterations per algorithm")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "recon.json"))
    args = parser.parse_args(argv)
    try:
        xp = resolve_backend(args.backend)
    except ValueError as exc:
        parser.exit(2, f"bench/recon.py: error: {exc}\n")
    backend = "numpy" if xp is np else "cupy"
    sizes = (
        [(100, 128), (400, 128)]
        if args.quick
        else [(100, 128), (400, 128), (1600, 128), (100, 256), (400, 256), (1600, 256)]
    )
    cases = []
    for n_frames, n in [*sizes, REFERENCE]:
        least = 3 if args.quick else 8
        repeat = max(2 * args.repeat, least) if (n_frames, n) == REFERENCE else args.repeat
        cases.append(run_case(n_frames, n, xp, max(1, repeat)))
    bw = copy_bandwidth(xp, 2**28, max(5, args.repeat))
    for case in cases:
        add_bandwidth_floor(case, bw["bytes_per_second"])
    methods = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in bw.items() if k != "copy_bytes")
    print(f"\nbackend {backend} ({device_name(xp)}); copy bandwidth GB/s: {methods}")
    print(table(cases))
    ref = cases[-1]
    if ref["AP"]["available"]:
        ap = ref["AP"]
        print(
            f"reference {REFERENCE[0]} x {REFERENCE[1]}^2: AP {ap['seconds_per_iteration']:.3f} s"
            f" = {ap['over_two_fft_floor']:.2f} x two-FFT floor ({ap['two_fft_floor_s']:.3f} s)"
        )
        if ap.get("two_fft_in_cache_floor_s"):
            print(
                f"  = {ap['over_two_fft_in_cache_floor']:.2f} x the same FFTs frame by frame in "
                f"cache ({ap['two_fft_in_cache_floor_s']:.3f} s)"
            )
    result = {
        "backend": backend,
        "device": device_name(xp),
        "fft_workers": FFT_WORKERS,
        "numba_kernels": kernels.numba_enabled(xp),
        "numba_threads": num_threads(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "bandwidth": bw,
        "cases": cases,
        "reference_516x128": {
            **ref,
            "ap_seconds": ref["AP"].get("seconds_per_iteration"),
            "two_fft_floor_s": ref["AP"].get("two_fft_floor_s"),
            "ap_over_floor": ref["AP"].get("over_two_fft_floor"),
            "two_fft_in_cache_floor_s": ref["AP"].get("two_fft_in_cache_floor_s"),
            "ap_over_in_cache_floor": ref["AP"].get("over_two_fft_in_cache_floor"),
        },
        "command": "bench/recon.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
