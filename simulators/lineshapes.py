"""Near-edge line shapes in ``beta`` and their Kramers-Kronig partners in ``delta``.

The partner is that of the odd extension ``beta(-E) = -beta(E)``:
``delta(E) = (2/pi) P int E' beta(E') / (E^2 - E'^2) dE'`` (Kramers 1927, Kronig 1926;
Lucarini et al., *Kramers-Kronig Relations in Optical Materials Research*, Springer 2005,
doi:10.1007/b138913). A Lorentzian's partner is the dispersive Lorentzian, a Gaussian's a
Dawson function; any other ``beta`` on a uniform grid is transformed numerically
(:func:`hilbert_kk`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import scipy.signal
import scipy.special

from recon.geometry import wavelength_m

#: Classical electron radius (m), CODATA 2018.
R_ELECTRON_M = 2.8179403262e-15
#: Gaussian sigma / FWHM.
GAUSS_SIGMA = 1 / (2 * math.sqrt(2 * math.log(2)))

Shape = Literal["lorentz", "gauss"]


def f2_to_beta(energy_ev: np.ndarray) -> np.ndarray:
    """``r_e lambda^2 / (2 pi)`` (m^3): beta per (atom / m^3) per electron of ``f2``."""
    lam = wavelength_m(1.0) / energy_ev
    return R_ELECTRON_M * lam**2 / (2 * np.pi)


def _lorentz(x: np.ndarray, xm: np.ndarray, fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    # beta = g^2 / (x^2 + g^2); its partner g [x / (x^2 + g^2) - xm / (xm^2 + g^2)].
    g = 0.5 * fwhm
    return g * (x / (x**2 + g**2) - xm / (xm**2 + g**2)), g**2 / (x**2 + g**2)


def _gauss(x: np.ndarray, xm: np.ndarray, fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    # The Hilbert transform of exp(-u^2) is (2 / sqrt(pi)) D(u), D Dawson's integral.
    s = fwhm * GAUSS_SIGMA * math.sqrt(2)
    k = 2 / math.sqrt(math.pi)
    return k * (scipy.special.dawsn(x / s) - scipy.special.dawsn(xm / s)), np.exp(-((x / s) ** 2))


def line_pair(
    energy_ev: np.ndarray, e0: float, fwhm: float, amplitude: float, shape: Shape = "lorentz"
) -> tuple[np.ndarray, np.ndarray]:
    """A resonance of peak ``amplitude`` at ``e0`` in ``beta`` and its exact KK partner.

    ``shape`` ``"lorentz"``: ``beta = a g^2 / (x^2 + g^2)``, ``g = fwhm/2``, ``x = E - e0``,
    partner ``a g [x / (x^2 + g^2) - (E + e0) / ((E + e0)^2 + g^2)]``; ``"gauss"``:
    ``beta = a exp(-u^2)``, partner ``a (2 / sqrt(pi)) [D(u) - D(u_m)]`` with ``D`` Dawson's
    integral and ``u_m`` the mirror coordinate of ``-e0`` (odd extension).

    Parameters
    ----------
    energy_ev : (n,) float64 photon energies (eV)
    e0, fwhm : peak energy and full width at half maximum (eV)
    amplitude : peak height of ``beta``
    shape : ``"lorentz"`` or ``"gauss"``

    Returns
    -------
    delta, beta : arrays shaped like ``energy_ev`` (float64)
    """
    kernel = {"lorentz": _lorentz, "gauss": _gauss}[shape]
    delta, beta = kernel(energy_ev - e0, energy_ev + e0, fwhm)
    return amplitude * delta, amplitude * beta


def line_area(shape: Shape, fwhm: float, amplitude: float) -> float:
    """Integral over energy of a line of ``line_pair`` (eV times ``amplitude``)."""
    if shape == "lorentz":
        return amplitude * math.pi * fwhm / 2
    return amplitude * fwhm * GAUSS_SIGMA * math.sqrt(2 * math.pi)


def hilbert_kk(energy_ev: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Kramers-Kronig partner ``delta`` of ``beta`` sampled on a uniform grid.

    A discrete Hilbert transform by Maclaurin's formula (odd-neighbour sum,
    ``H_i = (2/pi) sum_{i-j odd} f_j / (i - j)``), done as an FFT convolution, plus the mirror
    term of the odd extension (``-(1/pi) int beta(E') / (E + E') dE'``). ``beta`` must fall to
    ~0 at both ends of the grid.

    Parameters
    ----------
    energy_ev : (n,) float64, uniform grid (eV)
    beta : (n,) float64

    Returns
    -------
    delta : (n,) float64
    """
    n = energy_ev.size
    h = float(energy_ev[1] - energy_ev[0])
    m = np.arange(-(n - 1), n)
    kern = np.zeros(m.size)
    odd = (m % 2) != 0
    kern[odd] = 2.0 / (np.pi * m[odd])
    main = scipy.signal.fftconvolve(beta, kern, mode="full")[n - 1 : 2 * n - 1]
    # Mirror term: smooth kernel, a coarse quadrature is exact enough.
    stride = max(1, int(round(2.0 / h)))
    ec = energy_ev[::stride]
    bc = np.add.reduceat(beta, np.arange(0, n, stride)) * h
    mirror = -(bc[None, :] / (energy_ev[:, None] + ec[None, :])).sum(axis=1) / np.pi
    return main + mirror
