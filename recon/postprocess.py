"""Post-processing of reconstructed objects: phase ramp and offset, illuminated crop.

All functions take and return NumPy arrays (host copies of results). The optical density
of an object or a stack is :func:`recon.spectro.optical_density`.
"""

from __future__ import annotations

import numpy as np


def phase_ramp(obj: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float]:
    """Mean phase gradient (rad/pixel along rows, columns) of a complex image.

    The gradient is the phase of the weighted sum of neighbour products
    ``O(r + e) conj(O(r))``, which is insensitive to phase wraps.

    Parameters
    ----------
    obj : (H, W) complex
    weight : (H, W) non-negative weights (e.g. the illuminated area), default all ones
    """
    w = np.ones(obj.shape) if weight is None else np.asarray(weight, dtype=float)
    gy = np.angle(np.sum(w[1:] * w[:-1] * obj[1:] * np.conj(obj[:-1])))
    gx = np.angle(np.sum(w[:, 1:] * w[:, :-1] * obj[:, 1:] * np.conj(obj[:, :-1])))
    return float(gy), float(gx)


def remove_phase_ramp(
    obj: np.ndarray, weight: np.ndarray | None = None, offset: bool = True
) -> np.ndarray:
    """Object with its linear phase ramp (and constant phase offset) removed.

    Parameters
    ----------
    obj : (H, W) complex
    weight : (H, W) weights of the pixels that define the ramp and the offset
    offset : also make the weighted mean phase zero

    Returns
    -------
    (H, W) complex64
    """
    gy, gx = phase_ramp(obj, weight)
    y, x = np.indices(obj.shape)
    out = obj * np.exp(-1j * (gy * y + gx * x))
    if offset:
        w = np.ones(obj.shape) if weight is None else weight
        out = out * np.exp(-1j * np.angle(np.sum(w * out)))
    return out.astype(np.complex64)


def illuminated_mask(illumination: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """(H, W) bool where the summed probe intensity exceeds ``fraction`` of its maximum."""
    illumination = np.asarray(illumination, dtype=float)
    return illumination > fraction * illumination.max()


def illuminated_slices(illumination: np.ndarray, fraction: float = 0.1) -> tuple[slice, slice]:
    """Bounding box (row, column slices) of :func:`illuminated_mask`."""
    mask = illuminated_mask(illumination, fraction)
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return slice(0, mask.shape[0]), slice(0, mask.shape[1])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def crop_illuminated(
    obj: np.ndarray, illumination: np.ndarray, fraction: float = 0.1
) -> np.ndarray:
    """Crop ``obj`` (..., H, W) to the bounding box of the well-lit area."""
    sy, sx = illuminated_slices(illumination, fraction)
    return obj[..., sy, sx]
