"""Fused, multi-threaded CPU loops behind :mod:`recon.kernels` (numba).

Each kernel reads and writes every frame stack once, so the element-wise work of an iteration
costs little next to its two FFTs. Hot loops are kept free of branches and run over contiguous
pixels (modes in an outer loop, per-frame scratch rows) so that LLVM vectorises them.

Only the kernels whose outer loop is a ``prange`` are compiled with ``parallel=True``; the
per-frame helpers they call are plain ``njit`` functions (a ``parallel=True`` function without
a parallel loop makes numba emit ``NumbaPerformanceWarning``).

Shapes: ``wave`` (M, K, P) complex64 (frames, modes, flattened pixels) or (M, K, ny, nx);
``inten`` (M, P) float32; ``keep`` (P,) float32, 1 on good and 0 on masked pixels;
``bg`` (P,) float32; ``scale`` (M,) float32; ``corners`` (M, 2) int64; ``bins`` (M,) int64.

numba's on-disk cache (``cache=True``) checks a kernel against its own file only: after an
edit of a per-frame helper here (:func:`exit_frame`, :func:`modulus_frame`,
:func:`family_frame`, :func:`frame_model`, :func:`frame_deviance`, :func:`log_into`), delete
``recon/__pycache__/*.nbi`` and ``*.nbc``, or the kernels of :mod:`recon.numba_fourier`,
:mod:`recon.numba_pie`, :mod:`recon.numba_ml` and :mod:`recon.numba_ml_fourier` that call it
keep their compiled copy of the old one. An installed package's files are all
new, so an upgrade recompiles everything.

``AVAILABLE`` is False when numba is not importable or ``SPTYCHO_NUMBA=0``; the kernels are
then not defined. The back-projections (scatters into the object and the probe) are in
:mod:`recon.numba_backprojection`, the ML engine's loops in :mod:`recon.numba_ml`, the
Fourier side frame by frame in :mod:`recon.numba_fourier`.

Idle threads: numba runs parallel loops on OpenMP (GNU libgomp), whose idle workers spin
about 300 000 ``pause`` instructions (~15 ms on recent x86) before they sleep. An
iteration runs a numba kernel and then a multi-threaded FFT (``scipy.fft``), so on a few
cores the spinning workers took CPU from the FFT threads (an FFT of 516 frames of 128^2 just
after a kernel: 41 ms instead of 24 ms on 2 cores). Unless ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` is set, this module sets ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT`
before numba starts its threads: a short spin (tens of microseconds), then sleep.
"""

from __future__ import annotations

import os

import numpy as np

#: Spins of an idle OpenMP worker before it sleeps (libgomp's default: 300 000).
SPIN_COUNT = 1000
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    # read by libgomp when numba loads it (at the first parallel loop), so set it first
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)

#: numba compile options of every kernel. error_model="numpy": a division by zero gives
#: inf/nan as in NumPy instead of raising (the divisors are model photons floored at 1e-12,
#: but fastmath lets NaNs through).
JIT_OPTIONS = {"fastmath": True, "cache": True, "nogil": True, "error_model": "numpy"}

try:  # numba is optional: recon.kernels always has the generic code.
    import numba as _nb

    AVAILABLE = os.environ.get("SPTYCHO_NUMBA", "1") != "0"
except ImportError:  # pragma: no cover - depends on the environment
    _nb = None
    AVAILABLE = False


def num_threads() -> int:
    """Threads numba runs parallel loops on (1 without numba)."""
    return _nb.get_num_threads() if _nb is not None else 1


if AVAILABLE:
    _helper = _nb.njit(**JIT_OPTIONS)
    _parallel = _nb.njit(parallel=True, **JIT_OPTIONS)
    _prange = _nb.prange

    # ---------------------------------------------------------------- per-frame helpers
    @_helper
    def _modes_power(wave, j, out):  # pragma: no cover
        """out[x] = sum_k |wave[j, k, x]|^2."""
        kk, p = wave.shape[1], wave.shape[2]
        for x in range(p):
            out[x] = np.float32(0.0)
        for k in range(kk):
            row = wave[j, k]
            for x in range(p):
                v = row[x]
                out[x] += v.real * v.real + v.imag * v.imag

    @_helper
    def _power_to_model(out, s, bg):  # pragma: no cover
        """out[x] <- max(s out[x] + bg[x], 1e-12): model photons from the modes' power."""
        tiny = np.float32(1e-12)
        for x in range(out.size):
            out[x] = max(s * out[x] + bg[x], tiny)

    @_helper
    def frame_model(wave, j, bg, s, out):  # pragma: no cover
        """out[x] = max(s sum_k |wave[j, k, x]|^2 + bg[x], 1e-12): model photons of frame j."""
        _modes_power(wave, j, out)
        _power_to_model(out, s, bg)

    @_helper
    def _modulus_factor(inten_j, keep, f):  # pragma: no cover
        """f[x] <- sqrt(I[x] / f[x]) on good pixels, 1 on masked ones (f: model photons)."""
        one = np.float32(1.0)
        for x in range(f.size):
            kp = keep[x]
            f[x] = kp * np.sqrt(inten_j[x] / f[x]) + (one - kp)

    @_helper
    def log_into(r, e):  # pragma: no cover
        """r[x] <- ln r[x] for positive, normal float32 ``r`` (e: int32 scratch, r's size).

        Exponent and mantissa from the bits, then the minimax polynomial of Cephes'
        ``logf`` (S. L. Moshier) on [sqrt(1/2), sqrt(2)): within 2 ulp, and, unlike the
        libm call, vectorised by LLVM (the deviance's logarithms cost 5x less).
        """
        rb = r.view(np.int32)
        for x in range(r.size):
            b = rb[x]
            e[x] = (b >> 23) - 126
            rb[x] = (b & 0x007FFFFF) | 0x3F000000  # the mantissa, in [1/2, 1)
        one = np.float32(1.0)
        for x in range(r.size):
            m = r[x]
            low = m < np.float32(0.70710678)
            k = np.float32(e[x]) - one if low else np.float32(e[x])
            t = (m + m - one) if low else (m - one)
            z = t * t
            y = np.float32(7.0376836292e-2) * t - np.float32(1.1514610310e-1)
            y = y * t + np.float32(1.1676998740e-1)
            y = y * t - np.float32(1.2420140846e-1)
            y = y * t + np.float32(1.4249322787e-1)
            y = y * t - np.float32(1.6668057665e-1)
            y = y * t + np.float32(2.0000714765e-1)
            y = y * t - np.float32(2.4999993993e-1)
            y = y * t + np.float32(3.3333331174e-1)
            y = y * t * z + np.float32(-2.12194440e-4) * k - np.float32(0.5) * z
            r[x] = t + y + np.float32(0.693359375) * k

    @_helper
    def frame_deviance(inten_j, keep, mm):  # pragma: no cover
        """Poisson deviance ``2 sum keep (I ln(I / M) - (I - M))`` of one frame (M: mm)."""
        r = np.empty(mm.size, np.float32)
        for x in range(mm.size):
            r[x] = inten_j[x] / mm[x] + np.float32(1e-30)
        log_into(r, np.empty(mm.size, np.int32))
        acc = 0.0
        for x in range(mm.size):
            i = inten_j[x]
            acc += keep[x] * (i * r[x] - (i - mm[x]))
        return 2.0 * acc

    @_helper
    def _scale_modes(wave, j, f):  # pragma: no cover
        """wave[j, k, x] *= f[x] for every mode k."""
        for k in range(wave.shape[1]):
            row = wave[j, k]
            for x in range(f.size):
                row[x] *= f[x]

    @_helper
    def _project_single_mode(row, inten_j, keep, bg, s):  # pragma: no cover
        """row[x] *= sqrt(I[x] / M[x]) on good pixels: :func:`frame_model`,
        :func:`_modulus_factor` and :func:`_scale_modes` of a one-mode frame in one loop."""
        tiny = np.float32(1e-12)
        one = np.float32(1.0)
        for x in range(row.size):
            v = row[x]
            mm = max(s * (v.real * v.real + v.imag * v.imag) + bg[x], tiny)
            kp = keep[x]
            row[x] = v * (kp * np.sqrt(inten_j[x] / mm) + (one - kp))

    @_helper
    def modulus_frame(wave, j, inten_j, keep, bg, s, selected):  # pragma: no cover
        """wave[j] *= sqrt(I / M) on good pixels (alternating projections) for one frame.

        Returns the Poisson deviance of the model before the projection when ``selected``
        (0 otherwise).
        """
        kk, p = wave.shape[1], wave.shape[2]
        if kk == 1 and not selected:  # one pass over the pixels, no scratch row
            _project_single_mode(wave[j, 0], inten_j, keep, bg, s)
            return 0.0
        f = np.empty(p, np.float32)
        frame_model(wave, j, bg, s, f)
        d = frame_deviance(inten_j, keep, f) if selected else 0.0
        _modulus_factor(inten_j, keep, f)
        _scale_modes(wave, j, f)
        return d

    @_helper
    def family_frame(wave, psi, j, q, inten_j, keep, bg, s, coefs, selected):  # pragma: no cover
        """The projection-family update of one frame: with ``(alpha, cx, cw, cf) = coefs``,
        ``psi[q] <- cx psi[q] + cw wave[j] + cf P_F((1 + alpha) wave[j] - alpha psi[q])`` and
        ``wave[j] <- psi[q]``.

        Returns the deviance of the model ``wave[j]`` when ``selected`` (0 otherwise).
        """
        kk, p = wave.shape[1], wave.shape[2]
        a0 = coefs[0]
        a1 = np.float32(1.0) + a0
        fx = coefs[1]
        fw = coefs[2]
        ff = coefs[3]
        f = np.empty(p, np.float32)
        d = 0.0
        if selected:
            frame_model(wave, j, bg, s, f)
            d = frame_deviance(inten_j, keep, f)
        for x in range(p):
            f[x] = np.float32(0.0)
        for k in range(kk):
            wrow = wave[j, k]
            qrow = psi[q, k]
            for x in range(p):
                z = a1 * wrow[x] - a0 * qrow[x]
                f[x] += z.real * z.real + z.imag * z.imag
        _power_to_model(f, s, bg)
        _modulus_factor(inten_j, keep, f)
        for k in range(kk):
            wrow = wave[j, k]
            qrow = psi[q, k]
            for x in range(p):
                w = wrow[x]
                v = qrow[x]
                v = fx * v + fw * w + ff * f[x] * (a1 * w - a0 * v)
                qrow[x] = v
                wrow[x] = v
        return d

    @_helper
    def exit_frame(obj, probes, b, cy, cx, w, accumulate):  # pragma: no cover
        """w[k] (+)= probes[b, k] * obj[cy:cy + ny, cx:cx + nx]: one frame's (K, ny, nx)
        exit waves."""
        kk, ny, nx = w.shape
        for k in range(kk):
            for y in range(ny):
                orow = obj[cy + y, cx : cx + nx]
                prow = probes[b, k, y]
                wrow = w[k, y]
                if accumulate:
                    for x in range(nx):
                        wrow[x] += prow[x] * orow[x]
                else:
                    for x in range(nx):
                        wrow[x] = prow[x] * orow[x]

    # ---------------------------------------------------------------- parallel kernels
    @_parallel
    def exit_waves(obj, probes, bins, corners, out, accumulate):  # pragma: no cover
        for j in _prange(out.shape[0]):
            exit_frame(obj, probes, bins[j], corners[j, 0], corners[j, 1], out[j], accumulate)

    @_parallel
    def deviance_rows(wave, inten, keep, bg, scale, dev, every, j0):  # pragma: no cover
        """dev[j] = Poisson deviance of frame j when (j0 + j) % every == 0.

        The same quantity as :func:`recon.deviance.poisson_deviance` (not normalised).
        """
        m, kk, p = wave.shape
        for j in _prange(m):
            if (j0 + j) % every != 0:
                continue
            mm = np.empty(p, np.float32)
            frame_model(wave, j, bg, scale[j], mm)
            dev[j] = frame_deviance(inten[j], keep, mm)

    @_parallel
    def add_ratio(wave, inten, keep, bg, scale, ratio):  # pragma: no cover
        """ratio[thread] += keep I / M over the frames (T, P) per-thread accumulators."""
        m, kk, p = wave.shape
        for j in _prange(m):
            t = _nb.get_thread_id()
            mm = np.empty(p, np.float32)
            frame_model(wave, j, bg, scale[j], mm)
            r = ratio[t]
            for x in range(p):
                r[x] += keep[x] * inten[j, x] / mm[x]

    @_parallel
    def modulus_project(wave, inten, keep, bg, scale, dev, every, j0):  # pragma: no cover
        """wave *= sqrt(I / M) on good pixels (alternating projections).

        In the same pass ``dev[j]`` = Poisson deviance of the model before the projection
        for the frames with ``(j0 + j) % every == 0`` (as :func:`deviance_rows`).
        """
        for j in _prange(wave.shape[0]):
            selected = (j0 + j) % every == 0
            d = modulus_frame(wave, j, inten[j], keep, bg, scale[j], selected)
            if selected:
                dev[j] = d

    @_parallel
    def projection_family(
        wave, psi, inten, keep, bg, scale, alpha, cx, cw, cf, dev, every, j0
    ):  # pragma: no cover
        """psi <- cx psi + cw wave + cf P_F((1 + alpha) wave - alpha psi); wave <- psi.

        ``dev`` as in :func:`modulus_project` (the deviance of the model ``wave``).
        """
        coefs = np.array([alpha, cx, cw, cf], np.float32)
        for j in _prange(wave.shape[0]):
            selected = (j0 + j) % every == 0
            d = family_frame(wave, psi, j, j, inten[j], keep, bg, scale[j], coefs, selected)
            if selected:
                dev[j] = d
