"""One sequential ePIE/rPIE pass, frame by frame, in one compiled loop (numba + rocket-fft).

:func:`pie_pass` is :func:`recon.pie.pie_iteration` with one frame per batch (the classic
sequential algorithm, the default ``EngineOptions.pie_batch``) written as a single numba
loop over the frames: the frame's shifted probe (from the probe's spectrum while the probe is
updated), its exit waves, their FFT, the modulus projection with the frame's deviance
(:func:`recon.numba_fourier.project_frame`), the inverse FFT, the rPIE object step on the
frame's patch and the probe step back in the centred probe's spectrum. Everything a frame
touches stays in cache, and no parallel kernel is launched per frame (the stack path pays
five launches and four FFT calls per frame, which cost more than the work itself on small
frames). It runs on one thread: the frames depend on each other.

``AVAILABLE`` is :data:`recon.numba_fourier.AVAILABLE` (numba and rocket-fft, and
``SPTYCHO_FUSED_FFT`` not 0).

Shapes: ``obj`` (H, W) complex64 (updated in place); ``spectrum`` (K, n, n) complex64, the
centred probe's orthonormal FFT (updated in place); ``probes`` (B, K, n, n) complex64 shifted
probe modes (used when the probe is fixed); ``ramps``, ``unramps`` (B, n, n) complex64;
``bins`` (N,) int64; ``corners`` (N, 2) int64; ``order`` (N,) int64 visiting order;
``inten`` (N, P) float32; ``keep``, ``bg`` (P,) float32; ``scale`` (N,) float32;
``dev`` (N,) float64.
"""

from __future__ import annotations

import numpy as np

from recon import numba_fourier as nbf
from recon import numba_kernels as nbk

AVAILABLE = nbf.AVAILABLE

if AVAILABLE:
    import numba as _nb

    _serial = _nb.njit(**nbk.JIT_OPTIONS)

    @_serial
    def _denominator(power, a):  # pragma: no cover
        """power <- (1 - a) power + a max(power) + 1e-12, in place (rPIE's weight)."""
        top = np.float32(0.0)
        for x in range(power.size):
            top = max(top, power[x])
        c = a * top + np.float32(1e-12)
        for x in range(power.size):
            power[x] = (np.float32(1.0) - a) * power[x] + c

    @_serial
    def pie_pass(
        obj,
        spectrum,
        probes,
        ramps,
        unramps,
        bins,
        corners,
        order,
        inten,
        keep,
        bg,
        scale,
        a,
        a_probe,
        amax,
        update_probe,
        every,
        dev,
    ):  # pragma: no cover
        """Visit the frames in ``order``, updating ``obj`` (and ``spectrum``) after each.

        ``a``, ``a_probe``: rPIE's weights of the object and probe steps (1 for ePIE);
        ``amax``: clip ``|O|`` to it (< 0: no clip);
        ``dev[j]``: the deviance of frame j's model before its update, for the frames with
        ``j % every == 0``.
        """
        kk, ny, nx = spectrum.shape
        p = ny * nx
        a = np.float32(a)
        a_probe = np.float32(a_probe)
        psi = np.empty((kk, ny, nx), np.complex64)
        old = np.empty((ny, nx), np.complex64)
        power = np.empty(p, np.float32)
        no_psi = np.zeros((1, 1, 1), np.complex64)  # the modulus projection needs no iterate
        no_coefs = np.zeros(4, np.float32)
        for i in range(order.size):
            j = order[i]
            b = bins[j]
            cy = corners[j, 0]
            cx = corners[j, 1]
            if update_probe:  # the frame's shifted probe from the current spectrum
                for k in range(kk):
                    for y in range(ny):
                        for x in range(nx):
                            psi[k, y, x] = spectrum[k, y, x] * ramps[b, y, x]
                pj = np.fft.ifft2(psi, norm="ortho")
            else:
                pj = probes[b].copy()
            for y in range(ny):
                for x in range(nx):
                    old[y, x] = obj[cy + y, cx + x]
            for k in range(kk):
                for y in range(ny):
                    for x in range(nx):
                        psi[k, y, x] = pj[k, y, x] * old[y, x]
            selected = j % every == 0
            diff, d = nbf.project_frame(
                psi, 0, inten[j], keep, bg, scale[j], no_psi, False, no_coefs, selected
            )
            if selected:
                dev[j] = d
            for k in range(kk):
                for y in range(ny):
                    for x in range(nx):
                        diff[k, y, x] -= psi[k, y, x]
            # object step: sum_k conj(P_k) d_k / ((1 - a) sum_k |P_k|^2 + a max)
            for y in range(ny):
                for x in range(nx):
                    s = np.float32(0.0)
                    for k in range(kk):
                        v = pj[k, y, x]
                        s += v.real * v.real + v.imag * v.imag
                    power[y * nx + x] = s
            _denominator(power, a)
            for y in range(ny):
                for x in range(nx):
                    num = np.complex64(0.0)
                    for k in range(kk):
                        num += pj[k, y, x].conjugate() * diff[k, y, x]
                    new = old[y, x] + num / power[y * nx + x]
                    if amax >= 0:
                        amp = abs(new)
                        if amp > amax:
                            new *= np.float32(amax / amp)
                    obj[cy + y, cx + x] = new
            if not update_probe:
                continue
            # probe step in the frame's coordinates, back to the centred probe's spectrum
            for y in range(ny):
                for x in range(nx):
                    v = old[y, x]
                    power[y * nx + x] = v.real * v.real + v.imag * v.imag
            _denominator(power, a_probe)
            for k in range(kk):
                for y in range(ny):
                    for x in range(nx):
                        diff[k, y, x] = old[y, x].conjugate() * diff[k, y, x] / power[y * nx + x]
            step = np.fft.fft2(diff, norm="ortho")
            for k in range(kk):
                for y in range(ny):
                    for x in range(nx):
                        spectrum[k, y, x] += step[k, y, x] * unramps[b, y, x]
