"""Optical constants of the simulated samples: ``n = 1 - delta + i beta`` from 180 to 730 eV.

Off resonance the constants are those of the Chantler tables as served by ``xraydb``
(Chantler, J. Phys. Chem. Ref. Data 24, 71 (1995), doi:10.1063/1.555974; Henke, Gullikson &
Davis, At. Data Nucl. Data Tables 54, 181 (1993), doi:10.1006/adnd.1993.1013). Near the B 1s,
C 1s, N 1s and Fe 2p edges the tabulated (atomic, sharp) edge of the resonant element is
replaced by a NEXAFS model (Stohr, *NEXAFS Spectroscopy*, Springer 1992,
doi:10.1007/978-3-662-02853-7), whose numbers are in ``simulators/data/materials.json``
(:mod:`simulators.materials`):

* an arctan edge step at the ionisation potential whose height is the tabulated jump
  (:mod:`simulators.edge_model`),
* Lorentzian pi* resonances and white lines, Gaussian sigma* resonances, in ``beta``,
* and in ``delta`` the Kramers-Kronig partner of everything added
  (:mod:`simulators.lineshapes`).

Dichroism enters through weights. ``pi_weight`` and ``sigma_weight`` scale the pi*/sigma*
resonances (1 = isotropic, i.e. orientation-averaged); a sample multiplies them by
``3 |e.n|^2`` (pi*, vector-type orbital along ``n``) and ``3/2 (1 - |e.n|^2)`` (sigma*,
plane-type orbitals normal to ``n``), Stohr ch. 9. ``xmcd`` in [-1, 1] is
``helicity * (M.k)/|M|`` and scales the circular dichroism of the Fe L3/L2 white lines:
``beta_pm = beta_0 (1 + xmcd A(E))`` with ``A = +0.30`` at the L3 peak and the opposite sign at
L2 (Chen et al., Phys. Rev. Lett. 75, 152 (1995), doi:10.1103/PhysRevLett.75.152).

Sign conventions: ``delta > 0`` retards the phase, the sample transmission is
``exp(-i k delta t) exp(-k beta t)``; below an absorption peak ``delta`` dips, above it rises.
Polarisations are those of :mod:`simulators.polarization` (re-exported here).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
import xraydb

from simulators.edge_model import depletion, edge_jump_f2, edge_terms
from simulators.lineshapes import f2_to_beta, line_area, line_pair
from simulators.materials import MATERIALS, Line, Material, get_material
from simulators.polarization import (
    POLARIZATIONS,
    helicity,
    linear_dichroism_weight,
    polarization_vector,
    tensor_weight,
    xmcd_weight,
)

__all__ = [
    "MATERIALS",
    "POLARIZATIONS",
    "Components",
    "components",
    "delta_beta",
    "edge_jump_f2",
    "get_material",
    "helicity",
    "linear_dichroism_weight",
    "polarization_vector",
    "tabulated_delta_beta",
    "tensor_weight",
    "xmcd_asymmetry",
    "xmcd_weight",
]


class Components(NamedTuple):
    """``(delta, beta)`` pairs of the parts of the optical constants, each (n,) float64.

    ``tabulated + cleanup + edge + white`` is the isotropic, non-magnetic part (``base``);
    ``edge``, ``white``, ``pi``, ``sigma`` and ``xmcd`` are the near-edge additions, each
    ``delta`` the Kramers-Kronig partner of its ``beta``; ``cleanup`` (``beta = 0``) smooths the
    tabulated ``delta`` where the tabulated sharp edge was removed.
    """

    tabulated: tuple[np.ndarray, np.ndarray]  # xraydb (Chantler)
    cleanup: tuple[np.ndarray, np.ndarray]
    edge: tuple[np.ndarray, np.ndarray]  # arctan steps minus the tabulated steps
    white: tuple[np.ndarray, np.ndarray]  # isotropic white lines (Fe L3, L2)
    pi: tuple[np.ndarray, np.ndarray]  # pi* resonances at pi_weight = 1
    sigma: tuple[np.ndarray, np.ndarray]  # sigma* resonances at sigma_weight = 1
    xmcd: tuple[np.ndarray, np.ndarray]  # change for xmcd = +1

    @property
    def base(self) -> tuple[np.ndarray, np.ndarray]:
        """Isotropic non-magnetic ``(delta, beta)`` without pi*/sigma* resonances."""
        parts = (self.tabulated, self.cleanup, self.edge, self.white)
        return sum(p[0] for p in parts), sum(p[1] for p in parts)  # type: ignore[return-value]


def _line_amplitude(mat: Material, line: Line) -> float:
    jump = edge_jump_f2(mat.name, line.element)
    n = mat.number_density_m3(line.element)
    return float(f2_to_beta(np.array([line.energy_ev]))[0] * n * jump * line.height)


def _pair(
    mat: Material, line: Line, energy: np.ndarray, amplitude: float
) -> tuple[np.ndarray, np.ndarray]:
    """A resonance and the continuum depletion that pays for its oscillator strength."""
    d, b = line_pair(energy, line.energy_ev, line.fwhm_ev, amplitude, line.shape)
    area = line_area(line.shape, line.fwhm_ev, amplitude)
    dd, db = depletion(energy, mat.edge_of(line.element), area)
    return d + dd, b + db


def components(
    material: str, energy_ev: float | np.ndarray, *, with_xmcd: bool = True
) -> Components:
    """Optical constants of ``material`` split into isotropic, pi*, sigma* and XMCD parts.

    Parameters
    ----------
    material : material name (see ``MATERIALS``)
    energy_ev : scalar or (n,) photon energies (eV)

    Returns
    -------
    Components of (n,) float64 arrays (n = 1 for a scalar energy)
    """
    mat = get_material(material)
    e = np.atleast_1d(np.asarray(energy_ev, dtype=np.float64))
    if np.any(e <= 20.0):
        raise ValueError("energies must be > 20 eV")
    d0, b0, _ = xraydb.xray_delta_beta(mat.formula, mat.density_g_cm3, e)
    tab = (
        np.array(d0, dtype=np.float64).reshape(e.shape),
        np.array(b0, dtype=np.float64).reshape(e.shape),
    )
    zero = np.zeros_like(e)
    cleanup = zero.copy()
    edge_d, edge_b = zero.copy(), zero.copy()
    for edge in mat.edges:
        dd, db, dc = edge_terms(edge, e, mat.number_density_m3(edge.element))
        edge_d += dd
        edge_b += db
        cleanup += dc
    parts = {k: (zero.copy(), zero.copy()) for k in ("white", "pi", "sigma")}
    for line in mat.lines:
        dd, db = _pair(mat, line, e, _line_amplitude(mat, line))
        d, b = parts[line.kind]
        parts[line.kind] = (d + dd, b + db)
    xm = (zero.copy(), zero.copy())
    if mat.xmcd is not None and with_xmcd:
        xm = _xmcd_pair(mat, e)
    return Components(
        tab, (cleanup, zero), (edge_d, edge_b), parts["white"], parts["pi"], parts["sigma"], xm
    )


def _xmcd_pair(mat: Material, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = mat.xmcd
    assert x is not None
    c = components(mat.name, x.l3_ev, with_xmcd=False)
    beta_l3 = float(c.base[1][0] + c.pi[1][0] + c.sigma[1][0])
    a3 = x.asymmetry * beta_l3
    a2 = -x.l2_area_ratio * a3 * x.l3_fwhm_ev / x.l2_fwhm_ev
    d3, b3 = line_pair(e, x.l3_ev, x.l3_fwhm_ev, a3)
    d2, b2 = line_pair(e, x.l2_ev, x.l2_fwhm_ev, a2)
    return d3 + d2, b3 + b2


@lru_cache(maxsize=4096)
def _components_scalar(material: str, energy_ev: float) -> Components:
    return components(material, energy_ev)


def delta_beta(
    material: str,
    energy_ev: float | np.ndarray,
    *,
    pi_weight: float = 1.0,
    sigma_weight: float = 1.0,
    xmcd: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Refractive index decrement ``delta`` and absorption index ``beta``.

    Parameters
    ----------
    material : one of ``MATERIALS`` (``"h-BN"``, ``"amorphous-carbon"``, ``"cnt"``,
        ``"formvar"``, ``"Si3N4"``, ``"permalloy"``, ``"gold"``) or an alias
    energy_ev : scalar or (n,) photon energies (eV)
    pi_weight, sigma_weight : scale of the pi* / sigma* resonances; 1 is the orientation
        average, 0 removes them, ``3 |e.n|^2`` is a pi* orbital along ``n`` (linear dichroism)
    xmcd : ``helicity * (M.k)/|M|`` in [-1, 1]; scales the Fe L3/L2 circular dichroism

    Returns
    -------
    delta, beta : float64 arrays shaped like ``energy_ev`` (0-d for a scalar)
    """
    if not -1.0 <= xmcd <= 1.0:
        raise ValueError(f"xmcd must be in [-1, 1], got {xmcd}")
    scalar = np.ndim(energy_ev) == 0
    if scalar:
        c = _components_scalar(material, float(energy_ev))
    else:
        c = components(material, energy_ev)
    delta = c.base[0] + pi_weight * c.pi[0] + sigma_weight * c.sigma[0] + xmcd * c.xmcd[0]
    beta = c.base[1] + pi_weight * c.pi[1] + sigma_weight * c.sigma[1] + xmcd * c.xmcd[1]
    shape = np.shape(energy_ev)
    return delta.reshape(shape), beta.reshape(shape)


def tabulated_delta_beta(material: str, energy_ev: float | np.ndarray) -> tuple[np.ndarray, ...]:
    """``delta, beta`` of the bare Chantler tables (``xraydb``), no near-edge model."""
    mat = get_material(material)
    d, b, _ = xraydb.xray_delta_beta(mat.formula, mat.density_g_cm3, energy_ev)
    return np.asarray(d, dtype=np.float64), np.asarray(b, dtype=np.float64)


def xmcd_asymmetry(material: str, energy_ev: float | np.ndarray) -> np.ndarray:
    """``A(E) = (beta(+1) - beta(-1)) / (beta(+1) + beta(-1))`` for ``M`` along ``k``."""
    _, bp = delta_beta(material, energy_ev, xmcd=1.0)
    _, bm = delta_beta(material, energy_ev, xmcd=-1.0)
    return (bp - bm) / (bp + bm)
