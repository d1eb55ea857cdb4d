"""Arctan edge steps that replace the tabulated (atomic, sharp) absorption edges.

Near the B 1s, C 1s, N 1s and Fe 2p edges the Chantler step of the resonant element (as
served by ``xraydb``) is replaced by arctan steps at the ionisation potential whose height is
the tabulated jump (Stohr, *NEXAFS Spectroscopy*, Springer 1992,
doi:10.1007/978-3-662-02853-7). The Kramers-Kronig partner of the change is computed
numerically once per edge with a discrete Hilbert transform on a 0.01 eV grid and cached.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import xraydb

from simulators.lineshapes import f2_to_beta, hilbert_kk, line_area, line_pair
from simulators.materials import Edge, get_material

#: Grid spacing of the numerical Kramers-Kronig transform of the edge steps (eV).
KK_STEP_EV = 0.01
#: Padding of that grid beyond each edge window (eV); beyond it a direct sum is used.
KK_PAD_EV = 200.0


class EdgeModel(NamedTuple):
    """The cached change of one edge group, per atom / m^3, on a fine grid."""

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


def depletion(energy_ev: np.ndarray, edge: Edge, area: float) -> tuple[np.ndarray, np.ndarray]:
    """``(delta, beta)`` of the continuum depletion of ``edge`` that removes ``area``.

    A Gaussian ``depletion_fwhm_ev`` wide at ``edge.depletion_centre_ev`` (f-sum rule).
    """
    fw = edge.depletion_fwhm_ev
    depth = area / line_area("gauss", fw, 1.0)
    return line_pair(energy_ev, edge.depletion_centre_ev, fw, -depth, "gauss")


@cache
def edge_model(edge: Edge) -> EdgeModel:
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
    padded = np.zeros_like(kk_grid)
    padded[inside] = f2_to_beta(grid) * w * (model - f2_tab)
    padded += depletion(kk_grid, edge, padded.sum() * KK_STEP_EV)[1]
    kk = hilbert_kk(kk_grid, padded)

    # Smooth the tabulated delta of this element inside the window.
    tab_beta = np.zeros_like(kk_grid)
    tab_beta[inside] = f2_to_beta(grid) * w * f2_tab
    tab_delta = f2_to_beta(kk_grid) * xraydb.f1_chantler(element, kk_grid)
    outside = tab_delta - hilbert_kk(kk_grid, tab_beta)
    fit = ((kk_grid > lo - 15) & (kk_grid < lo + 1)) | ((kk_grid > hi - 1) & (kk_grid < hi + 15))
    x = (kk_grid - 0.5 * (lo + hi)) / (hi - lo)
    poly = np.polynomial.Polynomial.fit(x[fit], outside[fit], 3)
    cleanup = _smoothstep_window(kk_grid, lo, hi, 5.0) * (poly(x) - outside)

    e_ref = np.array([steps[-1].energy_ev])
    jump = float((post(e_ref) - pre(e_ref))[0])
    return EdgeModel(lo, hi, jump, kk_grid, padded, kk, cleanup)


def edge_terms(edge: Edge, energy_ev: np.ndarray, n_atoms: float) -> tuple[np.ndarray, ...]:
    """Added ``delta``, ``beta`` of an edge step and the ``delta`` cleanup, each (n,) float64.

    Parameters
    ----------
    edge : the edge group
    energy_ev : (n,) float64 photon energies (eV)
    n_atoms : atoms of the element per m^3
    """
    m = edge_model(edge)
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
    return edge_model(get_material(material).edge_of(element)).jump
