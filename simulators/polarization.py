"""Polarisation of the beam and the dichroism weights it gives.

The beam travels along +z, x is horizontal (object columns), y vertical (rows). LH is E along
x, LV along y, CR is helicity +1 with ``e = (x + i y)/sqrt(2)``, CL helicity -1. Linear
dichroism weights a pi* orbital along ``n`` by ``|e.n|^2`` (Stohr, *NEXAFS Spectroscopy*,
doi:10.1007/978-3-662-02853-7, ch. 9); XMCD by ``helicity * (M.k)``.
"""

from __future__ import annotations

import math

import numpy as np

POLARIZATIONS = ("LH", "LV", "CL", "CR")


def _check_pol(pol: str) -> str:
    p = pol.upper()
    if p not in POLARIZATIONS:
        raise ValueError(f"unknown polarization {pol!r}: use one of {', '.join(POLARIZATIONS)}")
    return p


def polarization_vector(pol: str) -> np.ndarray:
    """Unit (Jones) electric-field vector of a polarisation, beam along +z.

    Returns
    -------
    (3,) complex128: LH ``(1, 0, 0)``, LV ``(0, 1, 0)``, CR ``(1, i, 0)/sqrt(2)`` (helicity +1),
    CL ``(1, -i, 0)/sqrt(2)`` (helicity -1)
    """
    p = _check_pol(pol)
    s = 1 / math.sqrt(2)
    vec = {
        "LH": (1.0, 0.0, 0.0),
        "LV": (0.0, 1.0, 0.0),
        "CR": (s, 1j * s, 0.0),
        "CL": (s, -1j * s, 0.0),
    }[p]
    return np.array(vec, dtype=np.complex128)


def helicity(pol: str) -> int:
    """Photon helicity: +1 for CR, -1 for CL, 0 for linear polarisation."""
    return {"LH": 0, "LV": 0, "CR": 1, "CL": -1}[_check_pol(pol)]


def linear_dichroism_weight(pol: str, n: np.ndarray) -> np.ndarray:
    """``|e . n|^2`` for orbital directions ``n``.

    Parameters
    ----------
    pol : polarisation
    n : (..., 3) float unit vectors (orbital directions)

    Returns
    -------
    (...) float64; for circular light ``(n_x^2 + n_y^2) / 2``
    """
    e = polarization_vector(pol)
    return np.abs(np.asarray(n, dtype=np.float64) @ e.conj()) ** 2


def tensor_weight(pol: str, qxx: np.ndarray, qyy: np.ndarray, qxy: np.ndarray) -> np.ndarray:
    """``e^* . Q . e`` for an in-plane orientation tensor ``Q`` (same shape float64 arrays).

    ``Q = sum t n n^T`` (projected over the path) gives the ``|e.n|^2``-weighted thickness.
    """
    e = polarization_vector(pol)
    ex, ey = e[0], e[1]
    return np.abs(ex) ** 2 * qxx + np.abs(ey) ** 2 * qyy + 2 * np.real(np.conj(ex) * ey) * qxy


def xmcd_weight(pol: str, m: np.ndarray) -> np.ndarray:
    """``helicity * (M . k)`` with ``k = z`` for magnetisation vectors ``m`` ((..., 3))."""
    return helicity(pol) * np.asarray(m, dtype=np.float64)[..., 2]
