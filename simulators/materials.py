"""Material definitions of the simulated samples, read from ``simulators/data/materials.json``.

A material is a formula, a density and a near-edge model: the edge steps that replace the
tabulated (atomic, sharp) edges, the resonances added to ``beta`` and, for magnetic
materials, the circular dichroism of an L3/L2 pair of white lines. The numbers live in the
data file (installed as package data); :mod:`simulators.optics` turns them into optical
constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import xraydb

#: Avogadro constant (1/mol).
AVOGADRO = 6.02214076e23
#: The data file, relative to the ``simulators`` package.
DATA_FILE = ("data", "materials.json")


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

    @property
    def depletion_centre_ev(self) -> float:
        """Centre of the continuum depletion (eV)."""
        return self.steps[-1].energy_ev + self.depletion_offset_ev


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

    def edge_of(self, element: str) -> Edge:
        """The modelled edge group of ``element``."""
        for edge in self.edges:
            if edge.element == element:
                return edge
        raise ValueError(f"{self.name} has no modelled edge of {element}")


def _edge(spec: dict[str, Any]) -> Edge:
    steps = tuple(Step(**s) for s in spec.pop("steps"))
    return Edge(shells=tuple(spec.pop("shells")), steps=steps, **spec)


def _material(name: str, spec: dict[str, Any]) -> Material:
    spec = dict(spec)
    edges = tuple(_edge(dict(e)) for e in spec.pop("edges", ()))
    lines = tuple(Line(**line) for line in spec.pop("lines", ()))
    xmcd = spec.pop("xmcd", None)
    return Material(
        name, edges=edges, lines=lines, xmcd=None if xmcd is None else Xmcd(**xmcd), **spec
    )


@cache
def load_materials() -> tuple[dict[str, Material], dict[str, str]]:
    """Read the data file once.

    Returns
    -------
    materials : name -> :class:`Material`
    aliases : lower-case alias -> material name
    """
    text = resources.files("simulators").joinpath(*DATA_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    materials = {name: _material(name, spec) for name, spec in data["materials"].items()}
    aliases = dict(data["aliases"])
    unknown = sorted(set(aliases.values()) - set(materials))
    if unknown:
        raise ValueError(f"{'/'.join(DATA_FILE)}: aliases of unknown materials {unknown}")
    return materials, aliases


MATERIALS: dict[str, Material] = load_materials()[0]


def get_material(name: str) -> Material:
    """Look a material up by name or alias (case-insensitive)."""
    materials, aliases = load_materials()
    if name in materials:
        return materials[name]
    key = name.lower()
    for k, m in materials.items():
        if k.lower() == key:
            return m
    if key in aliases:
        return materials[aliases[key]]
    raise ValueError(f"unknown material {name!r}: use one of {', '.join(materials)}")
