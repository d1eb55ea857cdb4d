"""Fits of spectra and stacks: peak energy of a spectrum, component maps of a stack.

A stack is fitted to reference spectra by linear least squares (SVD) or non-negative least
squares (Lawson & Hanson, *Solving Least Squares Problems*, 1974,
doi:10.1137/1.9781611971217), giving one map per component ("stack fit" in aXis2000,
Hitchcock, *J. Electron Spectrosc.* 200, 49 (2015), doi:10.1016/j.elspec.2015.05.013).

Array functions take NumPy or CuPy arrays; the per-pixel NNLS runs on the host and the
results are host arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.backend import get_xp, to_numpy


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
    1974) as aXis2000's stack fit does. NNLS is vectorised: the unconstrained solution is
    kept where it is already non-negative (then it is the NNLS solution), and
    ``scipy.optimize.nnls`` runs only on the other pixels.

    Parameters
    ----------
    stack : (K, H, W) float (OD per energy)
    references : (K, M) or (K,) float reference spectra (OD of unit amount of each
        component)
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
