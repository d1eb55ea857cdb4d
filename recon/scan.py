"""Scan patterns: raster grid from area, spot size and overlap; Fermat spiral.

Overlap is ``O = 1 - d / (2 r)`` (Bunk et al. 2008, doi:10.1016/j.ultramic.2007.08.003),
so the step is ``d = spot (1 - O)``. Positions are probe centres on the sample in metres,
(N, 2) float64 as (y, x), centred on the scan area's middle.
"""

from __future__ import annotations

import math

import numpy as np


def step_from_overlap(spot_m: float, overlap: float) -> float:
    """Raster step ``d = 2 r (1 - O)`` (m) for a spot diameter ``2 r`` and overlap ``O``."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if spot_m <= 0:
        raise ValueError(f"spot size must be > 0, got {spot_m}")
    return spot_m * (1.0 - overlap)


def overlap_from_step(spot_m: float, step_m: float) -> float:
    """Overlap ``O = 1 - d / (2 r)`` (can be negative when steps exceed the spot)."""
    return 1.0 - step_m / spot_m


def _area_yx(area_m: float | tuple[float, float], step_m: float) -> tuple[float, float]:
    """(height, width) of a square side or a (height, width) pair; checks the step."""
    if step_m <= 0:
        raise ValueError(f"step must be > 0, got {step_m}")
    return (area_m, area_m) if np.isscalar(area_m) else area_m


def raster_shape(area_m: float | tuple[float, float], step_m: float) -> tuple[int, int]:
    """Number of points (ny, nx) of a raster with ``step_m`` covering ``area_m`` (m)."""
    ay, ax = _area_yx(area_m, step_m)
    return int(math.floor(ay / step_m + 1e-9)) + 1, int(math.floor(ax / step_m + 1e-9)) + 1


def raster_positions(area_m: float | tuple[float, float], step_m: float) -> np.ndarray:
    """Raster positions, row by row (x fastest), centred on zero.

    Parameters
    ----------
    area_m : scan extent, square side or (height, width) (m)
    step_m : step between neighbouring points (m)

    Returns
    -------
    positions : (N, 2) float64, (y, x) in metres, N = ny * nx.
    """
    ny, nx = raster_shape(area_m, step_m)
    y = (np.arange(ny) - (ny - 1) / 2) * step_m
    x = (np.arange(nx) - (nx - 1) / 2) * step_m
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def fermat_positions(area_m: float | tuple[float, float], step_m: float) -> np.ndarray:
    """Fermat spiral filling a rectangle with mean nearest-neighbour spacing ~ ``step_m``.

    Points ``r_n = c sqrt(n)``, ``phi_n = n * 137.508 deg`` (Huang et al. 2014,
    doi:10.1364/OE.22.012634), kept inside the area; same density as a raster of ``step_m``.
    Parameters as :func:`raster_positions`.

    Returns
    -------
    positions : (N, 2) float64, (y, x) in metres.
    """
    ay, ax = _area_yx(area_m, step_m)
    c = step_m / math.sqrt(math.pi)  # one point per step^2 of area
    n_max = int(math.pi * (0.5 * math.hypot(ay, ax)) ** 2 / (math.pi * c**2)) + 1
    n = np.arange(n_max)
    r = c * np.sqrt(n)
    phi = n * math.radians(137.50776405)
    y, x = r * np.sin(phi), r * np.cos(phi)
    keep = (np.abs(y) <= ay / 2 + 1e-12) & (np.abs(x) <= ax / 2 + 1e-12)
    return np.stack([y[keep], x[keep]], axis=1)


def scan_positions(
    pattern: str,
    area_m: float | tuple[float, float],
    step_m: float,
    jitter_m: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Positions of a ``raster`` or ``fermat`` scan, optionally with position errors.

    Parameters
    ----------
    pattern : ``raster`` (:func:`raster_positions`) or ``fermat`` (:func:`fermat_positions`)
    area_m, step_m : scan extent and step (m), as for those functions
    jitter_m : standard deviation of a Gaussian position error added to each point (m)
    rng : random generator for the jitter

    Returns
    -------
    positions : (N, 2) float64, (y, x) in metres.
    """
    if pattern == "raster":
        pos = raster_positions(area_m, step_m)
    elif pattern == "fermat":
        pos = fermat_positions(area_m, step_m)
    else:
        raise ValueError(f"unknown scan pattern {pattern!r}: use raster or fermat")
    if jitter_m > 0:
        rng = rng or np.random.default_rng()
        pos = pos + rng.normal(0.0, jitter_m, pos.shape)
    return pos
