"""Memory-bandwidth floor of the engine's iterations: a traffic model and a copy benchmark.

Traffic model
-------------
One iteration of every algorithm streams the frame stacks through memory a fixed number of
times. The model counts, in whole stacks, what each pass of the engine's code reads and
writes, where a fused kernel reads and writes each stack once and an FFT of the stack reads
and writes it once:

* ``S = N K n^2 * 8`` bytes, a complex64 wave stack (N frames, K probe modes, n^2 pixels):
  exit waves, their transforms, the DM/RAAR iterate ``psi``;
* ``F = N n^2 * 4`` bytes, a float32 frame stack: the intensities (read), and ML's per-pixel
  line-search coefficients (written once, read at every trial step).

The object, the probes and their accumulators (a few MB, cache-resident) are not counted, so
the bandwidth floor ``bytes / bandwidth`` is a lower bound. On the CPU the engine runs the
fused numba kernels that the model describes; on CuPy the modulus projections of AP, DM and
RAAR are fused CUDA kernels (``recon/cupy_kernels.py``) and the rest is generic element-wise
code, whose temporaries are not counted, so there the measured time over the floor also shows
what fusing the remaining kernels would gain. Per iteration (one chunk, probe updated; ``d`` is
``Engine.deviance_every``: the deviance reads every d-th frame, ``1/d`` S and F more, except
where the numba kernels sum it in the modulus projection's pass: AP, DM, RAAR, ePIE and rPIE
on the CPU):

=========  =====================================================  ===========  =========
algorithm  passes                                                 S read +     F
                                                                  written
=========  =====================================================  ===========  =========
AP         exit waves, FFT, modulus projection, inverse FFT,      5 + 4        1
           object and probe back-projections
DM, RAAR   as AP; the family update reads and writes the wave     6 + 5        1
           and the iterate ``psi``
ML         gradient: exit waves, FFT, Poisson weights (to a       5 + 4 and    3 + 15
           second stack), inverse FFT, object and probe           6 + 5
           back-projections; line search: waves ``psi1`` (two
           exit-wave passes) and ``psi2``, their FFTs, 5
           coefficient stacks from ``psi0, psi1, psi2``, objective
           at 0 and at one trial step (intensities + coefficients)
ePIE/rPIE  per batch: the batch's shifted probes (ramp product,   13 + 10      1
           inverse FFT), exit waves, FFT, modulus projection,
           inverse FFT, ``psi' - psi``, object back-projection,
           probe step, its FFT, unshift ramp and sum
=========  =====================================================  ===========  =========

ML's line search is counted with one trial step (the Newton step accepted); each further
trial reads 5 F + 1 F more. ePIE/rPIE without the probe update: ``6 + 5`` S. Their waves are
those of one batch (``EngineOptions.pie_batch`` frames, 1 by default), which stay in cache:
for them the figure counts passes over the waves rather than traffic to memory, and the time
over the bandwidth floor measures the per-batch overhead.

On the CPU with ``rocket-fft`` (``numpy.fft`` inside numba) AP, DM and RAAR run their exit
waves, FFT, projection and inverse FFT frame by frame while the frame is in cache
(``recon/numba_fourier.py``): that is one pass, ``0 + 1`` S and 1 F for AP (the projected
waves written) and ``1 + 2`` S for DM/RAAR (``psi`` read and written too), before the
back-projections. ML does the same with its gradient (``psi0`` and the gradient waves
written: ``0 + 2`` S) and its line coefficients (``psi0`` read, the 5 coefficient stacks
written: ``1 + 0`` S and 5 F; ``recon/numba_ml_fourier.py``).

With several chunks (stack above ``EngineOptions.chunk_bytes``) the probe update of AP makes
its waves again (exit waves, FFT, projection, inverse FFT: ``4 + 4`` S and 1 F more), that
of DM/RAAR copies ``psi`` and transforms it back
(``2 + 2`` S), and ML makes ``psi0`` again for the line search and a forward pass per trial
instead of keeping the coefficients.

Bandwidth
---------
:func:`copy_bandwidth` times a copy ``a[...] = b`` of a 256 MiB array and counts read plus
written bytes (the STREAM convention): NumPy's single-threaded copy and, with numba, a
parallel copy on numba's threads (the engine's kernels run on those); on CuPy a
device-to-device copy timed with CUDA events.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import numpy as np

#: Passes of one iteration: (name, S read, S written, F read or written); see the module doc.
_AP = (
    ("exit waves", 0, 1, 0),
    ("FFT", 1, 1, 0),
    ("modulus projection", 1, 1, 1),
    ("inverse FFT", 1, 1, 0),
    ("object back-projection", 1, 0, 0),
)
_FAMILY = (
    ("exit waves", 0, 1, 0),
    ("FFT", 1, 1, 0),
    ("family update (wave and psi)", 2, 2, 1),
    ("inverse FFT", 1, 1, 0),
    ("object back-projection", 1, 0, 0),
)
#: AP, DM and RAAR with the Fourier side frame by frame in cache (``recon/numba_fourier.py``):
#: the intensities read and the projected waves written once; DM/RAAR read and write psi.
_FUSED = {
    "AP": (("Fourier pass in cache (waves written)", 0, 1, 1), ("object back-projection", 1, 0, 0)),
    "DM": (
        ("Fourier pass in cache (waves written, psi read and written)", 1, 2, 1),
        ("object back-projection", 1, 0, 0),
    ),
}
_FUSED["RAAR"] = _FUSED["DM"]
_ML = (
    ("exit waves psi0", 0, 1, 0),
    ("FFT of psi0 (kept)", 1, 1, 0),
    ("gradient weights (to a second stack)", 1, 1, 1),
    ("inverse FFT", 1, 1, 0),
    ("object back-projection", 1, 0, 0),
)
#: ML's line search with the probe updated: psi1 = dP O + P dO, psi2 = dP dO.
_ML_LINE = (
    ("line: exit waves dP O", 0, 1, 0),
    ("line: exit waves += P dO", 1, 1, 0),
    ("line: FFT of psi1", 1, 1, 0),
    ("line: exit waves dP dO", 0, 1, 0),
    ("line: FFT of psi2", 1, 1, 0),
    ("line: 5 coefficient stacks", 3, 0, 5),
    ("line: objective at 0", 0, 0, 6),
    ("line: objective at the trial step", 0, 0, 6),
)
#: ML's line search with the probe fixed: psi1 = P dO only, 3 coefficients.
_ML_LINE_OBJECT = (
    ("line: exit waves P dO", 0, 1, 0),
    ("line: FFT of psi1", 1, 1, 0),
    ("line: 3 coefficient stacks", 2, 0, 3),
    ("line: objective at 0", 0, 0, 4),
    ("line: objective at the trial step", 0, 0, 4),
)
#: ML with its Fourier side frame by frame in cache (``recon/numba_ml_fourier.py``): the
#: gradient pass writes psi0 and the gradient waves, the line pass reads psi0 and writes the
#: coefficients (5 with the probe updated, 3 without); the objective passes as above.
_ML_FUSED = (
    ("gradient pass in cache (psi0 and gradient waves written)", 0, 2, 1),
    ("object back-projection", 1, 0, 0),
)
_ML_LINE_FUSED = (
    ("line pass in cache (psi0 read, 5 coefficient stacks written)", 1, 0, 5),
    *_ML_LINE[-2:],
)
_ML_LINE_OBJECT_FUSED = (
    ("line pass in cache (psi0 read, 3 coefficient stacks written)", 1, 0, 3),
    *_ML_LINE_OBJECT[-2:],
)
#: Chunked, in cache: the gradient waves overwrite psi0, the line pass makes psi0 itself and
#: runs again for the trial step instead of the coefficients being kept.
_ML_CHUNKED_FUSED = (
    ("gradient waves over psi0 (not kept)", 0, -1, 0),
    ("line pass makes psi0 itself", -1, 0, 0),
    ("trial: line pass again (5 coefficient stacks written, read by the trial)", 0, 0, 5),
)
_ML_CHUNKED_FUSED_OBJECT = (*_ML_CHUNKED_FUSED[:2], ("trial: line pass again (3)", 0, 0, 3))
_PIE = (
    ("exit waves", 0, 1, 0),
    ("FFT (to a new array)", 1, 1, 0),
    ("modulus projection", 1, 1, 1),
    ("inverse FFT", 1, 1, 0),
    ("psi' - psi", 2, 1, 0),
    ("object back-projection", 1, 0, 0),
)
PASSES = {"AP": _AP, "DM": _FAMILY, "RAAR": _FAMILY, "EPIE": _PIE, "RPIE": _PIE, "ML": _ML}
_PROBE = ("probe back-projection", 1, 0, 0)
#: Extra passes of ePIE/rPIE when the probe is updated (one shifted probe per frame).
_PIE_PROBE = (
    ("shifted probes: ramp product", 0, 1, 0),
    ("shifted probes: inverse FFT", 1, 1, 0),
    ("exit waves: per-frame probes read", 1, 0, 0),
    ("object back-projection: per-frame probes read", 1, 0, 0),
    ("probe step", 1, 1, 0),
    ("probe step: FFT", 1, 1, 0),
    ("probe step: unshift ramp", 1, 1, 0),
    ("probe step: sum over the batch", 1, 0, 0),
)
#: Extra passes when the frames are processed in several chunks.
_CHUNKED = {
    "AP": (
        ("probe pass: exit waves", 0, 1, 0),
        ("probe pass: FFT", 1, 1, 0),
        ("probe pass: modulus projection", 1, 1, 1),
        ("probe pass: inverse FFT", 1, 1, 0),
    ),
    "DM": (("probe pass: copy psi", 1, 1, 0), ("probe pass: inverse FFT", 1, 1, 0)),
    # psi0 again; the trial is a forward pass (exit waves, FFT, 1 coefficient, objective)
    # instead of reading the kept coefficients (counted as 6 F in _ML_LINE).
    "ML": (
        ("line: exit waves psi0 again", 0, 1, 0),
        ("line: FFT of psi0 again", 1, 1, 0),
        ("trial: exit waves and FFT", 1, 2, -6),
        ("trial: coefficient and objective", 1, 0, 3),
    ),
}
_CHUNKED["RAAR"] = _CHUNKED["DM"]


def iteration_traffic(
    name: str,
    n_frames: int,
    n_modes: int,
    frame_shape: tuple[int, int],
    n_chunks: int = 1,
    deviance_every: int = 1,
    update_probe: bool = True,
    fused_deviance: bool = False,
    fused_fourier: bool = False,
) -> dict:
    """Modelled memory traffic of one iteration of algorithm ``name`` (see the module doc).

    Parameters
    ----------
    name : AP, DM, RAAR, EPIE, RPIE or ML
    n_frames, n_modes, frame_shape : N, K and (n, n) of the wave stack
    n_chunks : chunks the engine splits the frames into (``len(Engine.chunks)``)
    deviance_every : ``Engine.deviance_every``
    update_probe : whether the iteration updates the probe
    fused_deviance : the deviance is summed in the modulus projection's pass (the numba
        kernels; not for ML, whose gradient pass leaves it out)
    fused_fourier : AP, DM, RAAR (``recon/numba_fourier.py``) and ML
        (``recon/numba_ml_fourier.py``) run their Fourier side frame by frame in cache

    Returns
    -------
    dict with ``wave_stacks_read``, ``wave_stacks_written`` (S) and ``float_stacks`` (F read
    or written), floats in whole stacks; ``wave_stack_bytes`` and ``float_stack_bytes``
    (int, S and F) and ``bytes`` (int, the total per iteration)
    """
    name = name.upper()
    fused = fused_fourier and name in _FUSED
    ml_fused = fused_fourier and name == "ML"
    passes = list(_FUSED[name] if fused else _ML_FUSED if ml_fused else PASSES[name])
    if name == "ML" and ml_fused:
        passes.extend(_ML_LINE_FUSED if update_probe else _ML_LINE_OBJECT_FUSED)
    elif name == "ML":
        passes.extend(_ML_LINE if update_probe else _ML_LINE_OBJECT)
    if update_probe and name in ("AP", "DM", "RAAR", "ML"):
        passes.append(_PROBE)
    if update_probe and name in ("EPIE", "RPIE"):
        passes.extend(_PIE_PROBE)
    if n_chunks > 1 and ml_fused:
        passes.extend(_ML_CHUNKED_FUSED if update_probe else _ML_CHUNKED_FUSED_OBJECT)
    elif n_chunks > 1 and (update_probe or name == "ML"):
        passes.extend(_FUSED[name][:1] if fused and name == "AP" else _CHUNKED.get(name, ()))
    if name == "ML" or not fused_deviance:
        frac = 1.0 / max(1, deviance_every)
        passes.append(("deviance subset", frac, 0, frac))
    reads = float(sum(p[1] for p in passes))
    writes = float(sum(p[2] for p in passes))
    floats = float(sum(p[3] for p in passes))
    pixels = n_frames * frame_shape[0] * frame_shape[1]
    wave_bytes = pixels * n_modes * 8
    float_bytes = pixels * 4
    return {
        "wave_stacks_read": reads,
        "wave_stacks_written": writes,
        "float_stacks": floats,
        "wave_stack_bytes": wave_bytes,
        "float_stack_bytes": float_bytes,
        "bytes": int(round((reads + writes) * wave_bytes + floats * float_bytes)),
    }


def _numba_copy():
    """A parallel ``dst[:] = src`` over 1-D arrays compiled by numba, or None."""
    try:
        import numba
    except ImportError:  # pragma: no cover - depends on the environment
        return None

    @numba.njit(parallel=True)
    def copy(dst, src):  # pragma: no cover - compiled
        for i in numba.prange(src.size):
            dst[i] = src[i]

    return copy


def _best_seconds(run: Any, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``run`` after one warm-up call (CPU)."""
    run()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def _cupy_copy_seconds(xp: ModuleType, dst: Any, src: Any, repeat: int) -> float:
    """Best device time of ``dst[...] = src`` on CuPy, timed with CUDA events."""
    dst[...] = src
    xp.cuda.Device().synchronize()
    start, stop = xp.cuda.Event(), xp.cuda.Event()
    best = float("inf")
    for _ in range(repeat):
        start.record()
        dst[...] = src
        stop.record()
        stop.synchronize()
        best = min(best, xp.cuda.get_elapsed_time(start, stop) / 1e3)
    return best


def copy_bandwidth(xp: ModuleType, nbytes: int = 2**28, repeat: int = 5) -> dict:
    """Memory bandwidth of the back-end from the best of ``repeat`` array copies.

    Parameters
    ----------
    xp : ``numpy`` or ``cupy``
    nbytes : size of the copied array (bytes; the copy moves twice that)
    repeat : timed copies (after one warm-up copy that also touches every page)

    Returns
    -------
    dict with ``copy_bytes``, ``bytes_per_second`` (the best copy of the back-end) and, per
    method, its bytes per second: ``numpy_copy`` and ``numba_parallel_copy`` (CPU) or
    ``cupy_device_copy`` (GPU)
    """
    n = nbytes // 4
    src = xp.ones(n, np.float32)
    dst = xp.empty_like(src)
    moved = 2 * n * 4
    out: dict = {"copy_bytes": n * 4}
    if xp is np:
        out["numpy_copy"] = moved / _best_seconds(lambda: np.copyto(dst, src), repeat)
        copy = _numba_copy()
        if copy is not None:
            out["numba_parallel_copy"] = moved / _best_seconds(lambda: copy(dst, src), repeat)
    else:
        out["cupy_device_copy"] = moved / _cupy_copy_seconds(xp, dst, src, repeat)
    out["bytes_per_second"] = max(v for k, v in out.items() if k != "copy_bytes")
    return out
