"""Gold Siemens star: the resolution target."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulators.samples.base import LABEL_OBLIQUE, Layer, Sample, membrane
from simulators.shapes import Grid


class SiemensStar(Sample):
    """Gold Siemens star (resolution target) on a Si3N4 membrane.

    Parameters
    ----------
    n_spokes : number of gold spokes
    thickness_m : gold thickness (150-200 nm)
    radius_m : outer radius, default ``area_m / 2``
    membrane_m : Si3N4 membrane thickness (m), 0 for none
    **common : ``seed``, ``area_m`` (see :class:`Sample`)
    """

    name = "siemens-star"

    def __init__(
        self,
        *,
        n_spokes: int = 36,
        thickness_m: float = 180e-9,
        radius_m: float | None = None,
        membrane_m: float = 50e-9,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if n_spokes < 2:
            raise ValueError("n_spokes must be >= 2")
        self.n_spokes = int(n_spokes)
        self.thickness_m = float(thickness_m)
        self.radius_m = float(radius_m) if radius_m is not None else self.area_m / 2
        self.membrane_m = float(membrane_m)
        self.rotation = float(self._rng.uniform(0, 2 * math.pi / self.n_spokes))

    def _coverage(self, grid: Grid) -> np.ndarray:
        """(ny, nx) float64 gold fraction of each pixel (edges anti-aliased)."""
        x, y = grid.full()
        r = np.hypot(x, y)
        period = 2 * math.pi / self.n_spokes
        phi = np.arctan2(y, x) - self.rotation
        psi = (phi + period / 2) % period - period / 2
        d = r * np.sin(period / 4 - np.abs(psi))  # signed distance to the spoke edge
        p = grid.pixel_m
        return np.clip(0.5 + d / p, 0, 1) * np.clip(0.5 + (self.radius_m - r) / p, 0, 1)

    def _render(self, grid: Grid) -> list[Layer]:
        gold = Layer("Au", "gold", self.thickness_m * self._coverage(grid))
        return [gold, *membrane("Si3N4", self.membrane_m, grid)]

    def _labels(self, grid: Grid) -> np.ndarray:
        return (self._coverage(grid) > 0.5).astype(np.uint8) * LABEL_OBLIQUE
