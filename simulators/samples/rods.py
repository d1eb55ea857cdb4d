"""Straight bodies in the sample plane: rods, their placement without overlap, their frames."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from simulators.samples.base import LABEL_HORIZONTAL, LABEL_OBLIQUE, LABEL_VERTICAL
from simulators.shapes import Grid, local_frame


def classify(angle: float) -> int:
    """Orientation label of an axis at ``angle`` (rad): within 30 deg of x, of y, or oblique."""
    a = math.degrees(angle) % 180.0
    if a < 30 or a > 150:
        return LABEL_HORIZONTAL
    if 60 < a < 120:
        return LABEL_VERTICAL
    return LABEL_OBLIQUE


def segment_bbox(
    p0: Sequence[float], p1: Sequence[float], r: float
) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` of a segment from ``p0`` to ``p1`` widened by ``r`` (m)."""
    return (
        min(p0[0], p1[0]) - r,
        max(p0[0], p1[0]) + r,
        min(p0[1], p1[1]) - r,
        max(p0[1], p1[1]) + r,
    )


def _segments_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> float:
    """Smallest distance between two segments (sampled at 33 points each)."""
    s = np.linspace(0, 1, 33)[:, None]
    a = p0 + s * (p1 - p0)
    b = q0 + s * (q1 - q0)
    return float(np.min(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)))


@dataclass(frozen=True)
class Rod:
    """A straight body in the sample plane: centre (x, y), axis angle, length, radius (m)."""

    centre: tuple[float, float]
    angle: float
    length: float
    radius: float

    @property
    def label(self) -> int:
        return classify(self.angle)

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        u = np.array([math.cos(self.angle), math.sin(self.angle)])
        c = np.asarray(self.centre)
        return c - 0.5 * self.length * u, c + 0.5 * self.length * u

    def bbox(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        return segment_bbox(*self.ends(), self.radius + margin)


def place_rods(
    rng: np.random.Generator,
    half: float,
    angles: list[float | None],
    diameter_range: tuple[float, float],
    length_range: tuple[float, float],
    gap: float,
) -> list[Rod]:
    """Place non-overlapping rods inside ``[-half, half]^2``.

    Parameters
    ----------
    rng : the sample's generator (draws: angle, diameter, length, centre per try)
    half : half side of the square (m)
    angles : one entry per rod: the axis angle (rad, jittered by 0.1 rad) or None (random)
    diameter_range, length_range : uniform ranges of the rod diameter and length (m)
    gap : smallest distance between rod surfaces (m)
    """
    rods: list[Rod] = []
    for base in angles:
        for _ in range(200):
            ang = rng.uniform(0, math.pi) if base is None else base + rng.normal(0, 0.1)
            r = 0.5 * float(rng.uniform(*diameter_range))
            ln = min(float(rng.uniform(*length_range)), 1.7 * (half - r))
            u = np.array([math.cos(ang), math.sin(ang)])
            ext = 0.5 * ln * np.abs(u) + r
            if np.any(ext >= half):
                continue
            c = rng.uniform(-(half - ext), half - ext)
            cand = Rod((float(c[0]), float(c[1])), float(ang), float(ln), float(r))
            p0, p1 = cand.ends()
            if all(
                _segments_distance(p0, p1, *o.ends()) > cand.radius + o.radius + gap for o in rods
            ):
                rods.append(cand)
                break
    return rods


def oriented_angles(n_horizontal: int, n_vertical: int, n_oblique: int) -> list[float | None]:
    """Axis angles for ``place_rods``: horizontal, vertical, then random ones."""
    return [0.0] * n_horizontal + [math.pi / 2] * n_vertical + [None] * n_oblique


def rod_frames(
    grid: Grid, rods: Sequence[Rod]
) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray, np.ndarray]]:
    """Per rod that touches the grid: its index, window slices and local coordinates.

    Yields
    ------
    i, (sy, sx), a, rho : rod index, slices into the (ny, nx) grid, axial and transverse
        coordinates (h, w) float64 (m) of the window's pixels
    """
    for i, rod in enumerate(rods):
        win = grid.window(*rod.bbox())
        if win is None:
            continue
        sl, x, y = win
        a, rho = local_frame(x, y, rod.centre, rod.angle)
        yield i, sl, a, rho
