"""Lacy carbon support: a random web of cylindrical strands around open holes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import Voronoi

from simulators.samples.rods import segment_bbox
from simulators.shapes import Grid, chord, clip_segment, segment_distance


@dataclass(frozen=True)
class LacyWeb:
    """Lacy carbon: a random web (Voronoi edges) of cylindrical strands with holes.

    ``segments`` holds per strand its two end points ((2,) float64, m) and radius (m).
    """

    segments: tuple[tuple[np.ndarray, np.ndarray, float], ...]

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        half: float,
        cell_m: float,
        diameter_range: tuple[float, float],
    ) -> LacyWeb:
        """A web over ``[-half, half]^2`` with holes ``cell_m`` wide and strands of
        ``diameter_range`` (m)."""
        n = max(4, int(round((2 * half / cell_m) ** 2 * 1.44)))
        pts = rng.uniform(-1.2 * half, 1.2 * half, size=(n, 2))
        far = 10 * half * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
        vor = Voronoi(np.vstack([pts, far]))
        segs = []
        for i0, i1 in vor.ridge_vertices:
            if i0 < 0 or i1 < 0:
                continue
            clipped = clip_segment(vor.vertices[i0], vor.vertices[i1], half)
            if clipped is None:
                continue
            r = 0.5 * float(rng.uniform(*diameter_range))
            segs.append((clipped[0], clipped[1], r))
        return cls(tuple(segs))

    def render(self, grid: Grid) -> np.ndarray:
        """(ny, nx) float64 path length (m); strands are cylinders, joints their union."""
        t = np.zeros(grid.shape)
        for p0, p1, r in self.segments:
            win = grid.window(*segment_bbox(p0, p1, r))
            if win is None:
                continue
            sl, x, y = win
            d, _ = segment_distance(x, y, tuple(p0), tuple(p1))
            np.maximum(t[sl], chord(d, r), out=t[sl])
        return t
