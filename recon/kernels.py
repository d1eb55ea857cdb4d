"""Fused inner-loop kernels of the ptychographic engines.

Every kernel exists once as array-module-generic code (``xp``: NumPy or CuPy) and, on the CPU
when `numba <https://numba.pydata.org>`_ is importable, as a fused, multi-threaded loop that
reads and writes each frame stack once (the element-wise work of an iteration then costs
little next to its two FFTs). The algorithms in :mod:`recon.algorithms` only call the
functions here, so there is one copy of each algorithm for both back-ends.

Shapes used throughout:

* ``obj``: (H, W) complex64 object; ``probes``: (B, K, n, n) complex64, the K incoherent
  probe modes shifted to each of the B sub-pixel bins (see :class:`PatchGeometry`);
* ``wave``: (M, K, n, n) complex64 exit waves (real or Fourier space) of M frames;
* ``inten``: (M, n, n) float32 measured photons in FFT order (zero frequency at [0, 0]);
* ``good``: (n, n) bool, False on masked pixels; ``bg``: (n, n) float32 background;
  ``scale``: (M,) float32 per-frame intensity scale (monitor).

Set ``SPTYCHO_NUMBA=0`` to force the generic code path on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from recon.backend import get_xp

try:  # numba is optional: the generic code is always there.
    import numba as _nb

    _HAS_NUMBA = os.environ.get("SPTYCHO_NUMBA", "1") != "0"
except ImportError:  # pragma: no cover - depends on the environment
    _nb = None
    _HAS_NUMBA = False

#: Smallest model intensity (photons) used in divisions.
TINY = np.float32(1e-12)


def numba_enabled(xp: ModuleType) -> bool:
    """True when the fused numba kernels are used for arrays of module ``xp``."""
    return _HAS_NUMBA and xp is np


@dataclass
class PatchGeometry:
    """Integer corners and sub-pixel bins of the frames of one chunk.

    Attributes
    ----------
    corners : (M, 2) int64 top-left object pixel (row, col) of each frame's patch
    bins : (M,) int64 index of each frame's sub-pixel shift bin
    n : (ny, nx) frame shape
    obj_shape : (H, W) object shape
    """

    corners: Any
    bins: Any
    n: tuple[int, int]
    obj_shape: tuple[int, int]
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def xp(self) -> ModuleType:
        return get_xp(self.corners)

    def rows_cols(self) -> tuple[Any, Any]:
        """Broadcastable (M, n, 1) row and (M, 1, n) column indices into the object."""
        if "rc" not in self._cache:
            xp = self.xp
            ny, nx = self.n
            rows = self.corners[:, 0, None, None] + xp.arange(ny)[None, :, None]
            cols = self.corners[:, 1, None, None] + xp.arange(nx)[None, None, :]
            self._cache["rc"] = (rows, cols)
        return self._cache["rc"]

    def flat_index(self) -> Any:
        """(M, n, n) int64 flat indices of every patch pixel into the object."""
        if "flat" not in self._cache:
            rows, cols = self.rows_cols()
            self._cache["flat"] = rows * self.obj_shape[1] + cols
        return self._cache["flat"]

    def bin_members(self, n_bins: int) -> list[Any]:
        """For each bin, the indices of the chunk's frames that use it."""
        if "members" not in self._cache:
            xp = self.xp
            self._cache["members"] = [xp.nonzero(self.bins == b)[0] for b in range(n_bins)]
        return self._cache["members"]


# --------------------------------------------------------------------------------------
# numba kernels (CPU)
# --------------------------------------------------------------------------------------
if _HAS_NUMBA:
    _jit = _nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    _prange = _nb.prange

    @_jit
    def _nb_exit_waves(obj, probes, bins, corners, out, accumulate):  # pragma: no cover
        m, kk, ny, nx = out.shape
        for j in _prange(m):
            cy = corners[j, 0]
            cx = corners[j, 1]
            b = bins[j]
            for k in range(kk):
                for y in range(ny):
                    orow = obj[cy + y, cx : cx + nx]
                    prow = probes[b, k, y]
                    wrow = out[j, k, y]
                    if accumulate:
                        for x in range(nx):
                            wrow[x] += prow[x] * orow[x]
                    else:
                        for x in range(nx):
                            wrow[x] = prow[x] * orow[x]

    # Hot loops are kept free of branches and run over contiguous pixels (modes in an outer
    # loop, per-frame scratch rows) so that LLVM vectorises them; the log-likelihood and the
    # background ratio are separate passes over the frames that need them.
    @_jit
    def _nb_a2(wave, j, out):  # pragma: no cover
        kk, p = wave.shape[1], wave.shape[2]
        for x in range(p):
            out[x] = np.float32(0.0)
        for k in range(kk):
            row = wave[j, k]
            for x in range(p):
                v = row[x]
                out[x] += v.real * v.real + v.imag * v.imag

    @_jit
    def _nb_llk(wave, inten, keep, bg, scale, dev, llk_every, j0):  # pragma: no cover
        m, kk, p = wave.shape
        tiny = np.float32(1e-12)
        for j in _prange(m):
            if (j0 + j) % llk_every != 0:
                continue
            a2 = np.empty(p, np.float32)
            _nb_a2(wave, j, a2)
            s = scale[j]
            acc = 0.0
            for x in range(p):
                mm = max(s * a2[x] + bg[x], tiny)
                i = inten[j, x]
                acc += keep[x] * (i * np.log(i / mm + np.float32(1e-30)) - (i - mm))
            dev[j] = 2.0 * acc

    @_jit
    def _nb_ratio(wave, inten, keep, bg, scale, ratio):  # pragma: no cover
        m, kk, p = wave.shape
        tiny = np.float32(1e-12)
        for j in _prange(m):
            t = _nb.get_thread_id()
            a2 = np.empty(p, np.float32)
            _nb_a2(wave, j, a2)
            s = scale[j]
            r = ratio[t]
            for x in range(p):
                r[x] += keep[x] * inten[j, x] / max(s * a2[x] + bg[x], tiny)

    @_jit
    def _nb_ap(wave, inten, keep, bg, scale):  # pragma: no cover
        m, kk, p = wave.shape
        one = np.float32(1.0)
        tiny = np.float32(1e-12)
        for j in _prange(m):
            f = np.empty(p, np.float32)
            _nb_a2(wave, j, f)
            s = scale[j]
            for x in range(p):
                kp = keep[x]
                f[x] = kp * np.sqrt(inten[j, x] / max(s * f[x] + bg[x], tiny)) + (one - kp)
            for k in range(kk):
                row = wave[j, k]
                for x in range(p):
                    row[x] *= f[x]

    @_jit
    def _nb_dm(wave, psi, inten, keep, bg, scale):  # pragma: no cover
        # psi <- psi + P_F(2 wave - psi) - wave; wave <- psi
        m, kk, p = wave.shape
        one = np.float32(1.0)
        two = np.float32(2.0)
        tiny = np.float32(1e-12)
        for j in _prange(m):
            f = np.zeros(p, np.float32)
            for k in range(kk):
                wrow = wave[j, k]
                qrow = psi[j, k]
                for x in range(p):
                    z = two * wrow[x] - qrow[x]
                    f[x] += z.real * z.real + z.imag * z.imag
            s = scale[j]
            for x in range(p):
                kp = keep[x]
                f[x] = kp * np.sqrt(inten[j, x] / max(s * f[x] + bg[x], tiny)) + (one - kp)
            for k in range(kk):
                wrow = wave[j, k]
                qrow = psi[j, k]
                for x in range(p):
                    w = wrow[x]
                    q = qrow[x]
                    q += f[x] * (two * w - q) - w
                    qrow[x] = q
                    wrow[x] = q

    @_jit
    def _nb_ml_weight(wave, inten, keep, bg, scale):  # pragma: no cover
        m, kk, p = wave.shape
        one = np.float32(1.0)
        tiny = np.float32(1e-12)
        for j in _prange(m):
            f = np.empty(p, np.float32)
            _nb_a2(wave, j, f)
            s = scale[j]
            for x in range(p):
                f[x] = keep[x] * s * (one - inten[j, x] / max(s * f[x] + bg[x], tiny))
            for k in range(kk):
                row = wave[j, k]
                for x in range(p):
                    row[x] *= f[x]

    @_jit
    def _nb_ml_line(wave0, dwave, inten, keep, bg, scale, out):  # pragma: no cover
        m, kk, p = wave0.shape
        tiny = np.float32(1e-12)
        two = np.float32(2.0)
        for j in _prange(m):
            a2 = np.zeros(p, np.float32)
            c = np.zeros(p, np.float32)
            b2 = np.zeros(p, np.float32)
            for k in range(kk):
                vrow = wave0[j, k]
                drow = dwave[j, k]
                for x in range(p):
                    v = vrow[x]
                    d = drow[x]
                    a2[x] += v.real * v.real + v.imag * v.imag
                    c[x] += v.real * d.real + v.imag * d.imag
                    b2[x] += d.real * d.real + d.imag * d.imag
            s = scale[j]
            d1 = 0.0
            d2 = 0.0
            for x in range(p):
                mm = max(s * a2[x] + bg[x], tiny)
                r = inten[j, x] / mm
                a = two * s * c[x]
                kp = keep[x]
                d1 += kp * a * (1 - r)
                d2 += kp * (two * s * b2[x] * (1 - r) + a * a * r / mm)
            out[j, 0] = d1
            out[j, 1] = d2

    @_jit
    def _nb_backproject_object(
        wave, probes, bins, corners, out, n_bands, p2, illum, do_illum
    ):  # pragma: no cover
        # out[patch j] += sum_k conj(P) wave; with do_illum also illum[patch j] += p2[bin j]
        m, kk, ny, nx = wave.shape
        h = out.shape[0]
        band = (h + n_bands - 1) // n_bands
        for t in _prange(n_bands):
            r0 = t * band
            r1 = min(h, r0 + band)
            for j in range(m):
                cy = corners[j, 0]
                cx = corners[j, 1]
                b = bins[j]
                y0 = max(0, r0 - cy)
                y1 = min(ny, r1 - cy)
                for y in range(y0, y1):
                    orow = out[cy + y, cx : cx + nx]
                    for k in range(kk):
                        prow = probes[b, k, y]
                        wrow = wave[j, k, y]
                        for x in range(nx):
                            orow[x] += prow[x].conjugate() * wrow[x]
                    if do_illum:
                        irow = illum[cy + y, cx : cx + nx]
                        qrow = p2[b, y]
                        for x in range(nx):
                            irow[x] += qrow[x]

    @_jit
    def _nb_illumination(probes, bins, corners, out, n_bands):  # pragma: no cover
        bb, kk, ny, nx = probes.shape
        m = corners.shape[0]
        h = out.shape[0]
        band = (h + n_bands - 1) // n_bands
        for t in _prange(n_bands):
            r0 = t * band
            r1 = min(h, r0 + band)
            for j in range(m):
                cy = corners[j, 0]
                cx = corners[j, 1]
                b = bins[j]
                y0 = max(0, r0 - cy)
                y1 = min(ny, r1 - cy)
                for y in range(y0, y1):
                    for k in range(kk):
                        for x in range(nx):
                            v = probes[b, k, y, x]
                            out[cy + y, cx + x] += v.real * v.real + v.imag * v.imag

    @_jit
    def _nb_backproject_probe(wave, obj, bins, corners, num, den):  # pragma: no cover
        # num: (T, B, K, n, n), den: (T, B, n, n) per-thread accumulators
        m, kk, ny, nx = wave.shape
        for j in _prange(m):
            t = _nb.get_thread_id()
            cy = corners[j, 0]
            cx = corners[j, 1]
            b = bins[j]
            for y in range(ny):
                orow = obj[cy + y, cx : cx + nx]
                drow = den[t, b, y]
                for x in range(nx):
                    o = orow[x]
                    drow[x] += o.real * o.real + o.imag * o.imag
                for k in range(kk):
                    nrow = num[t, b, k, y]
                    wrow = wave[j, k, y]
                    for x in range(nx):
                        nrow[x] += orow[x].conjugate() * wrow[x]


def _n_bands(h: int) -> int:
    threads = _nb.get_num_threads() if _nb is not None else 1
    return max(1, min(h, 4 * threads))


# --------------------------------------------------------------------------------------
# public kernels
# --------------------------------------------------------------------------------------
def exit_waves(
    obj: Any, probes: Any, geom: PatchGeometry, out: Any, accumulate: bool = False
) -> Any:
    """Exit waves ``out[j, k] (+)= probes[bins[j], k] * obj[patch j]``.

    Parameters
    ----------
    obj : (H, W) complex64
    probes : (B, K, n, n) complex64 shifted probe modes
    geom : patch geometry of the M frames
    out : (M, K, n, n) complex64, written (or added to when ``accumulate``)

    Returns
    -------
    out
    """
    xp = get_xp(obj, out)
    if numba_enabled(xp):
        _nb_exit_waves(obj, probes, geom.bins, geom.corners, out, accumulate)
        return out
    rows, cols = geom.rows_cols()
    waves = probes[geom.bins] * obj[rows, cols][:, None]
    if accumulate:
        out += waves
    else:
        out[...] = waves
    return out


def _flat(a: Any) -> Any:
    """(M, K, n, n) -> (M, K, n*n) view."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _llk_rows(xp: ModuleType, m: int, llk_every: int, j0: int) -> Any:
    return (xp.arange(m) + j0) % llk_every == 0


def fourier_project(
    wave: Any,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    psi: Any = None,
    ratio: Any = None,
    llk_every: int = 1,
    j0: int = 0,
) -> float:
    """Modulus projection in Fourier space, in place, and the model's Poisson deviance.

    With ``psi is None`` (alternating projections) ``wave`` becomes ``P_F(wave)``: each
    pixel's modes are scaled by ``sqrt(I / M)`` with ``M = scale * sum_k |wave_k|^2 + bg``;
    masked pixels keep the model amplitude. With ``psi`` given (difference map, Fourier
    form) ``psi <- psi + P_F(2 wave - psi) - wave`` and then ``wave <- psi``.

    Parameters
    ----------
    wave : (M, K, n, n) complex64 model waves in Fourier space (modified in place)
    inten : (M, n, n) float32 measured photons
    good : (n, n) bool, False on masked pixels
    bg : (n, n) float32 incoherent background (photons)
    scale : (M,) float32 per-frame scale
    psi : (M, K, n, n) complex64 difference-map iterate, or None
    ratio : (n, n) float32 accumulator of ``I / M`` (for the background update), or None
    llk_every, j0 : the deviance is summed over the frames whose index in the whole scan,
        ``j0 + j``, is a multiple of ``llk_every`` (1: all frames)

    Returns
    -------
    deviance : Poisson deviance ``2 sum [I ln(I/M) - (I - M)]`` of the model over the good
        pixels of the selected frames
    """
    xp = get_xp(wave)
    if numba_enabled(xp):
        m = wave.shape[0]
        dev = np.zeros(m, np.float64)
        keep = good.astype(np.float32).ravel()
        flat, b, inten2 = _flat(wave), bg.ravel(), inten.reshape(m, -1)
        _nb_llk(flat, inten2, keep, b, scale, dev, llk_every, j0)
        if ratio is not None:
            r = np.zeros((_nb.get_num_threads(), keep.size), np.float32)
            _nb_ratio(flat, inten2, keep, b, scale, r)
            ratio += r.sum(axis=0).reshape(ratio.shape)
        if psi is not None:
            _nb_dm(flat, _flat(psi), inten2, keep, b, scale)
        else:
            _nb_ap(flat, inten2, keep, b, scale)
        return float(dev.sum())
    a2 = (wave.real**2 + wave.imag**2).sum(axis=1)
    mod = xp.maximum(scale[:, None, None] * a2 + bg, TINY)
    rows = _llk_rows(xp, wave.shape[0], llk_every, j0)
    dev = _deviance(xp, inten[rows], mod[rows], good)
    if ratio is not None:
        ratio += xp.where(good, inten / mod, 0).sum(axis=0).astype(np.float32)
    if psi is None:
        f = xp.where(good, xp.sqrt(inten / mod), 1).astype(np.float32)
        wave *= f[:, None]
    else:
        z = 2 * wave - psi
        z2 = (z.real**2 + z.imag**2).sum(axis=1)
        mz = xp.maximum(scale[:, None, None] * z2 + bg, TINY)
        f = xp.where(good, xp.sqrt(inten / mz), 1).astype(np.float32)
        psi += f[:, None] * z - wave
        wave[...] = psi
    return dev


def _deviance(xp: ModuleType, inten: Any, mod: Any, good: Any) -> float:
    pos = inten > 0
    term = xp.where(pos, inten * xp.log(xp.where(pos, inten, 1) / mod), 0) - (inten - mod)
    return float(2 * xp.sum(xp.where(good, term, 0), dtype=np.float64))


def ml_gradient_fourier(
    wave: Any, inten: Any, good: Any, bg: Any, scale: Any, llk_every: int = 1, j0: int = 0
) -> float:
    """Replace ``wave`` by ``scale (1 - I / M) wave`` (0 on masked pixels), in place.

    This is the Fourier-space factor of the gradient of the Poisson negative log-likelihood
    ``L = sum (M - I ln M)``, ``M = scale sum_k |wave_k|^2 + bg``.

    Returns
    -------
    deviance : Poisson deviance of the model before the change (see :func:`fourier_project`)
    """
    xp = get_xp(wave)
    if numba_enabled(xp):
        m = wave.shape[0]
        dev = np.zeros(m, np.float64)
        keep = good.astype(np.float32).ravel()
        flat, b, inten2 = _flat(wave), bg.ravel(), inten.reshape(m, -1)
        _nb_llk(flat, inten2, keep, b, scale, dev, llk_every, j0)
        _nb_ml_weight(flat, inten2, keep, b, scale)
        return float(dev.sum())
    a2 = (wave.real**2 + wave.imag**2).sum(axis=1)
    mod = xp.maximum(scale[:, None, None] * a2 + bg, TINY)
    rows = _llk_rows(xp, wave.shape[0], llk_every, j0)
    dev = _deviance(xp, inten[rows], mod[rows], good)
    w = xp.where(good, scale[:, None, None] * (1 - inten / mod), 0).astype(np.float32)
    wave *= w[:, None]
    return dev


def ml_line_sums(
    wave0: Any, dwave: Any, inten: Any, good: Any, bg: Any, scale: Any
) -> tuple[float, float]:
    """First and second derivatives of ``L(g) = sum M - I ln M`` along ``wave0 + g dwave``.

    Returns
    -------
    (dL/dg, d2L/dg2) at ``g = 0``, summed over good pixels of all frames.
    """
    xp = get_xp(wave0)
    if numba_enabled(xp):
        m = wave0.shape[0]
        out = np.zeros((m, 2), np.float64)
        keep = good.astype(np.float32).ravel()
        _nb_ml_line(_flat(wave0), _flat(dwave), inten.reshape(m, -1), keep, bg.ravel(), scale, out)
        return float(out[:, 0].sum()), float(out[:, 1].sum())
    s = scale[:, None, None]
    a2 = (wave0.real**2 + wave0.imag**2).sum(axis=1)
    c = (wave0.real * dwave.real + wave0.imag * dwave.imag).sum(axis=1)
    b2 = (dwave.real**2 + dwave.imag**2).sum(axis=1)
    mod = xp.maximum(s * a2 + bg, TINY)
    r = inten / mod
    a = 2 * s * c
    d1 = xp.where(good, a * (1 - r), 0).sum(dtype=np.float64)
    d2 = xp.where(good, 2 * s * b2 * (1 - r) + a * a * r / mod, 0).sum(dtype=np.float64)
    return float(d1), float(d2)


def _scatter_add(xp: ModuleType, out: Any, flat: Any, values: Any) -> None:
    """``out.ravel()[flat] += values`` with repeated indices accumulated (real or complex)."""
    size = out.size
    if xp is np:
        idx = flat.ravel()
        if np.iscomplexobj(out):
            re = np.bincount(idx, values.real.ravel(), minlength=size)
            im = np.bincount(idx, values.imag.ravel(), minlength=size)
            out += (re + 1j * im).reshape(out.shape).astype(out.dtype)
        else:
            out += np.bincount(idx, values.ravel(), minlength=size).reshape(out.shape)
        return
    import cupyx  # type: ignore[import-not-found]

    if xp.iscomplexobj(out):
        view = out.view(np.float32 if out.dtype == np.complex64 else np.float64).ravel()
        idx = flat.ravel() * 2
        cupyx.scatter_add(view, idx, values.real.ravel())
        cupyx.scatter_add(view, idx + 1, values.imag.ravel())
    else:
        cupyx.scatter_add(out.ravel(), flat.ravel(), values.ravel())


def backproject_object(
    wave: Any, probes: Any, geom: PatchGeometry, out: Any, illum: Any = None
) -> Any:
    """``out[patch j] += sum_k conj(probes[bins[j], k]) * wave[j, k]`` (object adjoint).

    Parameters
    ----------
    wave : (M, K, n, n) complex64 real-space waves
    probes : (B, K, n, n) complex64
    out : (H, W) complex64 accumulator
    illum : (H, W) float32 accumulator of ``sum_k |probes|^2`` (see :func:`illumination`),
        filled in the same pass when given
    """
    xp = get_xp(wave)
    if numba_enabled(xp):
        do_illum = illum is not None
        p2 = (probes.real**2 + probes.imag**2).sum(axis=1) if do_illum else probes.real[:, 0]
        _nb_backproject_object(
            wave,
            probes,
            geom.bins,
            geom.corners,
            out,
            _n_bands(out.shape[0]),
            p2,
            illum if do_illum else np.zeros((1, 1), np.float32),
            do_illum,
        )
        return out
    vals = (probes[geom.bins].conj() * wave).sum(axis=1)
    _scatter_add(xp, out, geom.flat_index(), vals)
    if illum is not None:
        illumination(probes, geom, illum)
    return out


def illumination(probes: Any, geom: PatchGeometry, out: Any) -> Any:
    """``out[patch j] += sum_k |probes[bins[j], k]|^2``: (H, W) float32 accumulator."""
    xp = get_xp(probes)
    if numba_enabled(xp):
        _nb_illumination(probes, geom.bins, geom.corners, out, _n_bands(out.shape[0]))
        return out
    p2 = (probes.real**2 + probes.imag**2).sum(axis=1)
    _scatter_add(xp, out, geom.flat_index(), p2[geom.bins])
    return out


def backproject_probe(wave: Any, obj: Any, geom: PatchGeometry, num: Any, den: Any) -> None:
    """Probe adjoint per shift bin: ``num[b, k] += sum_{j in b} conj(O_j) wave[j, k]``.

    Parameters
    ----------
    wave : (M, K, n, n) complex64 real-space waves
    obj : (H, W) complex64
    num : (B, K, n, n) complex64 accumulator
    den : (B, n, n) float32 accumulator of ``sum_{j in b} |O_j|^2``
    """
    xp = get_xp(wave)
    if numba_enabled(xp):
        threads = _nb.get_num_threads()
        tnum = np.zeros((threads, *num.shape), num.dtype)
        tden = np.zeros((threads, *den.shape), den.dtype)
        _nb_backproject_probe(wave, obj, geom.bins, geom.corners, tnum, tden)
        num += tnum.sum(axis=0)
        den += tden.sum(axis=0)
        return
    rows, cols = geom.rows_cols()
    patches = obj[rows, cols]
    o2 = patches.real**2 + patches.imag**2
    prod = patches.conj()[:, None] * wave
    for b, members in enumerate(geom.bin_members(num.shape[0])):
        if members.size:
            num[b] += prod[members].sum(axis=0)
            den[b] += o2[members].sum(axis=0)
