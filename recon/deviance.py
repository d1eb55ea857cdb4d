"""Poisson deviance: how far a model of the diffraction patterns is from the counted photons.

For measured photons ``I`` and model intensities ``M`` the Poisson deviance is

    D = 2 sum [M - I + I ln(I / M)]        (the term I ln(I / M) is 0 where I = 0),

twice the log-likelihood ratio of the model to the saturated model ``M = I``. It is 0 for a
perfect fit and, for data with Poisson noise and the right model, about 1 per pixel. This is
the number the engine records per iteration ("llk" in the result file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import get_xp

#: Smallest model intensity (photons): smaller values are raised to it before the logarithm.
MODEL_FLOOR = 1e-12


def poisson_deviance(
    measured: Any, model: Any, mask: Any = None, *, normalise: bool = True
) -> float:
    """Poisson deviance ``2 sum [M - I + I ln(I/M)]`` over the valid pixels.

    NumPy or CuPy (the module of ``measured``). The terms are evaluated in the floating
    precision of the inputs (float32 stays float32, integers become float64) and summed in
    float64. Model values below ``MODEL_FLOOR`` (1e-12 photons) are raised to it.

    Parameters
    ----------
    measured : (..., ny, nx) measured photons ``I`` (any real dtype)
    model : (..., ny, nx) model intensities ``M`` (photons), the shape of ``measured``
    mask : bool array broadcastable to ``measured`` (usually (ny, nx)), True on pixels to
        leave out; None keeps every pixel
    normalise : divide the sum by the number of valid pixels, i.e. the number of elements of
        ``measured`` not masked after broadcasting ``mask`` (frames times unmasked pixels per
        frame); at least 1

    Returns
    -------
    float
        The deviance (normalise=False) or the deviance per valid pixel (normalise=True).
    """
    xp = get_xp(measured, model)
    inten = xp.asarray(measured)
    mod = xp.asarray(model)
    dtype = np.result_type(inten.dtype, mod.dtype, np.float32)
    inten = inten.astype(dtype, copy=False)
    mod = xp.maximum(mod.astype(dtype, copy=False), dtype.type(MODEL_FLOOR))
    pos = inten > 0
    term = xp.where(pos, inten * xp.log(xp.where(pos, inten, 1) / mod), 0) - (inten - mod)
    if mask is None:
        total = xp.sum(term, dtype=np.float64)
        count = term.size
    else:
        keep = xp.broadcast_to(~xp.asarray(mask, dtype=bool), term.shape)
        total = xp.sum(xp.where(keep, term, 0), dtype=np.float64)
        count = int(xp.count_nonzero(keep)) if normalise else 1
    deviance = 2 * float(total)
    return deviance / max(1, count) if normalise else deviance
