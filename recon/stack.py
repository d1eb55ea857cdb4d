"""Analysis of spectro-ptychography stacks: alignment, common grid, OD, phase and dichroism.

A stack is a set of reconstructed objects, one per (energy, polarization), on one pixel
grid. :func:`analyze_stack` chains the steps of Vijayakumar et al., "Soft X-ray
spectro-ptychography" at the HERMES beamline, *J. Synchrotron Rad.* 30 (2023),
doi:10.1107/S1600577523000955 (Sec. 2.4, 3.2, 3.3):

* :func:`resample_to_grid` puts objects of different pixel sizes on one grid;
* :func:`align_stack` corrects the drift: sub-pixel registration of every image to a
  reference (:func:`recon.registration.register_translation`) and a Fourier shift
  (:func:`recon.operators.fourier_shift`);
* the aligned stack becomes optical density and phase, and the polarization pairs become
  XLD and XMCD maps (:mod:`recon.spectro`).

Fits of the stack to reference spectra are in :mod:`recon.stack_fit`. Array functions take
NumPy or CuPy arrays and keep the module of their input (``xp``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.backend import get_xp, to_numpy
from recon.operators import fourier_shift
from recon.registration import register_translation
from recon.spectro import background_mask, optical_density, phase_stack, xld, xmcd


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
    upsample, normalize, taper : see :func:`recon.registration.register_translation`

    Returns
    -------
    aligned : (K, H, W) complex for complex ``images``, real for real ones, in the precision
        of ``images`` (complex128 / float64 stay double, anything else is single)
    shifts : (K, 2) float64 (dy, dx) applied to each image (pixels); zero for the reference
    """
    xp = get_xp(images)
    stack = xp.asarray(images)
    if stack.ndim != 3:
        raise ValueError(f"need a (K, H, W) stack, got shape {stack.shape}")
    if not 0 <= reference < stack.shape[0]:
        raise ValueError(f"reference {reference} outside the stack of {stack.shape[0]}")
    reg = to_numpy(xp.abs(stack) if register_on is None else register_on)
    shifts = np.zeros((stack.shape[0], 2))
    for k in range(stack.shape[0]):
        if k != reference:
            dy, dx, _ = register_translation(
                reg[reference], reg[k], upsample=upsample, normalize=normalize, taper=taper
            )
            shifts[k] = dy, dx
    aligned = fourier_shift(stack, xp.asarray(shifts[:, 0]), xp.asarray(shifts[:, 1]))
    return (aligned if xp.iscomplexobj(stack) else aligned.real), shifts


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
    """Pairs of images at one energy with polarizations ``first`` and ``second``.

    Parameters
    ----------
    energies : (K,) float, eV of each image
    pols : K polarization names
    first, second : the two polarizations to pair (e.g. "LV", "LH" for XLD)
    tol : energies within ``tol`` eV count as the same

    Returns
    -------
    list of (energy, index of ``first``, index of ``second``)
    """
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
