"""Sub-pixel image registration (translation only) and the cosine edge taper it uses.

One function, :func:`register_translation`, serves every caller (drift correction of
stacks, comparison of a reconstruction with a ground truth). It is built on
:func:`skimage.registration.phase_cross_correlation`: the integer peak of the FFT
cross-correlation refined to ``1/upsample`` pixel with a matrix-multiply DFT around it
(Guizar-Sicairos, Thurman & Fienup, *Opt. Lett.* 33, 156 (2008), doi:10.1364/OL.33.000156),
or, where a mask of valid pixels is given, the masked normalised cross-correlation of
Padfield (*IEEE Trans. Image Process.* 21, 2706 (2012), doi:10.1109/TIP.2011.2181402).

Registration is cheap (two images at a time), so it runs on the host: CuPy inputs are
copied with :func:`recon.backend.to_numpy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.registration import phase_cross_correlation

from recon.backend import to_numpy


def edge_taper(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """Separable cosine window that rises from 0 to 1 over ``fraction`` of each edge.

    Parameters
    ----------
    shape : (H, W)
    fraction : part of each side that is tapered (at least one pixel)

    Returns
    -------
    (H, W) float64 window, 1 in the interior
    """

    def one(n: int) -> np.ndarray:
        m = max(int(fraction * n), 1)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        w = np.ones(n)
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
    """Shift (dy, dx) that brings ``moving`` onto ``reference``.

    Sign convention: ``recon.operators.fourier_shift(moving, dy, dx) ~ reference``
    (``out(r) = moving(r - d)``), the convention of ``scipy.ndimage.shift``.

    Parameters
    ----------
    reference, moving : (H, W) real or complex images of one shape (NumPy or CuPy)
    upsample : sub-pixel refinement factor, precision ``1/upsample`` pixel (1: whole pixels)
    normalize : phase correlation (whitened cross-power spectrum), robust to contrast
        changes between energies at the price of more noise
    taper : subtract the mean and apply :func:`edge_taper` with this fraction (0: off), for
        images that are not periodic
    mask : optional (H, W) bool, True on the pixels to compare in both images. Pixels
        outside it are ignored (masked normalised cross-correlation); the shift is then
        found to whole pixels only, ``upsample`` is not used and the images must be real

    Returns
    -------
    dy, dx : float shift in pixels
    error : normalised RMS error of the match (0 for a perfect one) for plain correlation;
        not a quality measure with ``normalize=True`` (about 0.9-1 even for good matches);
        NaN with a mask
    """
    a = to_numpy(reference)
    b = to_numpy(moving)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two 2-D images of one shape, got {a.shape} and {b.shape}")
    if upsample < 1:
        raise ValueError("upsample must be >= 1")
    if taper > 0:
        w = edge_taper(a.shape, taper)
        a = (a - a.mean()) * w
        b = (b - b.mean()) * w
    if mask is not None:
        m = to_numpy(mask).astype(bool)
        if m.shape != a.shape:
            raise ValueError(f"mask shape {m.shape} does not match the images {a.shape}")
        if np.iscomplexobj(a) or np.iscomplexobj(b):
            raise ValueError("masked registration needs real images")
        shift, error, _ = phase_cross_correlation(a, b, reference_mask=m, moving_mask=m)
    else:
        shift, error, _ = phase_cross_correlation(
            a,
            b,
            upsample_factor=upsample,
            normalization="phase" if normalize else None,
        )
    return float(shift[0]), float(shift[1]), float(error)
