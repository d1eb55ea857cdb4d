"""The pty-chi side of ``bench/peers.py``: runs in the peers' virtual environment.

Usage (``bench/peers.py`` calls it; the interpreter is the one with ``ptychi`` and torch)::

    .venv-peers/bin/python bench/peers_ptychi.py DATA.npz OUT_PREFIX
        [--algorithms DM,RAAR,EPIE,RPIE,LSQML] [--iterations 30] [--threads 2]
        [--probe-start 2] [--lsqml-batches 10] [--lsqml-momentum 0.5] [--warmup 2]
        [--check]

It imports only NumPy, torch and ptychi (never this project's packages). ``DATA.npz``, written
by ``bench/peers.py``, holds one data set in this project's conventions:

* ``intensities`` (M, n, n) float32 photons with the zero frequency in the middle of each
  frame (as a detector records them);
* ``corners`` (M, 2) float64 top-left corners (row, col) of the frames' patches in the object
  (pixels; the exit wave of frame j is ``P(r - f_j) O(c_j + r)`` with ``c_j`` the integer part
  and ``f_j`` the remainder);
* ``probe`` (K, n, n) complex64 starting probe modes, centred, normalised for the
  orthonormal FFT (``|F psi|^2`` with ``F`` unitary is in photons);
* ``obj_shape`` (2,) int object shape; the starting object is flat (ones);
* with ``--check`` also ``clean`` (M, n, n) float32 noise-free centred intensities and
  ``true_obj`` (H, W), ``true_probe`` (K, n, n): the model check below.

Conventions, translated here (found with ``--check``: pty-chi's forward model of the true
object and probe must reproduce ``clean``):

* intensities: passed as they are (centred) with ``data_options.fft_shift=True``, so that
  pty-chi shifts them to its unshifted FFT order itself;
* probe: pty-chi's far field is the *unnormalised* ``torch.fft.fft2`` (norm "backward"), which
  is ``sqrt(n_y n_x)`` times the orthonormal FFT, so the probe handed over is divided by
  ``sqrt(n_y n_x)`` (and the reconstructed probe multiplied back);
* positions: pty-chi takes patch *centres* in object pixels relative to an origin; its
  even-sized patch of centre ``p + origin`` starts at ``p + origin - (n - 1) / 2``, the integer
  part of ``p`` picks the patch (rounded) and the remainder shifts the probe. With
  ``origin = -1/2`` (``ObjectPosOriginCoordsMethods.SPECIFIED``) and ``p = corner + n / 2``
  (row -> ``position_y_px``, column -> ``position_x_px``, no sign flip) the patch starts at
  ``round(corner)`` and the probe moves by ``corner - round(corner)``: this project's model.
  (The corners themselves with origin 0 put every patch half a frame off; ``corner +
  (n - 1) / 2`` with origin 0 lets torch's round-half-to-even put half the patches one pixel
  off.)

Writes ``OUT_PREFIX.npz`` (per algorithm ``<ALG>_object``, ``<ALG>_probe`` in the
orthonormal normalisation, ``<ALG>_seconds`` per iteration, ``<ALG>_loss`` pty-chi's own
per-epoch loss) and ``OUT_PREFIX.json`` (versions, options, the model check).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
import warnings
from importlib import metadata

import numpy as np
import ptychi.api as api
import torch
from ptychi.api.task import PtychographyTask

#: pty-chi reconstructors run (the closest equivalents of this project's algorithms).
ALGORITHMS = ("DM", "RAAR", "EPIE", "RPIE", "LSQML")


def task_options(alg: str, n_frames: int, iterations: int, probe_start: int, args) -> object:
    """The pty-chi options of one run: CPU, float32, fixed positions, flat object.

    DM and RAAR keep the whole exit-wave stack and have no batches; their ``chunk_length``
    (frames projected at once; it does not change the result) is the whole scan, the fastest
    setting on the CPU. ePIE and rPIE visit one frame at a time (``batch_size=1``: the classic
    algorithm, as this project's ``pie_batch=1``); ePIE with step 1 (``alpha = 1``) and rPIE
    with ``alpha = 0.1`` for object and probe, as this project's ``EngineOptions.pie_alpha``.
    LSQML: its Gaussian noise model (the default) in ``--lsqml-batches`` random minibatches
    per epoch with momentum acceleration (gain ``--lsqml-momentum``; pty-chi suggests starting
    at 0.5). Its default of 100 frames per minibatch without momentum reached a phase
    correlation of only 0.09 after 30 epochs on the 100-frame set, 10 minibatches 0.999.
    """
    if alg == "DM":
        opts = api.DMOptions()
        opts.reconstructor_options.chunk_length = n_frames
    elif alg == "RAAR":
        opts = api.RAAROptions()
        opts.reconstructor_options.chunk_length = n_frames
        opts.reconstructor_options.beta = 0.75
    elif alg == "EPIE":
        opts = api.EPIEOptions()
        opts.reconstructor_options.batch_size = 1
        opts.object_options.alpha = 1.0
        opts.probe_options.alpha = 1.0
    elif alg == "RPIE":
        opts = api.RPIEOptions()
        opts.reconstructor_options.batch_size = 1
        opts.object_options.alpha = 0.1
        opts.probe_options.alpha = 0.1
    elif alg == "LSQML":
        opts = api.LSQMLOptions()
        rec = opts.reconstructor_options
        rec.batch_size = max(1, -(-n_frames // args.lsqml_batches))
        rec.momentum_acceleration_gain = args.lsqml_momentum
        rec.noise_model = (
            api.NoiseModels.POISSON if args.lsqml_noise == "poisson" else api.NoiseModels.GAUSSIAN
        )
    else:
        raise ValueError(f"unknown pty-chi algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")
    rec = opts.reconstructor_options
    rec.num_epochs = iterations
    rec.default_device = api.Devices.CPU
    rec.default_dtype = api.Dtypes.FLOAT32
    rec.random_seed = 0
    obj = opts.object_options
    obj.optimizable = True
    obj.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    obj.position_origin_coords = np.array([-0.5, -0.5])
    probe = opts.probe_options
    probe.optimizable = True
    probe.optimization_plan.start = probe_start
    opts.probe_position_options.optimizable = False
    opts.data_options.fft_shift = True  # the frames are centred
    return opts


def make_task(opts, data: dict, obj: np.ndarray, probe: np.ndarray, inten: np.ndarray):
    """A pty-chi task on ``inten`` (centred) from object ``obj`` and probe modes ``probe``
    (orthonormal normalisation), in the conventions of the module notes."""
    n_y, n_x = inten.shape[-2:]
    corners = data["corners"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PtychographyTask(
            opts,
            diffraction_data=torch.from_numpy(np.ascontiguousarray(inten, np.float32)),
            object_data=torch.from_numpy(np.ascontiguousarray(obj[None], np.complex64)),
            probe_data=torch.from_numpy(
                np.ascontiguousarray(probe[None] / np.sqrt(n_y * n_x), np.complex64)
            ),
            probe_position_y_px=torch.from_numpy(corners[:, 0] + n_y / 2),
            probe_position_x_px=torch.from_numpy(corners[:, 1] + n_x / 2),
        )


def model_check(data: dict, args) -> dict:
    """pty-chi's forward model of the true object and probe against the noise-free frames.

    Returns ``{"relative_error": ||model - clean|| / ||clean||}``: about 0.01 when the
    conventions agree (the frames were made with shifts quantised to 1/16 pixel, and pty-chi
    rounds where this project floors, so the probe's cyclic shift wraps its tails
    differently); 0.2 to 1.4 with any of the wrong conventions of the module notes, the
    transposed positions or unshifted frames.
    """
    clean = data["clean"]
    opts = task_options("DM", clean.shape[0], 1, 0, args)
    task = make_task(opts, data, data["true_obj"], data["true_probe"], clean)
    with torch.no_grad():
        idx = torch.arange(clean.shape[0])
        model = task.reconstructor.forward_model.forward(idx)
        measured = task.dataset.patterns  # fft-shifted by pty-chi
        err = torch.linalg.norm(model - measured) / torch.linalg.norm(measured)
    return {"relative_error": float(err)}


def run(alg: str, data: dict, args) -> dict:
    """``args.iterations`` epochs of ``alg`` from the flat object and the starting probe,
    each timed, after ``args.warmup`` epochs of a throwaway task; returns the arrays and the
    per-epoch times and losses."""
    inten = data["intensities"]
    n_frames, n_y, n_x = inten.shape
    obj0 = np.ones(tuple(int(s) for s in data["obj_shape"]), np.complex64)
    if args.warmup:  # a throwaway task first (lazy initialisations), as bench/peers.py does
        opts = task_options(alg, n_frames, args.warmup, min(1, args.probe_start), args)
        make_task(opts, data, obj0, data["probe"], inten).run()
    opts = task_options(alg, n_frames, args.iterations, args.probe_start, args)
    t0 = time.perf_counter()
    task = make_task(opts, data, obj0, data["probe"], inten)
    setup = time.perf_counter() - t0
    seconds = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        task.run(n_epochs=1)
        seconds.append(time.perf_counter() - t0)
    obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    probe = task.get_data_to_cpu("probe", as_numpy=True)[0] * np.sqrt(n_y * n_x)
    loss = task.reconstructor.loss_tracker.table["loss"].to_numpy(dtype=float)
    return {
        "object": obj.astype(np.complex64),
        "probe": probe.astype(np.complex64),
        "seconds": np.asarray(seconds),
        "loss": loss,
        "setup_s": setup,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="input .npz written by bench/peers.py")
    parser.add_argument("out", help="output prefix (writes OUT.npz and OUT.json)")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--probe-start", type=int, default=2, help="first epoch of probe updates")
    parser.add_argument("--lsqml-batches", type=int, default=10, help="LSQML batches/epoch")
    parser.add_argument("--lsqml-momentum", type=float, default=0.5, help="LSQML momentum gain")
    parser.add_argument("--lsqml-noise", choices=("gaussian", "poisson"), default="gaussian")
    parser.add_argument("--warmup", type=int, default=2, help="epochs of a throwaway task")
    parser.add_argument("--check", action="store_true", help="run the forward-model check")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("ptychi").setLevel(logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    with np.load(args.data) as f:
        data = {k: f[k] for k in f.files}
    meta: dict = {
        "ptychi": metadata.version("ptychi"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "iterations": args.iterations,
        "probe_start": args.probe_start,
        "lsqml_batches": args.lsqml_batches,
        "lsqml_momentum": args.lsqml_momentum,
        "lsqml_noise": args.lsqml_noise,
        "runs": {},
    }
    if args.check:
        meta["model_check"] = model_check(data, args)
        print(f"pty-chi model check: {meta['model_check']}", file=sys.stderr, flush=True)
    arrays = {}
    for alg in [a.strip().upper() for a in args.algorithms.split(",") if a.strip()]:
        try:
            out = run(alg, data, args)
        except Exception as exc:  # report a failing reconstructor and go on
            meta["runs"][alg] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            print(f"pty-chi {alg}: failed ({exc})", file=sys.stderr, flush=True)
            continue
        for key in ("object", "probe", "seconds", "loss"):
            arrays[f"{alg}_{key}"] = out[key]
        meta["runs"][alg] = {"available": True, "setup_s": out["setup_s"]}
        timed = out["seconds"][2:] if args.iterations > 3 else out["seconds"]
        print(f"  pty-chi {alg}: {timed.min():.3f} s/it (best)", file=sys.stderr, flush=True)
    np.savez(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as fh:
        json.dump(meta, fh, indent=2)


if __name__ == "__main__":
    main()
