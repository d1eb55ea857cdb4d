"""The Fourier side of a projection iteration in one pass per frame (numba + rocket-fft).

:func:`fourier_pass` does, frame by frame and in parallel over the frames, what
:func:`recon.kernels.exit_waves`, :func:`recon.backend.fft2c`,
:func:`recon.kernels.fourier_project` and :func:`recon.backend.ifft2c` do one after the
other over the whole stack: the frame's exit waves, their FFT, the modulus projection (AP)
or the projection-family update (DM, RAAR) with the frame's deviance, and the inverse FFT.
A frame's waves (128 KiB for one mode of 128^2) stay in the core's cache through the four
steps, so the stack goes through memory once (written at the end) instead of about eight
times, and each FFT is a single-threaded pocketfft of one frame (``rocket-fft`` makes
``numpy.fft`` callable from numba) instead of a multi-threaded pass over the stack.

The per-frame projections are the ones of :mod:`recon.numba_kernels`
(:func:`~recon.numba_kernels.modulus_frame`, :func:`~recon.numba_kernels.family_frame`),
so both paths compute the same thing; only the FFT library's rounding can differ.

``AVAILABLE`` is False when numba or rocket-fft is missing, or ``SPTYCHO_FUSED_FFT=0``;
:mod:`recon.kernels` then runs the four steps one after the other.

Shapes as in :mod:`recon.numba_kernels`: ``out`` (M, K, ny, nx) complex64, ``probes``
(B, K, ny, nx) complex64, ``obj`` (H, W) complex64, ``inten`` (M, P) float32, ``keep``,
``bg`` (P,) float32, ``psi`` (M, K, P) complex64.
"""

from __future__ import annotations

import os

import numpy as np

from recon import numba_kernels as nbk

try:
    import rocket_fft  # noqa: F401 - registers numpy.fft for numba

    AVAILABLE = nbk.AVAILABLE and os.environ.get("SPTYCHO_FUSED_FFT", "1") != "0"
except ImportError:  # pragma: no cover - depends on the environment
    AVAILABLE = False


if AVAILABLE:
    import numba as _nb

    _helper = _nb.njit(**nbk.JIT_OPTIONS)
    _parallel = _nb.njit(parallel=True, **nbk.JIT_OPTIONS)
    _prange = _nb.prange

    @_helper
    def project_frame(w, q, inten_j, keep, bg, s, psi, family, coefs, selected):  # pragma: no cover
        """``F^-1 P F w`` of one frame's (K, ny, nx) waves ``w``, and its deviance.

        ``P`` is the modulus projection or, with ``family``, the family update of
        :func:`recon.numba_kernels.family_frame` (iterate ``psi[q]``, ``coefs``). Returns the
        projected real-space waves (K, ny, nx) complex64 and the deviance of the model
        ``F w`` when ``selected`` (0 otherwise).
        """
        kk, ny, nx = w.shape
        f = np.fft.fft2(w, norm="ortho").reshape((1, kk, ny * nx))
        if family:
            d = nbk.family_frame(f, psi, 0, q, inten_j, keep, bg, s, coefs, selected)
        else:
            d = nbk.modulus_frame(f, 0, inten_j, keep, bg, s, selected)
        return np.fft.ifft2(f.reshape((kk, ny, nx)), norm="ortho"), d

    @_parallel
    def fourier_pass(
        obj, probes, bins, corners, inten, keep, bg, scale, psi, family, coefs, out, dev, every, j0
    ):  # pragma: no cover
        """out[j] = F^-1 projected F(probes[bins[j]] obj[patch j]) for every frame j.

        With ``family`` the projection is the family update of
        :func:`recon.numba_kernels.family_frame` (``coefs`` (4,) float32: alpha, cx, cw,
        cf), which also updates ``psi[j]``; otherwise the modulus projection. ``dev[j]`` is
        the deviance of the model before the projection for the frames with
        ``(j0 + j) % every == 0``.
        """
        m, kk, ny, nx = out.shape
        for j in _prange(m):
            cy = corners[j, 0]
            cx = corners[j, 1]
            b = bins[j]
            w = np.empty((kk, ny, nx), np.complex64)
            nbk.exit_frame(obj, probes, b, cy, cx, w, False)
            selected = (j0 + j) % every == 0
            g, d = project_frame(w, j, inten[j], keep, bg, scale[j], psi, family, coefs, selected)
            if selected:
                dev[j] = d
            for k in range(kk):
                for y in range(ny):
                    grow = g[k, y]
                    orow2 = out[j, k, y]
                    for x in range(nx):
                        orow2[x] = grow[x]

    @_parallel
    def fft_pair_by_frame(stack):  # pragma: no cover
        """stack[j] <- F^-1 F stack[j] for every frame j, in parallel over the frames: the
        FFT work of :func:`fourier_pass` alone (the benchmark's in-cache two-FFT floor)."""
        m, kk, ny, nx = stack.shape
        for j in _prange(m):
            g = np.fft.ifft2(np.fft.fft2(stack[j], norm="ortho"), norm="ortho")
            for k in range(kk):
                for y in range(ny):
                    for x in range(nx):
                        stack[j, k, y, x] = g[k, y, x]
