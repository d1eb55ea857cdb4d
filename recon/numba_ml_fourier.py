"""The Fourier side of a maximum-likelihood iteration in one pass per frame (numba +
rocket-fft), as :mod:`recon.numba_fourier` does it for the projections.

* :func:`gradient_pass`: per frame, the exit waves, their FFT (kept: the line search starts
  from it), the Fourier factor of the gradient (:func:`recon.numba_ml.weight_frame`, with the
  frame's deviance when selected) and its inverse FFT. The stack way is
  :func:`recon.kernels.exit_waves`, :func:`recon.backend.fft2c`,
  :func:`recon.ml_kernels.ml_gradient` and :func:`recon.backend.ifft2c`.
* :func:`coefficients_pass`: per frame, the waves of the search direction ``P dO + dP O``
  and ``dP dO``, their FFTs and the quartic's coefficients
  (:func:`recon.numba_ml.coefficients_frame`) -- the stack way is
  :meth:`recon.ml_line_search.SearchLine._coefficients`.

A frame's waves stay in the core's cache through the steps: the stack is written once
(``f0``, the gradient waves, the coefficients) instead of going through memory at every
step, and each FFT is a single-threaded pocketfft of one frame. Exists when
:data:`recon.numba_fourier.AVAILABLE`.

Shapes as in :mod:`recon.numba_kernels`: ``obj``, ``d_o`` (H, W) complex64; ``probes``,
``d_probes`` (B, K, ny, nx) complex64; ``f0``, ``grad`` (M, K, ny, nx) complex64; ``inten``
(M, P) float32; ``keep``, ``bg`` (P,) float32; ``scale`` (M,) float32; ``coef`` (T, M, P)
float32.
"""

from __future__ import annotations

import numpy as np

from recon import numba_fourier as nbf
from recon import numba_kernels as nbk
from recon import numba_ml as nbm

AVAILABLE = nbf.AVAILABLE

if AVAILABLE:
    import numba as _nb

    _parallel = _nb.njit(parallel=True, **nbk.JIT_OPTIONS)
    _prange = _nb.prange

    @_parallel
    def gradient_pass(
        obj, probes, bins, corners, inten, keep, bg, scale, gaussian, f0, grad, dev, every, j0
    ):  # pragma: no cover
        """f0[j] = F(probes[bins[j]] obj[patch j]); grad[j] = F^-1 (keep s dL/dM f0[j]).

        ``grad`` may be ``f0`` (then only the gradient waves are kept). ``dev[j]`` is the
        Poisson deviance of the model for the frames with ``every > 0`` and ``(j0 + j) %
        every == 0``.
        """
        m, kk, ny, nx = grad.shape
        p = ny * nx
        for j in _prange(m):
            w = np.empty((kk, ny, nx), np.complex64)
            nbk.exit_frame(obj, probes, bins[j], corners[j, 0], corners[j, 1], w, False)
            f = np.fft.fft2(w, norm="ortho")
            f0[j] = f
            flat = f.reshape((1, kk, p))
            model = np.empty(p, np.float32)
            nbk.frame_model(flat, 0, bg, scale[j], model)
            if every > 0 and (j0 + j) % every == 0:
                dev[j] = nbk.frame_deviance(inten[j], keep, model)
            nbm.weight_frame(flat, 0, inten[j], keep, scale[j], gaussian, model, flat)
            grad[j] = np.fft.ifft2(f, norm="ortho")

    @_parallel
    def coefficients_pass(
        obj, d_o, probes, d_probes, with_probe, bins, corners, f0, have_f0, coef
    ):  # pragma: no cover
        """coef[:, j]: coefficients of the model power along ``(P + g dP)(O + g dO)``.

        The waves along the line are ``f0 + g f1 + g^2 f2`` with ``f1 = F(P dO + dP O)``
        and ``f2 = F(dP dO)`` (without ``with_probe``: ``f1 = F(P dO)``, no ``f2``; ``coef``
        then has T = 3 rows, else 5). ``f0[j]`` is used when ``have_f0``, else computed.
        """
        m = corners.shape[0]
        kk, ny, nx = probes.shape[1], probes.shape[2], probes.shape[3]
        p = ny * nx
        for j in _prange(m):
            b, cy, cx = bins[j], corners[j, 0], corners[j, 1]
            if have_f0:
                a = f0[j].reshape((kk, p))
            else:
                w0 = np.empty((kk, ny, nx), np.complex64)
                nbk.exit_frame(obj, probes, b, cy, cx, w0, False)
                a = np.fft.fft2(w0, norm="ortho").reshape((kk, p))
            w1 = np.empty((kk, ny, nx), np.complex64)
            nbk.exit_frame(d_o, probes, b, cy, cx, w1, False)
            if with_probe:
                nbk.exit_frame(obj, d_probes, b, cy, cx, w1, True)
                w2 = np.empty((kk, ny, nx), np.complex64)
                nbk.exit_frame(d_o, d_probes, b, cy, cx, w2, False)
                c = np.fft.fft2(w2, norm="ortho").reshape((kk, p))
            else:
                c = a  # not read with T = 3
            f1 = np.fft.fft2(w1, norm="ortho").reshape((kk, p))
            nbm.coefficients_frame(a, f1, c, coef, j)
