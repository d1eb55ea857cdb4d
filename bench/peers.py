"""Benchmark against the public ptychography codes: pty-chi and this engine on the same data.

Usage::

    .venv/bin/python bench/peers.py [--peers-python .venv-peers/bin/python] [--quick]
        [--frames 100,400] [--iterations 30] [--threads 2] [--photons 1e6]
        [--output bench/results/peers.json]

(``make bench-peers`` creates ``.venv-peers`` with ``ptychi`` and runs this; ``--quick``: 100
frames, 10 iterations.)

Data (one set per frame count, seeded, the same for both codes): 128^2 frames of a raster
scan with random sub-pixel jitter (step 12 px, ~80 % overlap of a ~57 px zone plate spot)
over a random smooth object (phase rms 0.8 rad, 15 % absorption); the true probe is the zone
plate probe 40 um out of focus with 1.5 rad of astigmatism at the pupil edge; the frames are
its far-field intensities (this project's forward model, sub-pixel shifts quantised to 1/16
pixel), ~1e6 photons each, with Poisson noise. Both codes start from a flat object and from
the ideal zone plate probe 25 % further out of focus (50 um, no astigmatism), scaled to the
mean frame total as ``recon.prepare`` does, and update the probe from the third iteration on.

Pairs (this project -> pty-chi, options in ``bench/peers_ptychi.py``): DM -> DM, RAAR -> RAAR
(beta 0.75 both), ePIE -> EPIE and rPIE -> RPIE (one frame at a time both; alpha 1, and 0.1
for pty-chi's object and probe steps; this engine's rPIE takes 0.1 for the object and the
ePIE weight 1 for the probe, ``EngineOptions.pie_probe_alpha``),
ML (Poisson, full batch) -> LSQML (Gaussian noise, 10 minibatches per epoch, momentum 0.5:
with its default minibatches of 100 frames it barely moved in 30 epochs). pty-chi has no
alternating projections (AP): AP is run and reported alone.

Per algorithm and code, after two iterations of a throwaway run (numba's compilation here,
lazy initialisations there), one code at a time on ``--threads`` threads (torch's intra-op threads
there; numba's threads and the FFT workers here): seconds per iteration (``s/it``, the best
of the iterations after the first two; the median in the JSON), ``ratio`` = pty-chi's s/it
over this engine's, ``run s`` = the wall time of all iterations (pty-chi's task set-up left
out); and the quality after the same number of iterations from the same start: the phase
correlation of the object with the truth over the well-lit region
(``recon.metrics.phase_correlation``: registered, ramp and offset removed) and the Poisson
deviance per pixel of the final object and probe (about 0.9 for the truth), both evaluated
here with the same forward model at the true positions.

pty-chi runs in its own virtual environment (``--peers-python``; torch is no dependency of
this project) through ``bench/peers_ptychi.py``, with the data in an .npz file. Before its
runs its forward model of the true object and probe is compared with the noise-free frames
(the conventions check, printed; see that file). PtyPy and PyNX (ESRF) are not on this
machine's package index and tike needs a CUDA GPU (CuPy): not run (``not_run`` in the JSON).

Writes the JSON (``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

N = 128
PIXEL = 25e-9
ENERGY = 700.0
DEFOCUS = 40e-6
START_DEFOCUS = 50e-6
ASTIGMATISM = 1.5
STEP = 12.0
OURS = ("AP", "DM", "RAAR", "EPIE", "RPIE", "ML")
PAIRS = {"AP": None, "DM": "DM", "RAAR": "RAAR", "EPIE": "EPIE", "RPIE": "RPIE", "ML": "LSQML"}
NOT_RUN = {
    "PtyPy": "not on this machine's package index",
    "PyNX": "not on this machine's package index (PyPI's 'pynx' is an unrelated nginx tool)",
    "tike": "needs a CUDA GPU (tike 0.26.0 requires CuPy); this run is CPU only",
}


def set_threads(threads: int) -> None:
    """Pin this process's numba threads and FFT workers (before ``recon`` is imported)."""
    for key in ("NUMBA_NUM_THREADS", "SPTYCHO_FFT_WORKERS", "OMP_NUM_THREADS"):
        os.environ[key] = str(threads)


def make_object(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth random complex object: phase rms 0.8 rad, up to 15 % absorption."""
    from scipy.ndimage import gaussian_filter

    phase = gaussian_filter(rng.standard_normal(shape), 1.5)
    phase *= 0.8 / phase.std()
    amp = np.abs(gaussian_filter(rng.standard_normal(shape), 3.0))
    amp = 1 - 0.15 * amp / amp.max()
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def true_probe(photons: float) -> np.ndarray:
    """(1, n, n) zone plate probe at ``DEFOCUS`` with astigmatism, ``sum |P|^2 = photons``."""
    from recon.probe import ZonePlate, zone_plate_probe

    zp = ZonePlate()
    field = zone_plate_probe(zp, ENERGY, DEFOCUS, N, PIXEL)
    k = np.fft.fftfreq(N, d=PIXEL) * 2 * zp.outermost_zone_width  # 1 at the pupil edge
    rho2 = k[:, None] ** 2 + k[None, :] ** 2
    cos2 = np.cos(2 * np.arctan2(k[:, None], k[None, :]))
    spectrum = np.fft.fft2(np.fft.ifftshift(field)) * np.exp(1j * ASTIGMATISM * rho2 * cos2)
    out = np.fft.fftshift(np.fft.ifft2(spectrum))
    out *= np.sqrt(photons / np.sum(np.abs(out) ** 2))
    return out[None].astype(np.complex64)


def make_data(n_frames: int, photons: float, seed: int = 0) -> dict:
    """The data set of ``n_frames`` frames (see the module notes)."""
    from recon.operators import PtychoOperator, insert_patches
    from recon.probe import ZonePlate, zone_plate_probe

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_frames)))
    g = np.arange(side) * STEP + 8
    yy, xx = np.meshgrid(g, g, indexing="ij")
    corners = np.stack([yy.ravel(), xx.ravel()], 1)[:n_frames]
    corners = corners + rng.uniform(-1, 1, corners.shape)
    size = int(np.ceil(corners.max())) + N + 9
    shape = (size, size)
    obj = make_object(shape, rng)
    probe = true_probe(photons)
    op = PtychoOperator(corners, (N, N), shape, subpixel=16)
    clean = op.intensities(obj, probe, centred=False)
    measured = rng.poisson(clean).astype(np.float32)
    start = zone_plate_probe(ZonePlate(), ENERGY, START_DEFOCUS, N, PIXEL)
    start = (start * np.sqrt(measured.sum(axis=(1, 2)).mean()))[None].astype(np.complex64)
    lit = np.broadcast_to(np.abs(probe[0]) ** 2, (n_frames, N, N))
    illum = insert_patches(np.ascontiguousarray(lit), np.rint(corners).astype(np.int64), shape)
    return {
        "corners": corners,
        "shape": shape,
        "obj": obj,
        "probe": probe,
        "start": start,
        "clean": clean,
        "measured": measured,
        "op": op,
        "region": illum > 0.3 * illum.max(),
    }


def quality(obj: np.ndarray, probe: np.ndarray, data: dict) -> dict:
    """Phase correlation with the truth over the lit region, and Poisson deviance per pixel
    of the model at the true positions."""
    from recon.deviance import poisson_deviance
    from recon.metrics import phase_correlation

    model = data["op"].intensities(
        np.asarray(obj, np.complex64), np.asarray(probe, np.complex64), centred=False
    )
    return {
        "phase_correlation": float(phase_correlation(obj, data["obj"], data["region"])),
        "deviance": float(poisson_deviance(data["measured"], model)),
    }


def timing(seconds: list[float] | np.ndarray) -> dict:
    """Best and median seconds per iteration after the first two (warm-up)."""
    s = np.asarray(seconds, float)
    timed = s[2:] if s.size > 3 else s
    return {
        "seconds_per_iteration": float(timed.min()),
        "median_s": float(np.median(timed)),
        "iterations": int(s.size),
        "total_s": float(s.sum()),
    }


def run_ours(alg: str, data: dict, iterations: int) -> dict:
    """``iterations`` iterations of ``alg`` on this engine, each timed, after a throwaway
    engine's two iterations (numba's compilation, with and without the probe update)."""
    from recon.algorithms import Engine
    from recon.engine_options import EngineOptions

    def fresh(start: int) -> Engine:
        opts = EngineOptions(probe_update_start=start)
        return Engine(data["measured"], data["corners"], data["start"], data["shape"], options=opts)

    warm = fresh(1)
    for _ in range(2):
        warm.iterate(alg)
    engine = fresh(2)
    seconds = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        engine.iterate(alg)
        seconds.append(time.perf_counter() - t0)
    return {**timing(seconds), **quality(engine.obj, engine.probe, data), "available": True}


def run_ptychi(data: dict, args, work: Path, tag: str) -> tuple[dict, dict]:
    """pty-chi's runs of the paired algorithms in the peers' environment; returns the
    per-algorithm rows and the subprocess's metadata (versions, the model check)."""
    path = work / f"{tag}.npz"
    np.savez(
        path,
        intensities=np.fft.fftshift(data["measured"], axes=(-2, -1)),
        corners=data["corners"],
        probe=data["start"],
        obj_shape=np.asarray(data["shape"]),
        clean=np.fft.fftshift(data["clean"], axes=(-2, -1)),
        true_obj=data["obj"],
        true_probe=data["probe"],
    )
    algs = [p for p in PAIRS.values() if p]
    cmd = [
        args.peers_python,
        str(ROOT / "bench" / "peers_ptychi.py"),
        str(path),
        str(work / f"{tag}_out"),
        f"--algorithms={','.join(algs)}",
        f"--iterations={args.iterations}",
        f"--threads={args.threads}",
        "--probe-start=2",
        "--warmup=2",
        "--check",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    subprocess.run(cmd, check=True, env=env)
    meta = json.loads((work / f"{tag}_out.json").read_text())
    rows = {}
    with np.load(work / f"{tag}_out.npz") as out:
        for alg in algs:
            run = meta["runs"].get(alg, {"available": False, "reason": "not run"})
            if not run["available"]:
                rows[alg] = run
                continue
            rows[alg] = {
                **timing(out[f"{alg}_seconds"]),
                **quality(out[f"{alg}_object"], out[f"{alg}_probe"], data),
                "available": True,
                "setup_s": run["setup_s"],
                "ptychi_loss": [float(v) for v in out[f"{alg}_loss"]],
            }
    return rows, meta


def run_case(n_frames: int, args, work: Path) -> dict:
    """Both codes on one data set of ``n_frames`` frames."""
    data = make_data(n_frames, args.photons)
    case: dict = {
        "frames": n_frames,
        "frame_size": N,
        "object_shape": list(data["shape"]),
        "photons_per_frame": args.photons,
        "truth_deviance": quality(data["obj"], data["probe"], data)["deviance"],
    }
    ours = {}
    for alg in OURS:
        ours[alg] = run_ours(alg, data, args.iterations)
        r = ours[alg]
        print(
            f"  N={n_frames} sptycho {alg:5s} {r['seconds_per_iteration']:.3f} s/it, "
            f"phase corr {r['phase_correlation']:.3f}",
            flush=True,
        )
    peer, meta = run_ptychi(data, args, work, f"n{n_frames}")
    case["model_check"] = meta.get("model_check")
    case["ptychi_meta"] = {k: v for k, v in meta.items() if k != "runs"}
    case["pairs"] = {}
    for alg in OURS:
        other = PAIRS[alg]
        row = {"sptycho": ours[alg], "ptychi_algorithm": other}
        if other is None:
            row["ptychi"] = {"available": False, "reason": "pty-chi has no AP"}
        else:
            row["ptychi"] = peer[other]
            if peer[other].get("available"):
                mine, theirs = ours[alg], peer[other]
                row["ratio"] = theirs["seconds_per_iteration"] / mine["seconds_per_iteration"]
                row["ratio_total"] = theirs["total_s"] / mine["total_s"]
        case["pairs"][alg] = row
    return case


def table(cases: list[dict]) -> str:
    """The short text table: per frame count and algorithm, one line per code."""
    lines = [
        f"{'frames':>6} {'alg':5} {'code':14} {'s/it':>8} {'ratio':>6} {'run s':>7} "
        f"{'phase corr':>10} {'deviance':>9}"
    ]
    for c in cases:
        for alg, row in c["pairs"].items():
            for code, name in (("sptycho", alg), ("ptychi", row["ptychi_algorithm"])):
                r = row[code]
                label = f"{'sptycho' if code == 'sptycho' else 'pty-chi'} {name or '-'}"
                head = f"{c['frames']:6d} {alg:5} {label:14}"
                if not r.get("available"):
                    lines.append(f"{head} {r.get('reason', 'n/a')}")
                    continue
                ratio = row.get("ratio") if code == "ptychi" else None
                ratio_text = f"{ratio:6.1f}" if ratio else f"{'-':>6}"
                lines.append(
                    f"{head} {r['seconds_per_iteration']:8.3f} {ratio_text} {r['total_s']:7.1f} "
                    f"{r['phase_correlation']:10.3f} {r['deviance']:9.3g}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--quick", action="store_true", help="100 frames, 10 iterations")
    parser.add_argument("--frames", default="100,400", help="frame counts, comma-separated")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photons", type=float, default=1e6, help="photons per frame")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "peers.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.iterations = "100", 10
    if not Path(args.peers_python).exists():
        parser.exit(2, f"bench/peers.py: no interpreter {args.peers_python} (make bench-peers)\n")
    set_threads(args.threads)
    import numba

    from recon import kernels

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_frames in [int(v) for v in args.frames.split(",")]:
            cases.append(run_case(n_frames, args, Path(tmp)))
    meta = cases[0]["ptychi_meta"]
    print(
        f"\nCPU {platform.processor() or platform.machine()}, {args.threads} threads; "
        f"{args.iterations} iterations from the same start; pty-chi {meta['ptychi']}, "
        f"torch {meta['torch']}"
    )
    print(table(cases))
    for c in cases:
        check = c["model_check"]["relative_error"]
        flag = "" if check < 0.05 else "  <-- conventions disagree, numbers not comparable"
        print(f"N={c['frames']}: pty-chi's model of the truth vs clean frames {check:.1e}{flag}")
    print("not run: " + "; ".join(f"{k} ({v})" for k, v in NOT_RUN.items()))
    result = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "iterations": args.iterations,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_kernels": kernels.numba_enabled(np),
        "ptychi": meta,
        "cases": cases,
        "not_run": NOT_RUN,
        "command": "bench/peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
