"""Permalloy nanorods with magnetic end domains, for XMCD."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.samples.base import Layer, Sample, make_grid, membrane
from simulators.samples.rods import Rod, place_rods, rod_frames
from simulators.shapes import Grid, chord


@dataclass(frozen=True)
class MagneticRod:
    """A permalloy rod (capsule) with end domains: ``M.k = m * sign * tanh(rho / w)``."""

    rod: Rod
    m: float
    end_length: float
    end_signs: tuple[float, float]


class PermalloyRods(Sample):
    """Permalloy (Ni81Fe19) nanorods on Si3N4 (Vijayakumar et al., J. Synchrotron Rad. 30
    (2023), doi:10.1107/S1600577523000955, Sec. 2.3, 3.3, Fig. 4).

    Rods 100-150 nm in diameter, 0.5-1.5 um long. The magnetisation lies along the rod
    (``M.k = 0``) except near each end, where the two halves across the width tilt out of
    the plane in opposite directions (``M.k = +m`` and ``-m``, ``m`` in ``m_range``), giving
    white/black XMCD at the terminations.
    """

    name = "permalloy-rods"

    def __init__(
        self,
        *,
        n_rods: int = 5,
        diameter_range_m: tuple[float, float] = (100e-9, 150e-9),
        length_range_m: tuple[float, float] = (0.5e-6, 1.5e-6),
        m_range: tuple[float, float] = (0.6, 1.0),
        membrane_m: float = 50e-9,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        rng = self._rng
        rods = place_rods(
            rng, self.area_m / 2, [None] * n_rods, diameter_range_m, length_range_m, gap=25e-9
        )
        self.membrane_m = float(membrane_m)
        self.rods = [
            MagneticRod(
                rod,
                float(rng.uniform(*m_range)),
                float(np.clip(0.2 * rod.length, 80e-9, 250e-9)),
                (float(rng.choice([-1.0, 1.0])), float(rng.choice([-1.0, 1.0]))),
            )
            for rod in rods
        ]

    def _each(
        self, grid: Grid
    ) -> Iterator[tuple[MagneticRod, tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]]:
        """Per rod: its window slices, axial/transverse coordinates and path length."""
        for i, sl, a, rho in rod_frames(grid, [mr.rod for mr in self.rods]):
            mr = self.rods[i]
            core = max(mr.rod.length - 2 * mr.rod.radius, 0.0)
            d = np.sqrt(np.maximum(np.abs(a) - core / 2, 0.0) ** 2 + rho**2)
            yield mr, sl, a, rho, chord(d, mr.rod.radius)

    def magnetization_map(self, pixel_m: float, shape: tuple[int, int]) -> np.ndarray:
        """(ny, nx) float64 ``M.k / |M|`` (0 outside the rods)."""
        grid = make_grid(pixel_m, shape)
        mk = np.zeros(grid.shape)
        for mr, sl, a, rho, t in self._each(grid):
            e = mr.rod.length / 2 - np.abs(a)
            f_end = 0.5 * (1 - np.tanh((e - mr.end_length) / (0.25 * mr.end_length)))
            sign = np.where(a > 0, mr.end_signs[1], mr.end_signs[0])
            val = mr.m * sign * np.tanh(rho / (0.25 * mr.rod.radius)) * f_end
            mk[sl] = np.where(t > 0, val, mk[sl])
        return mk

    def end_mask(self, pixel_m: float, shape: tuple[int, int], *, scale: float = 1.0) -> np.ndarray:
        """(ny, nx) bool: rod pixels within ``scale * end_length`` of a tip.

        ``rods & ~end_mask(..., scale=2)`` is the rod middle, where ``M.k`` is ~0.
        """
        grid = make_grid(pixel_m, shape)
        out = np.zeros(grid.shape, dtype=bool)
        for mr, sl, a, _, t in self._each(grid):
            out[sl] |= (t > 0) & (mr.rod.length / 2 - np.abs(a) < scale * mr.end_length)
        return out

    def _render(self, grid: Grid) -> list[Layer]:
        t = np.zeros(grid.shape)
        for _, sl, _, _, tr in self._each(grid):
            t[sl] += tr
        mk = self.magnetization_map(grid.pixel_m, grid.shape)
        return [
            Layer("permalloy", "permalloy", t, tm=t * mk),
            *membrane("Si3N4", self.membrane_m, grid),
        ]

    def _labels(self, grid: Grid) -> np.ndarray:
        lab = np.zeros(grid.shape, dtype=np.uint8)
        for mr, sl, _, _, t in self._each(grid):
            lab[sl][t > 0] = mr.rod.label
        return lab
