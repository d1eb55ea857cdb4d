"""Optical density, dichroism and region spectra of reconstructed objects.

Definitions follow Vijayakumar et al., "Soft X-ray spectro-ptychography" at the HERMES
beamline, *J. Synchrotron Rad.* 30 (2023), doi:10.1107/S1600577523000955 (Sec. 2.4, 3.2,
3.3), and what aXis2000 does with STXM stacks:

* optical density ``OD = -log10(I / I0)``, ``I = |O|^2``, with ``I0`` from a sample-free
  region found automatically (the brightest pixels of the stack) or given as a mask;
* linear dichroism ``XLD = OD(LV) - OD(LH)`` and circular dichroism
  ``XMCD = (OD(CR) - OD(CL)) / (OD(CR) + OD(CL))``;
* spectra of regions (mean OD or phase per energy over a mask) and referenced phases.

Functions take NumPy or CuPy arrays and keep the module of their input (``xp``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import get_xp, to_numpy


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

    The one OD of the project: the stack analysis and single reconstructions both use it.
    Each image is normalised by its own ``I0``, the median ``|O|^2`` over one sample-free
    region common to the stack, so that a stack whose images have different overall
    scales (as reconstructions come out) gives comparable ODs.

    Parameters
    ----------
    objects : (H, W) or (K, H, W) complex transmissions (or real amplitudes ``|O|``)
    i0 : incident intensity, scalar or (K,); default: the median ``|O|^2`` over ``mask``,
        per image
    mask : (H, W) bool sample-free region; default :func:`background_mask` of the stack
        with ``percentile`` and ``trim`` (the brightest 10 % of the pixels)
    percentile, trim : for the automatic mask

    Returns
    -------
    float32 OD of the shape of ``objects`` (computed in float64)
    """
    xp = get_xp(objects)
    intensity = xp.abs(xp.asarray(objects)).astype(xp.float64) ** 2
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
    od = (-xp.log10(xp.maximum(stack, 1e-12) / i0[:, None, None])).astype(xp.float32)
    return od[0] if single else od


def xld(od_lv: Any, od_lh: Any) -> Any:
    """Linear dichroism ``OD(LV) - OD(LH)`` (Vijayakumar et al. 2023, Sec. 3.2).

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
    """Circular dichroism ``(OD(CR) - OD(CL)) / (OD(CR) + OD(CL))``
    (Vijayakumar et al. 2023, Sec. 3.3).

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
    (K, H, W) float phase (rad) of the real precision of ``objects``, zero on average
    over ``mask``
    """
    xp = get_xp(objects)
    obj = xp.asarray(objects)
    m = xp.ones(obj.shape[-2:], dtype=bool) if mask is None else xp.asarray(mask, dtype=bool)
    ref = xp.sum(obj[:, m], axis=1)
    return xp.angle(obj * xp.conj(ref / xp.maximum(xp.abs(ref), 1e-30))[:, None, None])
