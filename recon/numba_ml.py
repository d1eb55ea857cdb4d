"""Fused, multi-threaded CPU loops of the ML engine (numba): gradient weights and the exact
line search's coefficients and values, behind :mod:`recon.ml_kernels`.

Shapes as in :mod:`recon.numba_kernels`: ``wave`` (M, K, P) complex64 (frames, modes,
flattened pixels), ``inten`` (M, P) float32, ``keep``, ``bg`` (P,) float32, ``scale`` (M,)
float32; line-search coefficients ``coef`` (T, M, P) float32 with T = 1, 3 or 5. The kernels
exist only when :data:`recon.numba_kernels.AVAILABLE`.

:func:`weight_frame` and :func:`coefficients_frame` are also compiled into the kernels of
:mod:`recon.numba_ml_fourier`: after editing them, clear numba's cache as
:mod:`recon.numba_kernels` says.
"""

from __future__ import annotations

import numpy as np

from recon import numba_kernels as nbk

if nbk.AVAILABLE:
    import numba as _nb

    _helper = _nb.njit(**nbk.JIT_OPTIONS)
    _parallel = _nb.njit(parallel=True, **nbk.JIT_OPTIONS)
    _prange = _nb.prange

    @_helper
    def weight_frame(wave, j, inten_j, keep, s, gaussian, f, out):  # pragma: no cover
        """out[j] = keep s dL/dM wave[j] for one frame; ``f`` holds its model photons M
        (:func:`recon.numba_kernels.frame_model`) and is overwritten (out may be wave).

        ``dL/dM`` is ``1 - I / M`` (Poisson) or ``1 - sqrt(I / M)`` (``gaussian``: amplitude
        least squares).
        """
        one = np.float32(1.0)
        if gaussian:
            for x in range(f.size):
                f[x] = keep[x] * s * (one - np.sqrt(inten_j[x] / f[x]))
        else:
            for x in range(f.size):
                f[x] = keep[x] * s * (one - inten_j[x] / f[x])
        for k in range(wave.shape[1]):
            wrow = wave[j, k]
            orow = out[j, k]
            for x in range(f.size):
                orow[x] = f[x] * wrow[x]

    @_parallel
    def ml_weight(wave, inten, keep, bg, scale, gaussian, out):  # pragma: no cover
        """out = keep scale dL/dM wave: Fourier factor of the ML gradient (out may be wave)."""
        m, kk, p = wave.shape
        for j in _prange(m):
            f = np.empty(p, np.float32)
            nbk.frame_model(wave, j, bg, scale[j], f)
            weight_frame(wave, j, inten[j], keep, scale[j], gaussian, f, out)

    # ---------------------------------------------------------------- ML line search
    @_helper
    def coefficients_frame(a, b, c, coef, j):  # pragma: no cover
        """coef[:, j]: coefficients of g^t of sum_k |a + g b + g^2 c|^2 for one frame.

        ``a``, ``b``, ``c`` are the frame's (K, P) complex64 waves; ``coef`` (T, M, P)
        float32 with T = 1 (a only), 3 (a, b) or 5 (all three); the waves a smaller T leaves
        out are not read.
        """
        nc = coef.shape[0]
        kk, p = a.shape
        two = np.float32(2.0)
        for t in range(nc):
            for x in range(p):
                coef[t, j, x] = np.float32(0.0)
        c0 = coef[0, j]
        for k in range(kk):
            arow = a[k]
            if nc == 1:
                for x in range(p):
                    v = arow[x]
                    c0[x] += v.real * v.real + v.imag * v.imag
                continue
            brow = b[k]
            c1 = coef[1, j]
            c2 = coef[2, j]
            for x in range(p):
                u = arow[x]
                v = brow[x]
                c0[x] += u.real * u.real + u.imag * u.imag
                c1[x] += two * (u.real * v.real + u.imag * v.imag)
                c2[x] += v.real * v.real + v.imag * v.imag
            if nc == 5:
                crow = c[k]
                c3 = coef[3, j]
                c4 = coef[4, j]
                for x in range(p):
                    u = arow[x]
                    v = brow[x]
                    w = crow[x]
                    c2[x] += two * (u.real * w.real + u.imag * w.imag)
                    c3[x] += two * (v.real * w.real + v.imag * w.imag)
                    c4[x] += w.real * w.real + w.imag * w.imag

    @_parallel
    def ml_line_coefficients(f0, f1, f2, coef):  # pragma: no cover
        """coef[t, j, x]: coefficient of g^t of sum_k |f0 + g f1 + g^2 f2|^2 at (j, x).

        ``coef`` is (T, M, P) float32 with T = 1 (f0 only), 3 (f0, f1) or 5 (all three);
        the waves a smaller T leaves out are not read (pass any array).
        """
        for j in _prange(f0.shape[0]):
            coefficients_frame(f0[j], f1[j], f2[j], coef, j)

    @_helper
    def _line_model(coef, j, g, s, bg, m0, mm, delta, dm, ddm):  # pragma: no cover
        """Frame j along a line: m0 = M(0), mm = M(g), delta = M(g) - M(0), dm = M'(g), ddm
        = M''(g) with ``M(g) = max(s q(g) + bg, 1e-12)`` and ``q(g) = sum_t coef[t, j]
        g^t`` (T = 1, 3 or 5). The difference is formed from the polynomial's increment, so
        it keeps its relative precision however small the step."""
        nc = coef.shape[0]
        tiny = np.float32(1e-12)
        zero = np.float32(0.0)
        two = np.float32(2.0)
        c0 = coef[0, j]
        if nc == 5:
            c1 = coef[1, j]
            c2 = coef[2, j]
            c3 = coef[3, j]
            c4 = coef[4, j]
            k3 = np.float32(3.0)
            k4 = np.float32(4.0)
            k6 = np.float32(6.0)
            k12 = np.float32(12.0) * g
            for x in range(mm.size):
                delta[x] = s * g * (c1[x] + g * (c2[x] + g * (c3[x] + g * c4[x])))
                dm[x] = s * (c1[x] + g * (two * c2[x] + g * (k3 * c3[x] + g * k4 * c4[x])))
                ddm[x] = s * (two * c2[x] + g * (k6 * c3[x] + k12 * c4[x]))
        elif nc == 3:
            c1 = coef[1, j]
            c2 = coef[2, j]
            for x in range(mm.size):
                delta[x] = s * g * (c1[x] + g * c2[x])
                dm[x] = s * (c1[x] + two * g * c2[x])
                ddm[x] = s * two * c2[x]
        else:
            for x in range(mm.size):
                delta[x] = zero
                dm[x] = zero
                ddm[x] = zero
        for x in range(mm.size):
            base = s * c0[x] + bg[x]
            m0[x] = max(base, tiny)
            mm[x] = max(base + delta[x], tiny)
            if base < tiny or base + delta[x] < tiny:
                delta[x] = mm[x] - m0[x]

    @_helper
    def _poisson_terms(inten_j, m0, mm, delta, relative, v):  # pragma: no cover
        """v = the Poisson terms of one frame along the line; then m0 <- dL/dM = 1 - I / M and
        delta <- d2L/dM2 = I / M^2 (at M = mm).

        ``v`` is ``M - I + I ln(I / M)`` or, with ``relative``, ``dM - I ln(1 + z)`` with
        ``z = dM / M0`` (``dM = delta``). ``ln(1 + z)`` keeps log1p's relative precision for
        small steps: the series to ``z^8`` where ``|z| < 0.1`` (truncation below 1e-9 of it),
        the logarithm of ``1 + z`` elsewhere. The logarithms are the vectorised ones of
        :func:`recon.numba_kernels.log_into`, over every pixel (a pixel with ``I <= 0`` gets a
        finite logarithm times 0, as the branch of the scalar code left it out): no per-pixel
        branch or libm call.
        """
        p = v.size
        one = np.float32(1.0)
        zero = np.float32(0.0)
        least = np.float32(1.2e-38)  # the smallest normal float32: log_into's domain
        arg = np.empty(p, np.float32)
        if relative:
            z = np.empty(p, np.float32)
            for x in range(p):
                z[x] = delta[x] / m0[x]
                arg[x] = max(one + z[x], least)  # M(g) / M(0) > 0, but may round to 0
            nbk.log_into(arg, np.empty(p, np.int32))
            small = np.float32(0.1)
            for x in range(p):
                t = z[x]
                s = np.float32(1.0 / 8.0)
                s = np.float32(1.0 / 7.0) - t * s
                s = np.float32(1.0 / 6.0) - t * s
                s = np.float32(1.0 / 5.0) - t * s
                s = np.float32(1.0 / 4.0) - t * s
                s = np.float32(1.0 / 3.0) - t * s
                s = np.float32(0.5) - t * s
                s = t * (one - t * s)
                ln1p = s if abs(t) < small else arg[x]
                v[x] = delta[x] - max(inten_j[x], zero) * ln1p  # I <= 0: no logarithm term
        else:
            for x in range(p):
                arg[x] = max(inten_j[x], zero) / mm[x] + np.float32(1e-30)  # normal, positive
            nbk.log_into(arg, np.empty(p, np.int32))
            for x in range(p):
                i = inten_j[x]
                v[x] = mm[x] - i + max(i, zero) * arg[x]
        for x in range(p):
            r = inten_j[x] / mm[x]
            m0[x] = one - r
            delta[x] = r / mm[x]

    @_parallel
    def ml_line_values(
        coef, g, inten, keep, bg, scale, gaussian, relative, out
    ):  # pragma: no cover
        """out[j] = (L, dL/dg, d2L/dg2, Gauss-Newton part of d2L/dg2) of frame j at g.

        The model is ``M(g) = max(scale (sum_t coef[t] g^t) + bg, 1e-12)`` (coefficients
        of :func:`ml_line_coefficients`). ``L`` is the Poisson half deviance ``M - I + I
        ln(I / M)`` (the terms of :func:`deviance_rows`) or, with ``gaussian``, ``(sqrt M -
        sqrt I)^2``, summed over the good pixels; with ``relative``, ``L(g) - L(0)`` instead
        of ``L(g)`` (formed from ``M(g) - M(0)``: precise for tiny steps).
        """
        nc, m, p = coef.shape
        gg = np.float32(g)
        one = np.float32(1.0)
        two = np.float32(2.0)
        half = np.float32(0.5)
        for j in _prange(m):
            m0 = np.empty(p, np.float32)
            mm = np.empty(p, np.float32)
            delta = np.empty(p, np.float32)
            dm = np.empty(p, np.float32)
            ddm = np.empty(p, np.float32)
            _line_model(coef, j, gg, scale[j], bg, m0, mm, delta, dm, ddm)
            # v: the objective terms; f1, f2: dL/dM and d2L/dM2 (in m0 and delta, reused)
            v = np.zeros(p, np.float32)
            if gaussian:
                for x in range(p):
                    i = inten[j, x]
                    si = np.sqrt(i)
                    sm = np.sqrt(mm[x])
                    if relative:
                        v[x] = delta[x] - two * si * delta[x] / (sm + np.sqrt(m0[x]))
                    else:
                        v[x] = (sm - si) * (sm - si)
                    q = si / sm
                    m0[x] = one - q
                    delta[x] = half * q / mm[x]
            else:
                _poisson_terms(inten[j], m0, mm, delta, relative, v)
            acc = 0.0
            d1 = 0.0
            d2 = 0.0
            gn = 0.0
            for x in range(p):
                kp = keep[x]
                acc += kp * v[x]
                d1 += kp * m0[x] * dm[x]
                d2 += kp * m0[x] * ddm[x]
                gn += kp * delta[x] * dm[x] * dm[x]
            out[j, 0] = acc
            out[j, 1] = d1
            out[j, 2] = d2 + gn
            out[j, 3] = gn
