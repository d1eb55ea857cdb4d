"""Analysis of spectro-ptychography stacks: registration, optical density, dichroism, spectra.

A stack is a set of reconstructed objects, one per (energy, polarization), on one pixel
grid. The steps follow the seed paper (Sec. 2.4, 3.2, 3.3) and what aXis2000 does with
STXM stacks:

* sub-pixel registration of every image to a reference with the upsampled-DFT
  cross-correlation of Guizar-Sicairos, Thurman & Fienup, *Opt. Lett.* 33, 156 (2008),
  doi:10.1364/OL.33.000156, and drift correction by Fourier shifting (shift theorem);
* optical density ``OD = -log10(I / I0)``, ``I = |O|^2``, with ``I0`` from a sample-free
  region found automatically (the brightest pixels of the stack) or given as a mask;
* linear dichroism ``XLD = OD(LV) - OD(LH)`` and circular dichroism
  ``XMCD = (OD(CR) - OD(CL)) / (OD(CR) + OD(CL))``;
* spectra of regions (mean OD and phase per energy over a mask);
* fits of the stack to reference spectra by linear least squares (SVD) or non-negative
  least squares (Lawson & Hanson, *Solving Least Squares Problems*, 1974,
  doi:10.1137/1.9781611971217), giving one map per component ("stack fit" in aXis2000,
  Hitchcock, *J. Electron Spectrosc.* 200, 49 (2015), doi:10.1016/j.elspec.2015.05.013).

Array functions take NumPy or CuPy arrays and keep the module of their input (``xp``);
the per-pixel NNLS runs on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.backend import get_xp, to_numpy

# ---------------------------------------------------------------------------------------------
# Registration and shifting
# ---------------------------------------------------------------------------------------------


def fourier_shift(image: Any, shift: Any) -> Any:
    """Translate images by sub-pixel amounts with the Fourier shift theorem (periodic).

    ``out(r) = image(r - shift)``: a positive shift moves the content down/right.

    Parameters
    ----------
    image : (H, W) or (K, H, W) real or complex array
    shift : (2,) or (K, 2) float, (dy, dx) in pixels per image

    Returns
    -------
    array of the shape of ``image``; float64 for real input, complex128 for complex input
    """
    xp = get_xp(image)
    img = xp.asarray(image)
    real = not xp.iscomplexobj(img)
    shift = xp.asarray(shift, dtype=xp.float64)
    ny, nx = img.shape[-2:]
    ky = xp.fft.fftfreq(ny)[:, None]
    kx = xp.fft.fftfreq(nx)[None, :]
    if img.ndim == 3:
        dy = shift.reshape(-1, 2)[:, 0][:, None, None]
        dx = shift.reshape(-1, 2)[:, 1][:, None, None]
    else:
        dy, dx = shift.reshape(2)[0], shift.reshape(2)[1]
    ramp = xp.exp(-2j * np.pi * (ky * dy + kx * dx))
    out = xp.fft.ifft2(xp.fft.fft2(img) * ramp)
    return out.real if real else out


def _dft_around(
    product: Any, centre: tuple[float, float], upsample: int, span: int
) -> tuple[Any, Any]:
    """Cross-correlation on a ``1/upsample`` grid of ``2 span + 1`` points around ``centre``.

    A matrix-multiply DFT of the cross-power spectrum evaluated only where needed
    (Guizar-Sicairos et al. 2008, doi:10.1364/OL.33.000156): ``O(span^2 (H + W))``
    instead of an FFT of an ``upsample``-times larger array.

    Returns
    -------
    (2 span + 1, 2 span + 1) complex correlation and the (2 span + 1,) offsets (pixels)
    """
    xp = get_xp(product)
    ny, nx = product.shape
    offs = xp.arange(-span, span + 1, dtype=xp.float64) / upsample
    ky = xp.fft.fftfreq(ny)
    kx = xp.fft.fftfreq(nx)
    ey = xp.exp(2j * np.pi * xp.outer(centre[0] + offs, ky))
    ex = xp.exp(2j * np.pi * xp.outer(kx, centre[1] + offs))
    return ey @ product @ ex, offs


def _taper(shape: tuple[int, int], fraction: float, xp: Any) -> Any:
    """(H, W) separable cosine edge taper going to zero over ``fraction`` of each side."""

    def one(n: int) -> Any:
        w = xp.ones(n)
        m = max(int(fraction * n), 1)
        ramp = 0.5 * (1 - xp.cos(np.pi * (xp.arange(m) + 0.5) / m))
        w[:m] = ramp
        w[n - m :] = ramp[::-1]
        return w

    return one(shape[0])[:, None] * one(shape[1])[None, :]


def register_translation(
    reference: Any,
    moving: Any,
    *,
    upsample: int = 50,
    normalize: bool = False,
    taper: float = 0.0,
    mask: Any = None,
) -> tuple[float, float, float]:
    """Sub-pixel shift that brings ``moving`` onto ``reference``.

    The integer peak of the FFT cross-correlation is refined to ``1/upsample`` pixel by
    evaluating the correlation with a matrix DFT on a ``+-1.5`` pixel neighbourhood
    (Guizar-Sicairos, Thurman & Fienup, *Opt. Lett.* 33, 156 (2008),
    doi:10.1364/OL.33.000156).

    Parameters
    ----------
    reference, moving : (H, W) real or complex images of one shape
    upsample : refinement factor (1: integer pixels)
    normalize : phase correlation (whiten the cross-power spectrum), robust to contrast
        changes between energies at the price of more noise
    taper : subtract the mean and taper this fraction of each edge with a cosine (0: off),
        for images that are not periodic
    mask : optional (H, W) weights applied to both images before the correlation

    Returns
    -------
    dy, dx : shift (pixels) such that ``fourier_shift(moving, (dy, dx)) ~ reference``
    error : ``1 - |peak|^2 / (sum|a|^2 sum|b|^2)``, 0 for a perfect match
    """
    xp = get_xp(reference, moving)
    a = xp.asarray(reference)
    b = xp.asarray(moving)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two 2-D images of one shape, got {a.shape} and {b.shape}")
    if upsample < 1:
        raise ValueError("upsample must be >= 1")
    if taper > 0:
        w = _taper(a.shape, taper, xp)
        a = (a - a.mean()) * w
        b = (b - b.mean()) * w
    if mask is not None:
        m = xp.asarray(mask, dtype=xp.float64)
        a = a * m
        b = b * m
    fa = xp.fft.fft2(a)
    fb = xp.fft.fft2(b)
    product = fa * xp.conj(fb)
    if normalize:
        product = product / xp.maximum(xp.abs(product), 1e-30)
    cc = xp.fft.ifft2(product)
    ny, nx = a.shape
    iy, ix = (int(v) for v in np.unravel_index(int(xp.argmax(xp.abs(cc))), cc.shape))
    dy = float(iy - ny if iy > ny // 2 else iy)
    dx = float(ix - nx if ix > nx // 2 else ix)
    peak = complex(cc[iy, ix]) * ny * nx
    if upsample > 1:
        span = int(np.ceil(1.5 * upsample))
        local, offs = _dft_around(product, (dy, dx), upsample, span)
        jy, jx = (int(v) for v in np.unravel_index(int(xp.argmax(xp.abs(local))), local.shape))
        peak = complex(local[jy, jx])
        dy += float(offs[jy])
        dx += float(offs[jx])
    if normalize:
        error = 1.0 - min(abs(peak) / (ny * nx), 1.0) ** 2
    else:
        ea = float(xp.sum(xp.abs(fa) ** 2))
        eb = float(xp.sum(xp.abs(fb) ** 2))
        error = 1.0 - min(abs(peak) ** 2 / max(ea * eb, 1e-300), 1.0)
    return dy, dx, float(error)


def align_stack(
    images: Any,
    *,
    reference: int = 0,
    register_on: Any = None,
    upsample: int = 50,
    normalize: bool = False,
    taper: float = 0.1,
) -> tuple[Any, np.ndarray]:
    """Register every image of a stack to one of them and shift it there (drift correction).

    Parameters
    ----------
    images : (K, H, W) real or complex stack; complex objects are shifted as complex
        fields, so amplitude and phase move together without phase-wrap artefacts
    reference : index of the reference image
    register_on : (K, H, W) real images to register (default: ``|images|``; pass the OD
        or the phase when they show the structure better)
    upsample, normalize, taper : see :func:`register_translation`

    Returns
    -------
    aligned : (K, H, W) stack of the dtype kind of ``images`` (float64 or complex128)
    shifts : (K, 2) float64 (dy, dx) applied to each image (pixels); zero for the reference
    """
    xp = get_xp(images)
    stack = xp.asarray(images)
    if stack.ndim != 3:
        raise ValueError(f"need a (K, H, W) stack, got shape {stack.shape}")
    if not 0 <= reference < stack.shape[0]:
        raise ValueError(f"reference {reference} outside the stack of {stack.shape[0]}")
    reg = xp.abs(stack) if register_on is None else xp.asarray(register_on)
    shifts = np.zeros((stack.shape[0], 2))
    for k in range(stack.shape[0]):
        if k == reference:
            continue
        dy, dx, _ = register_translation(
            reg[reference], reg[k], upsample=upsample, normalize=normalize, taper=taper
        )
        shifts[k] = dy, dx
    aligned = fourier_shift(stack, xp.asarray(shifts))
    return aligned, shifts


def resample_to_grid(
    images: Sequence[Any],
    pixel_sizes_m: Sequence[float],
    pixel_m: float | None = None,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Put images of different pixel sizes (the object pixel scales with the wavelength)
    on one centred grid by bilinear interpolation (host).

    Parameters
    ----------
    images : K arrays (H_k, W_k), real or complex
    pixel_sizes_m : K pixel sizes (m)
    pixel_m : target pixel size (default: the largest, so nothing is extrapolated)
    shape : target (H, W) (default: the largest field of view all images cover)

    Returns
    -------
    (K, H, W) complex128 or float64 stack
    """
    from scipy.ndimage import map_coordinates

    arrays = [to_numpy(a) for a in images]
    sizes = np.asarray(pixel_sizes_m, dtype=np.float64)
    if len(arrays) != len(sizes) or not len(arrays):
        raise ValueError("need one pixel size per image and at least one image")
    target = float(sizes.max() if pixel_m is None else pixel_m)
    if shape is None:
        fy = min(a.shape[0] * s for a, s in zip(arrays, sizes, strict=True))
        fx = min(a.shape[1] * s for a, s in zip(arrays, sizes, strict=True))
        shape = (int(fy // target), int(fx // target))
    complex_ = any(np.iscomplexobj(a) for a in arrays)
    out = np.empty((len(arrays), *shape), dtype=np.complex128 if complex_ else np.float64)
    yy, xx = np.indices(shape, dtype=np.float64)
    for k, (a, s) in enumerate(zip(arrays, sizes, strict=True)):
        if a.shape == tuple(shape) and abs(s - target) <= 1e-9 * target:
            out[k] = a
            continue
        cy = (yy - (shape[0] - 1) / 2) * target / s + (a.shape[0] - 1) / 2
        cx = (xx - (shape[1] - 1) / 2) * target / s + (a.shape[1] - 1) / 2
        coords = np.stack([cy, cx])
        if complex_:
            re = map_coordinates(a.real.astype(np.float64), coords, order=1, mode="nearest")
            im = map_coordinates(np.imag(a).astype(np.float64), coords, order=1, mode="nearest")
            out[k] = re + 1j * im
        else:
            out[k] = map_coordinates(a.astype(np.float64), coords, order=1, mode="nearest")
    return out


# ---------------------------------------------------------------------------------------------
# Optical density and dichroism
# ---------------------------------------------------------------------------------------------


def background_mask(amplitude: Any, percentile: float = 90.0, trim: float = 0.0) -> Any:
    """Sample-free (I0) region: the most transparent pixels of an image or a stack.

    Parameters
    ----------
    amplitude : (H, W) or (K, H, W) float amplitudes ``|O|``; a stack is reduced to the
        per-pixel minimum over the stack, so a pixel counts as free only when it is bright
        at every energy and polarization
    percentile : pixels at or above this percentile are taken
    trim : fraction of each edge excluded (reconstructions are poorly lit at the edge)

    Returns
    -------
    (H, W) bool
    """
    xp = get_xp(amplitude)
    a = xp.abs(xp.asarray(amplitude))
    if a.ndim == 3:
        a = a.min(axis=0)
    valid = xp.ones(a.shape, dtype=bool)
    if trim > 0:
        ty, tx = int(trim * a.shape[0]), int(trim * a.shape[1])
        valid[:ty] = False
        valid[a.shape[0] - ty :] = False
        valid[:, :tx] = False
        valid[:, a.shape[1] - tx :] = False
    level = float(xp.percentile(a[valid], percentile))
    return valid & (a >= level)


def optical_density(
    objects: Any,
    *,
    i0: Any = None,
    mask: Any = None,
    percentile: float = 90.0,
    trim: float = 0.0,
) -> Any:
    """Optical density ``OD = -log10(|O|^2 / I0)`` of one object or a stack.

    Parameters
    ----------
    objects : (H, W) or (K, H, W) complex transmissions (or real amplitudes ``|O|``)
    i0 : incident intensity, scalar or (K,); default: the median ``|O|^2`` over ``mask``
        per image
    mask : (H, W) bool sample-free region; default :func:`background_mask` of the stack
    percentile, trim : for the automatic mask

    Returns
    -------
    OD of the shape of ``objects``, float64
    """
    xp = get_xp(objects)
    obj = xp.asarray(objects)
    intensity = xp.abs(obj).astype(xp.float64) ** 2
    single = intensity.ndim == 2
    stack = intensity[None] if single else intensity
    if i0 is None:
        if mask is None:
            mask = background_mask(xp.sqrt(stack), percentile, trim)
        mask = xp.asarray(mask, dtype=bool)
        if not bool(mask.any()):
            raise ValueError("the I0 region is empty")
        i0 = xp.median(stack[:, mask], axis=1)
    i0 = xp.asarray(i0, dtype=xp.float64).reshape(-1)
    if i0.size == 1:
        i0 = xp.repeat(i0, stack.shape[0])
    if i0.size != stack.shape[0] or not bool(xp.all(i0 > 0)):
        raise ValueError("I0 must be > 0, one value per image")
    od = -xp.log10(xp.maximum(stack, 1e-12) / i0[:, None, None])
    return od[0] if single else od


def xld(od_lv: Any, od_lh: Any) -> Any:
    """Linear dichroism ``OD(LV) - OD(LH)`` (seed paper Sec. 3.2).

    Parameters
    ----------
    od_lv, od_lh : (..., H, W) float optical densities at vertical and horizontal polarization

    Returns
    -------
    (..., H, W) float64; positive where pi* absorbs more for vertical polarization
    """
    xp = get_xp(od_lv, od_lh)
    return xp.asarray(od_lv, dtype=xp.float64) - xp.asarray(od_lh, dtype=xp.float64)


def xmcd(od_cr: Any, od_cl: Any, *, floor: float | None = None) -> Any:
    """Circular dichroism ``(OD(CR) - OD(CL)) / (OD(CR) + OD(CL))`` (seed paper Sec. 3.3).

    Parameters
    ----------
    od_cr, od_cl : (..., H, W) float optical densities at right and left circular polarization
    floor : denominators below this are treated as no sample and give 0; default 5 % of
        the 99th percentile of ``|OD(CR) + OD(CL)|``

    Returns
    -------
    (..., H, W) float64 in about [-1, 1]
    """
    xp = get_xp(od_cr, od_cl)
    a = xp.asarray(od_cr, dtype=xp.float64)
    b = xp.asarray(od_cl, dtype=xp.float64)
    den = a + b
    if floor is None:
        floor = 0.05 * float(xp.percentile(xp.abs(den), 99.0))
    floor = max(float(floor), 1e-12)
    ok = xp.abs(den) > floor
    return xp.where(ok, (a - b) / xp.where(ok, den, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------
# Spectra and fits
# ---------------------------------------------------------------------------------------------


def region_spectrum(stack: Any, mask: Any) -> np.ndarray:
    """Mean of each image of a stack over a region.

    Parameters
    ----------
    stack : (K, H, W) float (OD, phase, ...)
    mask : (H, W) bool region

    Returns
    -------
    (K,) float64 host array
    """
    xp = get_xp(stack)
    s = xp.asarray(stack)
    m = xp.asarray(mask, dtype=bool)
    if m.shape != s.shape[-2:]:
        raise ValueError(f"mask shape {m.shape} does not match images {s.shape[-2:]}")
    if not bool(m.any()):
        raise ValueError("the region is empty")
    return to_numpy(s[:, m].mean(axis=1)).astype(np.float64)


def phase_stack(objects: Any, mask: Any = None) -> Any:
    """Phases of a stack of objects, each referenced to its mean over ``mask``.

    Parameters
    ----------
    objects : (K, H, W) complex
    mask : (H, W) bool reference region (sample-free), default all pixels

    Returns
    -------
    (K, H, W) float64 phase (rad), zero on average over ``mask``
    """
    xp = get_xp(objects)
    obj = xp.asarray(objects)
    m = xp.ones(obj.shape[-2:], dtype=bool) if mask is None else xp.asarray(mask, dtype=bool)
    ref = xp.sum(obj[:, m], axis=1)
    return xp.angle(obj * xp.conj(ref / xp.maximum(xp.abs(ref), 1e-30))[:, None, None])


def peak_energy(energies: Any, spectrum: Any) -> float:
    """Energy of the maximum of a sampled spectrum, refined by a parabola through the
    highest sample and its neighbours (on a possibly uneven grid).

    Parameters
    ----------
    energies : (K,) increasing float (eV)
    spectrum : (K,) float

    Returns
    -------
    float (eV)
    """
    e = np.asarray(to_numpy(energies), dtype=np.float64)
    s = np.asarray(to_numpy(spectrum), dtype=np.float64)
    i = int(np.argmax(s))
    if i == 0 or i == len(s) - 1:
        return float(e[i])
    coef = np.polyfit(e[i - 1 : i + 2] - e[i], s[i - 1 : i + 2], 2)
    if coef[0] >= 0:
        return float(e[i])
    return float(e[i] - coef[1] / (2 * coef[0]))


@dataclass
class StackFit:
    """Component maps of a stack fitted to reference spectra.

    Attributes
    ----------
    maps : (M, H, W) float64 coefficient of each reference spectrum
    residual : (H, W) float64 root-mean-square residual per pixel
    method : ``"svd"`` or ``"nnls"``
    """

    maps: np.ndarray
    residual: np.ndarray
    method: str


def fit_stack(
    stack: Any, references: Any, *, method: str = "svd", rcond: float = 1e-10
) -> StackFit:
    """Fit every pixel spectrum of a stack to a linear combination of reference spectra.

    ``stack[:, y, x] ~ references @ maps[:, y, x]``, solved by linear least squares with the
    SVD pseudo-inverse of the references, or by non-negative least squares (Lawson & Hanson
    1974, doi:10.1137/1.9781611971217) as aXis2000's stack fit does. NNLS is vectorised: the
    unconstrained solution is kept where it is already non-negative (then it is the NNLS
    solution), and ``scipy.optimize.nnls`` runs only on the other pixels.

    Parameters
    ----------
    stack : (K, H, W) float (OD per energy)
    references : (K, M) float reference spectra (OD of unit amount of each component)
    method : ``"svd"`` or ``"nnls"``
    rcond : relative cut of small singular values

    Returns
    -------
    StackFit with (M, H, W) maps on the host
    """
    if method not in ("svd", "nnls"):
        raise ValueError(f"unknown method {method!r}: use svd or nnls")
    xp = get_xp(stack)
    d = xp.asarray(stack, dtype=xp.float64)
    ref = xp.asarray(references, dtype=xp.float64)
    if ref.ndim == 1:
        ref = ref[:, None]
    k, h, w = d.shape
    if ref.shape[0] != k:
        raise ValueError(f"references have {ref.shape[0]} energies, the stack {k}")
    flat = d.reshape(k, -1)
    u, s, vt = xp.linalg.svd(ref, full_matrices=False)
    keep = s > rcond * s.max()
    inv = (vt[keep].T / s[keep]) @ u[:, keep].T  # (M, K) pseudo-inverse
    coef = inv @ flat
    coef_h = to_numpy(coef)
    if method == "nnls":
        from scipy.optimize import nnls

        ref_h = to_numpy(ref)
        flat_h = to_numpy(flat)
        bad = np.nonzero((coef_h < 0).any(axis=0))[0]
        for j in bad:
            coef_h[:, j] = nnls(ref_h, flat_h[:, j])[0]
        coef = xp.asarray(coef_h)
    resid = flat - ref @ coef
    rms = to_numpy(xp.sqrt(xp.mean(resid**2, axis=0)))
    return StackFit(coef_h.reshape(-1, h, w), rms.reshape(h, w), method)


# ---------------------------------------------------------------------------------------------
# The whole analysis
# ---------------------------------------------------------------------------------------------


@dataclass
class StackAnalysis:
    """Aligned OD stack and dichroism maps of one run.

    Attributes
    ----------
    energies : (K,) float64 energy of each image (eV)
    polarizations : K polarization names
    shifts : (K, 2) float64 drift correction applied (dy, dx pixels)
    od : (K, H, W) float32 aligned optical density
    phase : (K, H, W) float32 aligned phase (rad, zero on the I0 region)
    i0_mask : (H, W) bool the sample-free region used for I0
    xld : (P, H, W) float32 ``OD(LV) - OD(LH)`` at each energy with both
    xld_energies : (P,) float64
    xmcd : (Q, H, W) float32 ``(OD(CR) - OD(CL)) / (OD(CR) + OD(CL))``
    xmcd_energies : (Q,) float64
    """

    energies: np.ndarray
    polarizations: list[str]
    shifts: np.ndarray
    od: np.ndarray
    phase: np.ndarray
    i0_mask: np.ndarray
    xld: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    xld_energies: np.ndarray = field(default_factory=lambda: np.zeros(0))
    xmcd: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    xmcd_energies: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _pairs(
    energies: np.ndarray, pols: list[str], first: str, second: str, tol: float
) -> list[tuple[float, int, int]]:
    out = []
    for i, (e, p) in enumerate(zip(energies, pols, strict=True)):
        if p != first:
            continue
        for j, (e2, p2) in enumerate(zip(energies, pols, strict=True)):
            if p2 == second and abs(e2 - e) <= tol:
                out.append((float(e), i, j))
                break
    return out


def analyze_stack(
    objects: Any,
    energies: Sequence[float],
    polarizations: Sequence[str],
    *,
    reference: int | None = None,
    i0_mask: Any = None,
    percentile: float = 90.0,
    trim: float = 0.05,
    upsample: int = 50,
    energy_tol_ev: float = 1e-3,
) -> StackAnalysis:
    """Align a stack, convert it to OD and phase, and form XLD and XMCD maps.

    Parameters
    ----------
    objects : (K, H, W) complex objects on one pixel grid (see :func:`resample_to_grid`)
    energies : K energies (eV)
    polarizations : K names (``LH``, ``LV``, ``CL``, ``CR``)
    reference : image the others are aligned to (default: the middle one)
    i0_mask : (H, W) bool sample-free region in the aligned frame (default: automatic)
    percentile, trim : for the automatic I0 region (:func:`background_mask`)
    upsample : registration refinement factor
    energy_tol_ev : energies closer than this pair up for dichroism

    Returns
    -------
    StackAnalysis (host arrays)
    """
    xp = get_xp(objects)
    obj = xp.asarray(objects)
    if obj.ndim != 3:
        raise ValueError(f"need a (K, H, W) stack, got shape {obj.shape}")
    e = np.asarray(energies, dtype=np.float64)
    pols = [str(p).upper() for p in polarizations]
    if len(e) != obj.shape[0] or len(pols) != obj.shape[0]:
        raise ValueError("need one energy and one polarization per image")
    ref = obj.shape[0] // 2 if reference is None else int(reference)
    aligned, shifts = align_stack(obj, reference=ref, upsample=upsample)
    mask = (
        background_mask(xp.abs(aligned), percentile, trim)
        if i0_mask is None
        else xp.asarray(i0_mask, dtype=bool)
    )
    od = optical_density(aligned, mask=mask)
    phase = phase_stack(aligned, mask)
    out = StackAnalysis(
        energies=e,
        polarizations=pols,
        shifts=shifts,
        od=to_numpy(od).astype(np.float32),
        phase=to_numpy(phase).astype(np.float32),
        i0_mask=to_numpy(mask).astype(bool),
    )
    lin = _pairs(e, pols, "LV", "LH", energy_tol_ev)
    if lin:
        out.xld = np.stack([to_numpy(xld(od[i], od[j])) for _, i, j in lin]).astype(np.float32)
        out.xld_energies = np.array([p[0] for p in lin])
    circ = _pairs(e, pols, "CR", "CL", energy_tol_ev)
    if circ:
        out.xmcd = np.stack([to_numpy(xmcd(od[i], od[j])) for _, i, j in circ]).astype(np.float32)
        out.xmcd_energies = np.array([p[0] for p in circ])
    return out
