"""Oriented tubes: boron nitride nanobamboo on lacy carbon, carbon nanotube bundles.

Geometry and sizes follow Vijayakumar et al., "Soft X-ray spectro-ptychography" at the
HERMES beamline, J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955, Sec. 2-3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.samples.base import Layer, Sample, membrane
from simulators.samples.lacy import LacyWeb
from simulators.samples.rods import Rod, oriented_angles, place_rods, rod_frames
from simulators.shapes import Grid, cone_sheet, shell


@dataclass(frozen=True)
class Bamboo:
    """A BN nanobamboo: a cylindrical shell with conical panes at the sub-unit interfaces."""

    rod: Rod
    r_in: float
    panes: tuple[float, ...]  # axial apex positions (m, from the centre)
    kappa: float  # cone slope: axial shift per radius
    pane_width: float  # axial thickness of the conical pane (m)


class TubeSample(Sample):
    """Shared placement and rendering of oriented shells (BN nanobamboo, CNT bundles).

    Parameters
    ----------
    n_horizontal, n_vertical, n_oblique : number of tubes of each orientation
    diameter_range_m, length_range_m : uniform ranges of tube diameter and length (m); the
        family's defaults when None
    order : orientation order ``S`` of the sheets, in [0, 1]
    **common : ``seed``, ``area_m`` (see :class:`Sample`)
    """

    material = "h-BN"
    order = 0.5
    #: Default diameter and length ranges of the family (m).
    diameter_range_m: tuple[float, float] = (80e-9, 120e-9)
    length_range_m: tuple[float, float] = (0.6e-6, 1.4e-6)
    tubes: list[Bamboo]

    def __init__(
        self,
        *,
        n_horizontal: int = 2,
        n_vertical: int = 2,
        n_oblique: int = 1,
        diameter_range_m: tuple[float, float] | None = None,
        length_range_m: tuple[float, float] | None = None,
        order: float = 0.5,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if not 0 <= order <= 1:
            raise ValueError("order must be in [0, 1]")
        self.order = float(order)
        self.diameter_range_m = diameter_range_m or self.diameter_range_m
        self.length_range_m = length_range_m or self.length_range_m
        angles = oriented_angles(n_horizontal, n_vertical, n_oblique)
        self.rods = place_rods(
            self._rng, self.area_m / 2, angles, self.diameter_range_m, self.length_range_m, 40e-9
        )

    def _tube_layers(self, grid: Grid) -> tuple[Layer, Layer]:
        """The walls and the panes, each with their orientation tensor."""
        ny, nx = grid.shape
        tw, tp = np.zeros(grid.shape), np.zeros(grid.shape)
        qw, qp = np.zeros((3, ny, nx)), np.zeros((3, ny, nx))
        for i, sl, a, rho in rod_frames(grid, [tube.rod for tube in self.tubes]):
            tube = self.tubes[i]
            rod = tube.rod
            inside = np.abs(a) <= rod.length / 2
            t, t_vv = shell(rho, rod.radius, tube.r_in)
            t, t_vv = t * inside, t_vv * inside
            c, s = math.cos(rod.angle), math.sin(rod.angle)
            vv = (s * s, c * c, -s * c)  # v = (-s, c)
            uu = (c * c, s * s, s * c)
            tw[sl] += t
            for k in range(3):
                qw[(k, *sl)] += vv[k] * t_vv
            if tube.panes:
                pane = np.zeros_like(t)
                for apex in tube.panes:
                    pane += cone_sheet(a, rho, apex, tube.kappa, tube.pane_width, tube.r_in)
                pane *= inside
                k2 = tube.kappa**2
                wu, wv = 1 / (1 + k2), 0.5 * k2 / (1 + k2)
                tp[sl] += pane
                for k in range(3):
                    qp[(k, *sl)] += (wu * uu[k] + wv * vv[k]) * pane
        m = self.material
        return (
            Layer(f"{m} wall", m, tw, qw, self.order),
            Layer(f"{m} pane", m, tp, qp, self.order),
        )

    def _labels(self, grid: Grid) -> np.ndarray:
        lab = np.zeros(grid.shape, dtype=np.uint8)
        rods = [tube.rod for tube in self.tubes]
        for i, sl, a, rho in rod_frames(grid, rods):
            body = (np.abs(a) <= rods[i].length / 2) & (np.abs(rho) < rods[i].radius)
            lab[sl][body] = rods[i].label
        return lab


class BNBamboo(TubeSample):
    """Boron nitride nanobamboo on lacy carbon (Vijayakumar et al. 2023, Sec. 2.2, 3.2, Fig. 1).

    Tubes 80-120 nm in diameter with walls of 16-40 nm whose sheets run along the axis
    (pi* orbitals radial), divided every 100-200 nm by conical panes 25-30 nm thick whose
    sheets lie across the axis (pi* orbitals along it). Roughly horizontal, vertical and
    oblique tubes lie on a lacy carbon web of 20-50 nm strands with open holes.

    Parameters
    ----------
    wall_range_m, pane_period_range_m, pane_width_range_m : uniform ranges (m)
    lacy_cell_m : mean hole size of the lacy carbon; ``lacy_diameter_range_m`` its strands
    **layout : tube numbers, ranges and order of :class:`TubeSample`; by default tubes are
        80-120 nm wide and 0.6-1.4 um long
    """

    name, material = "bn-bamboo", "h-BN"
    diameter_range_m, length_range_m = (80e-9, 120e-9), (0.6e-6, 1.4e-6)

    def __init__(
        self,
        *,
        wall_range_m: tuple[float, float] = (16e-9, 40e-9),
        pane_period_range_m: tuple[float, float] = (100e-9, 200e-9),
        pane_width_range_m: tuple[float, float] = (25e-9, 30e-9),
        lacy_cell_m: float = 350e-9,
        lacy_diameter_range_m: tuple[float, float] = (20e-9, 50e-9),
        **layout: Any,
    ) -> None:
        super().__init__(**layout)
        rng = self._rng
        self.tubes = []
        for rod in self.rods:
            wall = min(float(rng.uniform(*wall_range_m)), 0.7 * rod.radius)
            period = float(rng.uniform(*pane_period_range_m))
            n = int(rod.length // period)
            start = -0.5 * (n - 1) * period
            panes = tuple(
                start + i * period + float(rng.normal(0, 0.05 * period)) for i in range(n)
            )
            kappa = float(rng.uniform(0.4, 0.8)) * float(rng.choice([-1.0, 1.0]))
            width = float(rng.uniform(*pane_width_range_m))
            self.tubes.append(Bamboo(rod, rod.radius - wall, panes, kappa, width))
        self.web = LacyWeb.random(rng, self.area_m / 2, lacy_cell_m, lacy_diameter_range_m)

    def _render(self, grid: Grid) -> list[Layer]:
        wall, pane = self._tube_layers(grid)
        return [wall, pane, Layer("lacy carbon", "amorphous-carbon", self.web.render(grid))]


class CNTBundle(TubeSample):
    """Carbon nanotube bundles on a formvar or Si3N4 membrane (Vijayakumar et al. 2023,
    Sec. 2.1, 3.1).

    Bundles 100-200 nm in diameter modelled as concentric graphitic shells around a small
    hollow core: the pi* orbitals are radial, so pi* absorbs most for E perpendicular to the
    bundle axis, like the BN walls.

    Parameters
    ----------
    core_fraction_range : hollow core radius over bundle radius
    membrane : ``"formvar"`` or ``"si3n4"``
    membrane_m : its thickness; default 30 nm formvar, 5 nm Si3Nx (as in Vijayakumar et al. 2023)
    **layout : as for :class:`BNBamboo`, but bundles are 100-200 nm wide and 0.8-1.8 um long
        by default
    """

    name, material = "cnt-bundle", "cnt"
    diameter_range_m, length_range_m = (100e-9, 200e-9), (0.8e-6, 1.8e-6)

    def __init__(
        self,
        *,
        core_fraction_range: tuple[float, float] = (0.15, 0.35),
        membrane: str = "formvar",
        membrane_m: float | None = None,
        **layout: Any,
    ) -> None:
        mem = membrane.lower()
        if mem not in ("formvar", "si3n4"):
            raise ValueError(f"membrane must be 'formvar' or 'si3n4', got {membrane!r}")
        super().__init__(**layout)
        self.membrane = "formvar" if mem == "formvar" else "Si3N4"
        default = 30e-9 if mem == "formvar" else 5e-9
        self.membrane_m = float(default if membrane_m is None else membrane_m)
        rng = self._rng
        self.tubes = [
            Bamboo(rod, rod.radius * float(rng.uniform(*core_fraction_range)), (), 0.0, 0.0)
            for rod in self.rods
        ]

    def _render(self, grid: Grid) -> list[Layer]:
        wall, _ = self._tube_layers(grid)
        wall.name = "cnt"
        return [wall, *membrane(self.membrane, self.membrane_m, grid)]
