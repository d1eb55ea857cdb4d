"""Inner-loop kernels of the ptychographic engines.

Every kernel exists once as array-module-generic code (``xp``: NumPy or CuPy) and, on the CPU
when `numba <https://numba.pydata.org>`_ is importable, as a fused, multi-threaded loop of
:mod:`recon.numba_kernels` that reads and writes each frame stack once. The algorithms in
:mod:`recon.algorithms` only call the functions here, so there is one copy of each algorithm
for both back-ends.

Shapes used throughout:

* ``obj``: (H, W) complex64 object; ``probes``: (B, K, n, n) complex64, the K incoherent
  probe modes shifted to each of the B sub-pixel bins (see :class:`PatchGeometry`);
* ``wave``: (M, K, n, n) complex64 exit waves (real or Fourier space) of M frames;
* ``inten``: (M, n, n) float32 measured photons in FFT order (zero frequency at [0, 0]);
* ``good``: (n, n) bool, False on masked pixels; ``bg``: (n, n) float32 background;
  ``scale``: (M,) float32 per-frame intensity scale (monitor).

On the CPU the Fourier side of AP, DM and RAAR (:func:`fourier_pass`) runs frame by frame
in cache when ``rocket-fft`` is there (:mod:`recon.numba_fourier`; ``SPTYCHO_FUSED_FFT=0``
turns it off). On CuPy the modulus projections of AP, DM and RAAR run as fused CUDA kernels
(:mod:`recon.cupy_kernels`), the rest as the generic code. Set ``SPTYCHO_NUMBA=0`` to force
the generic code path on the CPU.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from recon import numba_backprojection as nbb
from recon import numba_fourier as nbf
from recon import numba_kernels as nbk
from recon.backend import fft2c, get_xp, ifft2c
from recon.deviance import poisson_deviance
from recon.patch_geometry import PatchGeometry

#: Use the numba kernels for NumPy arrays (tests switch it off to compare the two paths).
_HAS_NUMBA = nbk.AVAILABLE
#: Run the Fourier side frame by frame in cache on NumPy arrays (tests switch it off).
_HAS_FUSED_FFT = nbf.AVAILABLE
#: Use the fused CUDA kernels for CuPy arrays (tests switch it off to compare the two paths).
_USE_FUSED_GPU = True

#: Smallest model intensity (photons) used in divisions.
TINY = np.float32(1e-12)
#: Placeholder illumination accumulator of the numba object back-projection when none is asked.
_NO_ILLUM = np.zeros((1, 1), np.float32)
#: Placeholder iterate of the fused Fourier pass for alternating projections.
_NO_PSI = np.zeros((1, 1, 1), np.complex64)


def numba_enabled(xp: ModuleType) -> bool:
    """True when the fused numba kernels are used for arrays of module ``xp``."""
    return _HAS_NUMBA and xp is np


def fourier_in_cache(xp: ModuleType) -> bool:
    """True when :func:`fourier_pass` runs frame by frame in cache for arrays of ``xp``
    (without background or scale refinement)."""
    return _HAS_FUSED_FFT and numba_enabled(xp)


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
        nbk.exit_waves(obj, probes, geom.bins, geom.corners, out, accumulate)
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


def _numba_args(wave: Any, inten: Any, good: Any, bg: Any) -> tuple[Any, Any, Any, Any]:
    """Flattened (M, K, P) waves, (M, P) photons, (P,) float32 good-pixel weight, (P,) bg."""
    m = wave.shape[0]
    return _flat(wave), inten.reshape(m, -1), good.astype(np.float32).ravel(), bg.ravel()


def _numba_deviance(args: tuple, scale: Any, deviance_every: int, j0: int) -> float:
    """Unnormalised deviance of the selected frames by the fused numba kernel."""
    flat, inten2, keep, b = args
    dev = np.zeros(flat.shape[0], np.float64)
    nbk.deviance_rows(flat, inten2, keep, b, scale, dev, deviance_every, j0)
    return float(dev.sum())


def _model_and_deviance(
    wave: Any, inten: Any, good: Any, bg: Any, scale: Any, deviance_every: int, j0: int
) -> tuple[Any, float]:
    """(M, n, n) float32 model photons ``max(scale sum_k |wave_k|^2 + bg, TINY)`` and the
    unnormalised Poisson deviance of the selected frames (generic code)."""
    xp = get_xp(wave)
    a2 = (wave.real**2 + wave.imag**2).sum(axis=1)
    mod = xp.maximum(scale[:, None, None] * a2 + bg, TINY)
    rows = (xp.arange(wave.shape[0]) + j0) % deviance_every == 0
    dev = poisson_deviance(inten[rows], mod[rows], ~good, normalise=False)
    return mod, dev


def _fused_gpu() -> bool:
    """Use the fused CUDA kernels of :mod:`recon.cupy_kernels` (CuPy arrays only)."""
    if not _USE_FUSED_GPU:
        return False
    from recon import cupy_kernels

    return cupy_kernels.available()


def _subset_deviance(
    wave: Any, inten: Any, good: Any, bg: Any, scale: Any, deviance_every: int, j0: int
) -> float:
    """Unnormalised Poisson deviance of the selected frames only (see
    :func:`fourier_project`), without the model of the others."""
    xp = get_xp(wave)
    rows = xp.nonzero((xp.arange(wave.shape[0]) + j0) % deviance_every == 0)[0]
    if int(rows.size) == 0:
        return 0.0
    w = wave[rows]
    a2 = (w.real**2 + w.imag**2).sum(axis=1)
    mod = xp.maximum(scale[rows][:, None, None] * a2 + bg, TINY)
    return poisson_deviance(inten[rows], mod, ~good, normalise=False)


def _modulus_factor(inten: Any, mod: Any, good: Any) -> Any:
    """(M, n, n) float32 ``sqrt(I / M)`` on good pixels, 1 on masked ones."""
    xp = get_xp(inten)
    return xp.where(good, xp.sqrt(inten / mod), 1).astype(np.float32)


def fourier_project(
    wave: Any,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    psi: Any = None,
    ratio: Any = None,
    deviance_every: int = 1,
    j0: int = 0,
    coefs: tuple[float, float, float, float] = (1.0, 1.0, -1.0, 1.0),
) -> float:
    """Modulus projection in Fourier space, in place, and the model's Poisson deviance.

    With ``psi is None`` (alternating projections) ``wave`` becomes ``P_F(wave)``: each
    pixel's modes are scaled by ``sqrt(I / M)`` with ``M = scale * sum_k |wave_k|^2 + bg``;
    masked pixels keep the model amplitude. With ``psi`` given (the projection family of
    :mod:`recon.projection_family`, Fourier form), with ``coefs = (alpha, cx, cw, cf)``::

        psi <- cx psi + cw wave + cf P_F((1 + alpha) wave - alpha psi);   wave <- psi

    (the default is the difference map, ``psi + P_F(2 wave - psi) - wave``).

    Parameters
    ----------
    wave : (M, K, n, n) complex64 model waves in Fourier space (modified in place)
    inten : (M, n, n) float32 measured photons
    good : (n, n) bool, False on masked pixels
    bg : (n, n) float32 incoherent background (photons)
    scale : (M,) float32 per-frame scale
    psi : (M, K, n, n) complex64 difference-map iterate, or None
    ratio : (n, n) float32 accumulator of ``I / M`` (for the background update), or None
    deviance_every, j0 : the deviance is summed over the frames whose index in the whole
        scan, ``j0 + j``, is a multiple of ``deviance_every`` (1: all frames)
    coefs : (alpha, cx, cw, cf) of the family update when ``psi`` is given

    Returns
    -------
    deviance : unnormalised Poisson deviance (:func:`recon.deviance.poisson_deviance`,
        ``normalise=False``) of the model before the projection, over the good pixels of
        the selected frames
    """
    xp = get_xp(wave)
    if numba_enabled(xp):
        flat, inten2, keep, b = _numba_args(wave, inten, good, bg)
        if ratio is not None:
            r = np.zeros((nbk.num_threads(), keep.size), np.float32)
            nbk.add_ratio(flat, inten2, keep, b, scale, r)
            ratio += r.sum(axis=0).reshape(ratio.shape)
        dev = np.zeros(flat.shape[0], np.float64)  # the deviance in the projection's pass
        every = (deviance_every, j0)
        if psi is not None:
            nbk.projection_family(flat, _flat(psi), inten2, keep, b, scale, *coefs, dev, *every)
        else:
            nbk.modulus_project(flat, inten2, keep, b, scale, dev, *every)
        return float(dev.sum())
    if xp is not np and ratio is None and _fused_gpu():
        from recon import cupy_kernels

        dev = _subset_deviance(wave, inten, good, bg, scale, deviance_every, j0)
        if psi is None:
            cupy_kernels.modulus_project(wave, inten, good, bg, scale)
        else:
            cupy_kernels.projection_family(wave, psi, inten, good, bg, scale, coefs)
        return dev
    mod, dev = _model_and_deviance(wave, inten, good, bg, scale, deviance_every, j0)
    if ratio is not None:
        ratio += xp.where(good, inten / mod, 0).sum(axis=0).astype(np.float32)
    if psi is None:
        wave *= _modulus_factor(inten, mod, good)[:, None]
    else:
        alpha, cx, cw, cf = (np.float32(c) for c in coefs)
        z = (1 + alpha) * wave - alpha * psi
        z2 = (z.real**2 + z.imag**2).sum(axis=1)
        mz = xp.maximum(scale[:, None, None] * z2 + bg, TINY)
        z *= cf * _modulus_factor(inten, mz, good)[:, None]
        psi *= cx
        psi += cw * wave + z
        wave[...] = psi
    return dev


def fourier_pass(
    obj: Any,
    probes: Any,
    geom: PatchGeometry,
    out: Any,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    psi: Any = None,
    ratio: Any = None,
    deviance_every: int = 1,
    j0: int = 0,
    coefs: tuple[float, float, float, float] = (1.0, 1.0, -1.0, 1.0),
    model_totals: list | None = None,
) -> float:
    """The Fourier side of one projection iteration: exit waves, FFT, projection, inverse FFT.

    ``out`` ends as the projected real-space waves:
    ``F^-1 P(F(probes[bins[j]] * obj[patch j]))`` with ``P`` the modulus projection, or with
    ``psi`` the projection-family update of :func:`fourier_project` (which also updates
    ``psi``). On NumPy with numba and rocket-fft each frame goes through the four steps in
    cache (:mod:`recon.numba_fourier`); otherwise :func:`exit_waves`, an FFT of the stack,
    :func:`fourier_project` and an inverse FFT, one after the other.

    Parameters
    ----------
    obj, probes, geom : as in :func:`exit_waves`
    out : (M, K, n, n) complex64, C-contiguous, overwritten
    inten, good, bg, scale, psi, ratio, deviance_every, j0, coefs : as in
        :func:`fourier_project`
    model_totals : when given, the (M,) model photon totals ``sum |F(wave)|^2`` of the
        frames before the projection are appended to it (per-frame scale refinement)

    Returns
    -------
    the unnormalised deviance of the selected frames (as :func:`fourier_project`)
    """
    xp = get_xp(out)
    if fourier_in_cache(xp) and ratio is None and model_totals is None:
        flat, inten2, keep, b = _numba_args(out, inten, good, bg)
        dev = np.zeros(out.shape[0], np.float64)
        family = psi is not None
        nbf.fourier_pass(
            obj,
            probes,
            geom.bins,
            geom.corners,
            inten2,
            keep,
            b,
            scale,
            _flat(psi) if family else _NO_PSI,
            family,
            np.asarray(coefs, np.float32),
            out,
            dev,
            deviance_every,
            j0,
        )
        return float(dev.sum())
    exit_waves(obj, probes, geom, out)
    w = fft2c(out, overwrite=True)
    if model_totals is not None:
        model_totals.append((w.real**2 + w.imag**2).sum(axis=(1, 2, 3)))
    deviance = fourier_project(w, inten, good, bg, scale, psi, ratio, deviance_every, j0, coefs)
    w = ifft2c(w, overwrite=True)
    if not xp.may_share_memory(w, out):  # the FFTs work in place where they can (a bounds
        out[...] = w  # check: CuPy's exact shares_memory would compare every element)
    return deviance


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
        nbb.backproject_object(
            wave,
            probes,
            geom.bins,
            geom.corners,
            out,
            nbb.row_bands(out.shape[0]),
            illum if do_illum else _NO_ILLUM,
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
        nbb.illumination(probes, geom.bins, geom.corners, out, nbb.row_bands(out.shape[0]))
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
    if numba_enabled(xp):  # bin by bin: each bin's sums stay in a core's cache
        n_bins, ny = num.shape[0], num.shape[2]
        order, starts = geom.bin_order(n_bins)
        bands = nbb.probe_bands(n_bins, ny)
        nbb.backproject_probe(wave, obj, order, starts, geom.corners, num, den, bands)
        return
    rows, cols = geom.rows_cols()
    patches = obj[rows, cols]
    o2 = patches.real**2 + patches.imag**2
    prod = patches.conj()[:, None] * wave
    for b, members in enumerate(geom.bin_members(num.shape[0])):
        if members.size:
            num[b] += prod[members].sum(axis=0)
            den[b] += o2[members].sum(axis=0)
