"""Optical constants of the simulated samples: ``n = 1 - delta + i beta`` from 180 to 730 eV.

Off resonance the constants are those of the Chantler tables as served by ``xraydb``
(Chantler, J. Phys. Chem. Ref. Data 24, 71 (1995), doi:10.1063/1.555974; Henke, Gullikson &
Davis, At. Data Nucl. Data Tables 54, 181 (1993), doi:10.1006/adnd.1993.1013). Near the B 1s,
C 1s, N 1s and Fe 2p edges the tabulated (atomic, sharp) edge of the resonant element is
replaced by a NEXAFS model (Stohr, *NEXAFS Spectroscopy*, Springer 1992,
doi:10.1007/978-3-662-02853-7):

* an arctan edge step at the ionisation potential whose height is the tabulated jump,
* Lorentzian pi* resonances and white lines, Gaussian sigma* resonances, in ``beta``,
* and in ``delta`` the Kramers-Kronig partner of everything added (Kramers 1927, Kronig 1926;
  here in the odd-extension form ``delta(E) = (2/pi) P int E' beta(E') / (E^2 - E'^2) dE'``
  (Lucarini et al., *Kramers-Kronig Relations in Optical Materials Research*, Springer 2005,
  doi:10.1007/b138913)). The partner of a Lorentzian is the dispersive Lorentzian, that of a
  Gaussian is a Dawson function; that of the arctan step (minus the tabulated step it
  replaces) is computed numerically once per edge with a discrete Hilbert transform on a
  0.01 eV grid and cached.

Dichroism enters through weights. ``pi_weight`` and ``sigma_weight`` scale the pi*/sigma*
resonances (1 = isotropic, i.e. orientation-averaged); a sample multiplies them by
``3 |e.n|^2`` (pi*, vector-type orbital along ``n``) and ``3/2 (1 - |e.n|^2)`` (sigma*,
plane-type orbitals normal to ``n``), Stohr ch. 9. ``xmcd`` in [-1, 1] is
``helicity * (M.k)/|M|`` and scales the circular dichroism of the Fe L3/L2 white lines:
``beta_pm = beta_0 (1 + xmcd A(E))`` with ``A = +0.30`` at the L3 peak and the opposite sign at
L2 (Chen et al., Phys. Rev. Lett. 75, 152 (1995), doi:10.1103/PhysRevLett.75.152).

Sign conventions: ``delta > 0`` retards the phase, the sample transmission is
``exp(-i k delta t) exp(-k beta t)``; below an absorption peak ``delta`` dips, above it rises.
Polarisations: the beam travels along +z, x is horizontal (object columns), y vertical (rows).
LH is E along x, LV along y, CR is helicity +1 with ``e = (x + i y)/sqrt(2)``, CL helicity -1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal, NamedTuple

import numpy as np
import scipy.signal
import scipy.special
import xraydb

from recon.geometry import wavelength_m

#: Classical electron radius (m), CODATA 2018.
R_ELECTRON_M = 2.8179403262e-15
#: Avogadro constant (1/mol).
AVOGADRO = 6.02214076e23
#: Grid spacing of the numerical Kramers-Kronig transform of the edge steps (eV).
KK_STEP_EV = 0.01
#: Padding of that grid beyond each edge window (eV); beyond it a direct sum is used.
KK_PAD_EV = 200.0

POLARIZATIONS = ("LH", "LV", "CL", "CR")
_GAUSS_SIGMA = 1 / (2 * math.sqrt(2 * math.log(2)))  # Gaussian sigma / FWHM


# ---------------------------------------------------------------------------------------------
# Material definitions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """An arctan edge step ``0.5 + atan((E - energy_ev) / width_ev) / pi``.

    ``fraction`` is its share of the element's total tabulated jump over the edge group
    (e.g. 2/3 for Fe L3, 1/3 for Fe L2).
    """

    energy_ev: float
    width_ev: float
    fraction: float = 1.0


@dataclass(frozen=True)
class Line:
    """A near-edge resonance added to ``beta``.

    Attributes
    ----------
    element : the absorbing element (its edge jump sets the scale)
    energy_ev : peak energy (eV)
    fwhm_ev : full width at half maximum (eV)
    height : peak height in units of the element's tabulated edge jump in ``f2``
    kind : ``"pi"`` (scaled by ``pi_weight``), ``"sigma"`` (``sigma_weight``) or ``"white"``
        (an isotropic white line, not scaled)
    shape : ``"lorentz"`` or ``"gauss"``
    """

    element: str
    energy_ev: float
    fwhm_ev: float
    height: float
    kind: Literal["pi", "sigma", "white"]
    shape: Literal["lorentz", "gauss"] = "lorentz"


@dataclass(frozen=True)
class Edge:
    """The edge group of one element whose tabulated step is replaced by ``steps``.

    The oscillator strength of each resonance of this element is taken from the continuum
    above the edge (f-sum rule): a Gaussian of the same area, ``depletion_fwhm_ev`` wide and
    centred ``depletion_offset_ev`` above the last step, is subtracted with it, so that far
    from the edge ``delta`` and ``beta`` return to the tabulated values.
    """

    element: str
    shells: tuple[str, ...]
    steps: tuple[Step, ...]
    depletion_offset_ev: float = 30.0
    depletion_fwhm_ev: float = 40.0


@dataclass(frozen=True)
class Xmcd:
    """Circular dichroism of an L3/L2 pair of white lines (Lorentzians in ``beta``).

    ``asymmetry`` is ``A`` at ``l3_ev``; the L2 line has the opposite sign and an integrated
    strength ``l2_area_ratio`` times that of the L3 line.
    """

    element: str
    l3_ev: float
    l3_fwhm_ev: float
    l2_ev: float
    l2_fwhm_ev: float
    asymmetry: float = 0.30
    l2_area_ratio: float = 0.6


@dataclass(frozen=True)
class Material:
    """A material: formula, density and near-edge model."""

    name: str
    formula: str
    density_g_cm3: float
    edges: tuple[Edge, ...] = ()
    lines: tuple[Line, ...] = ()
    xmcd: Xmcd | None = None
    note: str = ""

    def number_density_m3(self, element: str) -> float:
        """Atoms of ``element`` per m^3."""
        comp = xraydb.chemparse(self.formula)
        mass = sum(n * xraydb.atomic_mass(el) for el, n in comp.items())
        return self.density_g_cm3 * 1e6 * AVOGADRO * comp[element] / mass


def _b_k(*, pi_h: float, pi_w: float) -> tuple[Edge, tuple[Line, ...]]:
    edge = Edge("B", ("K",), (Step(194.0, 0.8),))
    lines = (
        Line("B", 192.0, pi_w, pi_h, "pi"),
        Line("B", 198.6, 3.0, 1.2, "sigma", "gauss"),
        Line("B", 202.5, 5.0, 0.8, "sigma", "gauss"),
    )
    return edge, lines


def _n_k_bn() -> tuple[Edge, tuple[Line, ...]]:
    edge = Edge("N", ("K",), (Step(405.0, 1.0),))
    lines = (
        Line("N", 401.3, 0.7, 2.5, "pi"),
        Line("N", 408.5, 4.0, 1.0, "sigma", "gauss"),
        Line("N", 415.0, 6.0, 0.8, "sigma", "gauss"),
    )
    return edge, lines


_B_EDGE, _B_LINES = _b_k(pi_h=4.0, pi_w=0.5)
_N_EDGE, _N_LINES = _n_k_bn()

MATERIALS: dict[str, Material] = {
    "h-BN": Material(
        "h-BN",
        "BN",
        2.1,
        edges=(_B_EDGE, _N_EDGE),
        lines=_B_LINES + _N_LINES,
        note="hexagonal boron nitride; B 1s pi* 192.0 eV, N 1s pi* 401.3 eV",
    ),
    "amorphous-carbon": Material(
        "amorphous-carbon",
        "C",
        2.0,
        edges=(Edge("C", ("K",), (Step(290.0, 1.5),)),),
        lines=(
            Line("C", 285.2, 1.2, 0.8, "pi"),
            Line("C", 293.0, 6.0, 0.8, "sigma", "gauss"),
        ),
        note="amorphous / lacy carbon; weak broad pi*",
    ),
    "cnt": Material(
        "cnt",
        "C",
        1.8,
        edges=(Edge("C", ("K",), (Step(290.5, 1.0),)),),
        lines=(
            Line("C", 285.2, 0.6, 2.5, "pi"),
            Line("C", 293.0, 3.0, 1.5, "sigma", "gauss"),
            Line("C", 298.5, 8.0, 0.5, "sigma", "gauss"),
        ),
        note="graphitic carbon of nanotube walls; C 1s pi* 285.2 eV, sigma* 293 eV",
    ),
    "formvar": Material(
        "formvar",
        "C5H8O2",
        1.23,
        edges=(Edge("C", ("K",), (Step(290.0, 1.5),)),),
        lines=(
            Line("C", 287.3, 1.2, 0.4, "sigma"),
            Line("C", 288.6, 1.0, 0.5, "pi"),
            Line("C", 293.5, 6.0, 0.7, "sigma", "gauss"),
        ),
        note="polyvinyl formal support film; C-H* 287.3 eV, C=O pi* 288.6 eV",
    ),
    "Si3N4": Material(
        "Si3N4",
        "Si3N4",
        3.17,
        edges=(Edge("N", ("K",), (Step(404.0, 2.0),)),),
        lines=(Line("N", 406.0, 5.0, 0.8, "sigma", "gauss"),),
        note="silicon nitride membrane; sp3 N, no pi*",
    ),
    "permalloy": Material(
        "permalloy",
        "Ni81Fe19",
        8.7,
        edges=(
            Edge(
                "Fe",
                ("L3", "L2"),
                (Step(707.5, 0.8, 2 / 3), Step(720.5, 1.0, 1 / 3)),
                depletion_fwhm_ev=60.0,
            ),
        ),
        lines=(
            Line("Fe", 706.0, 1.8, 7.0, "white"),
            Line("Fe", 719.0, 2.5, 2.0, "white"),
        ),
        xmcd=Xmcd("Fe", 706.0, 1.8, 719.0, 2.5),
        note="Ni81Fe19; Fe L3 706 eV and L2 719 eV white lines with XMCD",
    ),
    "gold": Material("gold", "Au", 19.3, note="Siemens star; no resonances in 180-730 eV"),
}

_ALIASES = {
    "bn": "h-BN",
    "boron-nitride": "h-BN",
    "c": "amorphous-carbon",
    "carbon": "amorphous-carbon",
    "lacy-carbon": "amorphous-carbon",
    "au": "gold",
    "si3n4": "Si3N4",
    "sin": "Si3N4",
    "ni81fe19": "permalloy",
    "py": "permalloy",
}


def get_material(name: str) -> Material:
    """Look a material up by name or alias (case-insensitive)."""
    if name in MATERIALS:
        return MATERIALS[name]
    key = name.lower()
    for k, m in MATERIALS.items():
        if k.lower() == key:
            return m
    if key in _ALIASES:
        return MATERIALS[_ALIASES[key]]
    raise ValueError(f"unknown material {name!r}: use one of {', '.join(MATERIALS)}")


# ---------------------------------------------------------------------------------------------
# Line shapes and their Kramers-Kronig partners
# ---------------------------------------------------------------------------------------------


def _scale(energy_ev: np.ndarray) -> np.ndarray:
    """``r_e lambda^2 / (2 pi)`` (m^3): beta per (atom / m^3) per electron of ``f2``."""
    lam = wavelength_m(1.0) / energy_ev
    return R_ELECTRON_M * lam**2 / (2 * np.pi)


def lorentz_pair(
    energy_ev: np.ndarray, e0: float, fwhm: float, amplitude: float
) -> tuple[np.ndarray, np.ndarray]:
    """Lorentzian absorption and its exact Kramers-Kronig partner.

    ``beta = a g^2 / (x^2 + g^2)``, ``g = fwhm/2``, ``x = E - e0``; the partner of its odd
    extension is ``delta = a g [x / (x^2 + g^2) - (E + e0) / ((E + e0)^2 + g^2)]``.

    Returns
    -------
    delta, beta : arrays shaped like ``energy_ev`` (float64)
    """
    g = 0.5 * fwhm
    x = energy_ev - e0
    xm = energy_ev + e0
    beta = amplitude * g**2 / (x**2 + g**2)
    delta = amplitude * g * (x / (x**2 + g**2) - xm / (xm**2 + g**2))
    return delta, beta


def gauss_pair(
    energy_ev: np.ndarray, e0: float, fwhm: float, amplitude: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian absorption and its Kramers-Kronig partner (Dawson function).

    The Hilbert transform of ``exp(-u^2)`` is ``(2 / sqrt(pi)) D(u)`` with ``D`` Dawson's
    integral; the mirror term at ``-e0`` completes the odd extension.

    Returns
    -------
    delta, beta : arrays shaped like ``energy_ev`` (float64)
    """
    s = fwhm * _GAUSS_SIGMA * math.sqrt(2)
    u = (energy_ev - e0) / s
    um = (energy_ev + e0) / s
    beta = amplitude * np.exp(-(u**2))
    k = 2 / math.sqrt(math.pi)
    delta = amplitude * k * (scipy.special.dawsn(u) - scipy.special.dawsn(um))
    return delta, beta


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


# ---------------------------------------------------------------------------------------------
# Edge model: arctan step replacing the tabulated step
# ---------------------------------------------------------------------------------------------


class _EdgeModel(NamedTuple):
    lo: float
    hi: float
    jump: float  # total jump in f2 (electrons / atom) at the last step
    kk_grid: np.ndarray  # fine grid over the window padded by KK_PAD_EV (eV)
    dbeta_per_n: np.ndarray  # added beta per (atom/m^3) on kk_grid
    kk_delta_per_n: np.ndarray  # KK partner of dbeta on kk_grid
    cleanup_per_n: np.ndarray  # smoothing of the tabulated delta inside the window, on kk_grid


def _power_law(e: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    p, c = np.polyfit(np.log(e), np.log(f), 1)
    return float(c), float(p)


def _smoothstep_window(e: np.ndarray, lo: float, hi: float, taper: float) -> np.ndarray:
    w = np.clip(np.minimum(e - lo, hi - e) / taper, 0.0, 1.0)
    return w * w * (3 - 2 * w)


@cache
def _edge_model(edge: Edge) -> _EdgeModel:
    """Replace the tabulated edge of an element by arctan steps; numerical KK partner.

    The area of the added ``beta`` (the arctan steps sit a few eV away from the tabulated
    edge) is returned to the continuum by a Gaussian like the resonances' depletion, so that
    the f-sum rule holds and ``delta`` far from the edge stays the tabulated one.

    Inside the window the tabulated ``f1`` contains the KK image of the sharp tabulated step
    (a narrow dip at the tabulated edge energy) which the numerical transform of the removed
    step cancels only approximately; the remainder, ``delta`` of everything outside the
    window, is smooth there and is replaced by a cubic fitted just outside the window.
    """
    element, steps = edge.element, edge.steps
    chantler = [xraydb.xray_edge(element, s).energy for s in edge.shells]
    energies = chantler + [s.energy_ev for s in steps]
    lo = min(energies) - 14.0
    hi = max(energies) + 30.0
    e_pre = np.linspace(lo - 25.0, lo, 26)
    e_post = np.linspace(hi, hi + 40.0, 41)
    c_pre, p_pre = _power_law(e_pre, xraydb.f2_chantler(element, e_pre))
    c_post, p_post = _power_law(e_post, xraydb.f2_chantler(element, e_post))

    def pre(e: np.ndarray) -> np.ndarray:
        return np.exp(c_pre) * e**p_pre

    def post(e: np.ndarray) -> np.ndarray:
        return np.exp(c_post) * e**p_post

    kk_lo = max(lo - KK_PAD_EV, 20.0)
    n_lo = int(round((lo - kk_lo) / KK_STEP_EV))
    n_win = int(round((hi - lo) / KK_STEP_EV)) + 1
    n_hi = int(round(KK_PAD_EV / KK_STEP_EV))
    kk_grid = lo + KK_STEP_EV * np.arange(-n_lo, n_win + n_hi)
    inside = slice(n_lo, n_lo + n_win)
    grid = kk_grid[inside]

    step = np.zeros_like(grid)
    for s in steps:
        step += s.fraction * (0.5 + np.arctan((grid - s.energy_ev) / s.width_ev) / np.pi)
    model = pre(grid) + (post(grid) - pre(grid)) * step
    w = _smoothstep_window(grid, lo, hi, 5.0)
    f2_tab = xraydb.f2_chantler(element, grid)
    dbeta = _scale(grid) * w * (model - f2_tab)
    padded = np.zeros_like(kk_grid)
    padded[inside] = dbeta
    centre = steps[-1].energy_ev + edge.depletion_offset_ev
    area = padded.sum() * KK_STEP_EV
    _, gauss = gauss_pair(kk_grid, centre, edge.depletion_fwhm_ev, 1.0)
    padded -= area / _area("gauss", edge.depletion_fwhm_ev, 1.0) * gauss
    kk = hilbert_kk(kk_grid, padded)

    # Smooth the tabulated delta of this element inside the window.
    tab_beta = np.zeros_like(kk_grid)
    tab_beta[inside] = _scale(grid) * w * f2_tab
    outside = _scale(kk_grid) * xraydb.f1_chantler(element, kk_grid) - hilbert_kk(kk_grid, tab_beta)
    fit = ((kk_grid > lo - 15) & (kk_grid < lo + 1)) | ((kk_grid > hi - 1) & (kk_grid < hi + 15))
    x = (kk_grid - 0.5 * (lo + hi)) / (hi - lo)
    poly = np.polynomial.Polynomial.fit(x[fit], outside[fit], 3)
    cleanup = _smoothstep_window(kk_grid, lo, hi, 5.0) * (poly(x) - outside)

    e_ref = np.array([steps[-1].energy_ev])
    jump = float((post(e_ref) - pre(e_ref))[0])
    return _EdgeModel(lo, hi, jump, kk_grid, padded, kk, cleanup)


def _edge_terms(edge: Edge, energy_ev: np.ndarray, n_atoms: float) -> tuple[np.ndarray, ...]:
    """Added ``delta``, ``beta`` of an edge step and the ``delta`` cleanup, each (n,)."""
    m = _edge_model(edge)
    beta = n_atoms * np.interp(energy_ev, m.kk_grid, m.dbeta_per_n, left=0.0, right=0.0)
    delta = n_atoms * np.interp(energy_ev, m.kk_grid, m.kk_delta_per_n)
    cleanup = n_atoms * np.interp(energy_ev, m.kk_grid, m.cleanup_per_n, left=0.0, right=0.0)
    far = (energy_ev < m.kk_grid[0]) | (energy_ev > m.kk_grid[-1])
    if np.any(far):
        ef = energy_ev[far]
        stride = int(round(1.0 / KK_STEP_EV))  # 1 eV bins: exact areas, smooth kernel
        starts = np.arange(0, m.kk_grid.size, stride)
        b = np.add.reduceat(m.dbeta_per_n, starts) * KK_STEP_EV
        g = m.kk_grid[starts] + 0.5 * (stride - 1) * KK_STEP_EV
        kern = 1.0 / (ef[:, None] - g[None, :]) - 1.0 / (ef[:, None] + g[None, :])
        delta[far] = n_atoms * (kern * b[None, :]).sum(axis=1) / np.pi
    return delta, beta, cleanup


def edge_jump_f2(material: str, element: str) -> float:
    """Tabulated edge jump of ``element`` in ``material`` (electrons per atom in ``f2``)."""
    mat = get_material(material)
    for e in mat.edges:
        if e.element == element:
            return _edge_model(e).jump
    raise ValueError(f"{material} has no modelled edge of {element}")


# ---------------------------------------------------------------------------------------------
# Public optical constants
# ---------------------------------------------------------------------------------------------


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
    return float(_scale(np.array([line.energy_ev]))[0] * n * jump * line.height)


def _area(shape: str, fwhm: float, amplitude: float) -> float:
    if shape == "lorentz":
        return amplitude * math.pi * fwhm / 2
    return amplitude * fwhm * _GAUSS_SIGMA * math.sqrt(2 * math.pi)


def _pair(
    mat: Material, line: Line, energy: np.ndarray, amplitude: float
) -> tuple[np.ndarray, np.ndarray]:
    """A resonance and the continuum depletion that pays for its oscillator strength."""
    fn = lorentz_pair if line.shape == "lorentz" else gauss_pair
    d, b = fn(energy, line.energy_ev, line.fwhm_ev, amplitude)
    edge = next(e for e in mat.edges if e.element == line.element)
    centre = edge.steps[-1].energy_ev + edge.depletion_offset_ev
    fw = edge.depletion_fwhm_ev
    depth = _area(line.shape, line.fwhm_ev, amplitude) / _area("gauss", fw, 1.0)
    dd, db = gauss_pair(energy, centre, fw, -depth)
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
        dd, db, dc = _edge_terms(edge, e, mat.number_density_m3(edge.element))
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
    d3, b3 = lorentz_pair(e, x.l3_ev, x.l3_fwhm_ev, a3)
    d2, b2 = lorentz_pair(e, x.l2_ev, x.l2_fwhm_ev, a2)
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


# ---------------------------------------------------------------------------------------------
# Polarisation
# ---------------------------------------------------------------------------------------------


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
    """``e^* . Q . e`` for an in-plane orientation tensor ``Q`` (same shape arrays).

    ``Q = sum t n n^T`` (projected over the path) gives the ``|e.n|^2``-weighted thickness.
    """
    e = polarization_vector(pol)
    ex, ey = e[0], e[1]
    return np.abs(ex) ** 2 * qxx + np.abs(ey) ** 2 * qyy + 2 * np.real(np.conj(ex) * ey) * qxy


def xmcd_weight(pol: str, m: np.ndarray) -> np.ndarray:
    """``helicity * (M . k)`` with ``k = z`` for magnetisation vectors ``m`` ((..., 3))."""
    return helicity(pol) * np.asarray(m, dtype=np.float64)[..., 2]
