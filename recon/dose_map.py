"""The dose a sample has received, as a map in stage coordinates (pure NumPy).

Every exposure of a spot of diameter ``2R`` deposits its single-exposure dose
(:func:`recon.dose.single_exposure_dose_gray`) on the pixels whose centres lie within the
spot: the pixels are stamped by :func:`recon.dose.exposure_map`, so a point inside an
overlapping raster receives ``1 + k`` exposures per ptychogram (Vijayakumar et al. 2023,
Eqs. 3-5) and ``n (1 + k)`` over an ``n``-image stack. A :class:`DoseMap` holds the sum
over all scans on one grid (pixel centres at ``origin + index * pixel``) that grows to take
each new scan, and is refined by an integer factor when a spot would cover too few pixels.
The values are doses (Gy, intensive), so growing pads with zeros and refining repeats
pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recon.dose import MAX_GRID_CELLS, check_grid, exposure_map

#: Fewest map pixels across a spot's radius: a finer spot refines the map first.
MIN_PIXELS_PER_RADIUS = 5.0


@dataclass(frozen=True)
class DoseMap:
    """Accumulated dose (Gy) on a regular grid in stage coordinates.

    Attributes
    ----------
    values : (ny, nx) float64 dose (Gy)
    origin_m : stage (y, x) of the centre of pixel [0, 0] (m)
    pixel_m : pixel size (m)
    """

    values: np.ndarray
    origin_m: tuple[float, float]
    pixel_m: float

    def coordinates_m(self) -> tuple[np.ndarray, np.ndarray]:
        """Stage y (rows) and x (columns) of the pixel centres (m)."""
        ny, nx = self.values.shape
        y = self.origin_m[0] + np.arange(ny) * self.pixel_m
        x = self.origin_m[1] + np.arange(nx) * self.pixel_m
        return y, x

    def at(self, y_m: float, x_m: float) -> float:
        """Dose (Gy) of the pixel containing stage point (y, x); 0 outside the map."""
        i = int(round((y_m - self.origin_m[0]) / self.pixel_m))
        j = int(round((x_m - self.origin_m[1]) / self.pixel_m))
        ny, nx = self.values.shape
        return float(self.values[i, j]) if 0 <= i < ny and 0 <= j < nx else 0.0


def empty_map(pixel_m: float) -> DoseMap:
    """A map with no pixel yet (the first stamp sets its extent)."""
    if not (math.isfinite(pixel_m) and pixel_m > 0):
        raise ValueError("the map's pixel size must be finite and > 0")
    return DoseMap(np.zeros((0, 0)), (0.0, 0.0), float(pixel_m))


def default_pixel_m(spot_m: float) -> float:
    """The pixel of a new map: a tenth of the spot's diameter."""
    return spot_m / (2 * MIN_PIXELS_PER_RADIUS)


def _refined(dose: DoseMap, spot_m: float) -> DoseMap:
    """``dose`` with pixels an integer factor smaller when ``spot_m`` needs it."""
    factor = int(math.ceil(dose.pixel_m * MIN_PIXELS_PER_RADIUS / (spot_m / 2) - 1e-9))
    if factor <= 1:
        return dose
    pixel = dose.pixel_m / factor
    if dose.values.size == 0:
        return DoseMap(dose.values, dose.origin_m, pixel)
    ny, nx = dose.values.shape
    check_grid(ny * nx * factor**2, MAX_GRID_CELLS, "dose map pixels", "use a larger spot")
    values = np.repeat(np.repeat(dose.values, factor, axis=0), factor, axis=1)
    shift = (factor - 1) / 2 * pixel  # the old pixel's centre is the middle of its block
    origin = (dose.origin_m[0] - shift, dose.origin_m[1] - shift)
    return DoseMap(values, origin, pixel)


def _grown(dose: DoseMap, lo: tuple[int, int], hi: tuple[int, int]) -> tuple[DoseMap, tuple]:
    """``dose`` padded with zeros to hold pixel indices ``lo..hi`` (inclusive, possibly
    negative); returns the map and the offset of the old index 0 in the new one."""
    ny, nx = dose.values.shape
    if dose.values.size == 0:
        y0, x0, y1, x1 = lo[0], lo[1], hi[0], hi[1]
    else:
        y0, x0 = min(lo[0], 0), min(lo[1], 0)
        y1, x1 = max(hi[0], ny - 1), max(hi[1], nx - 1)
    shape = (y1 - y0 + 1, x1 - x0 + 1)
    check_grid(shape[0] * shape[1], MAX_GRID_CELLS, "dose map pixels", "use a larger pixel")
    values = np.zeros(shape)
    if dose.values.size:
        values[-y0 : -y0 + ny, -x0 : -x0 + nx] = dose.values
    p = dose.pixel_m
    origin = (dose.origin_m[0] + y0 * p, dose.origin_m[1] + x0 * p)
    return DoseMap(values, origin, p), (-y0, -x0)


def spots_map(dose: DoseMap, positions_m: np.ndarray, spot_m: float) -> tuple[DoseMap, np.ndarray]:
    """Exposure counts of spots at stage ``positions_m`` on ``dose``'s grid.

    Parameters
    ----------
    dose : the map whose grid the counts share (refined and grown here as needed)
    positions_m : (N, 2) float64 spot centres (y, x), stage coordinates (m)
    spot_m : spot diameter (m)

    Returns
    -------
    dose : the map, refined/grown to hold every spot (same doses)
    counts : int32 array of ``dose.values``' shape: exposures of each pixel
    """
    pos = np.asarray(positions_m, dtype=np.float64).reshape(-1, 2)
    dose = _refined(dose, spot_m)
    if len(pos) == 0:
        return dose, np.zeros(dose.values.shape, dtype=np.int32)
    p, r = dose.pixel_m, spot_m / 2
    if dose.values.size == 0:  # the first spot's pixel grid: centre of the first point
        dose = DoseMap(dose.values, (float(pos[0, 0]), float(pos[0, 1])), p)
    idx = (pos - np.asarray(dose.origin_m)) / p
    margin = int(math.ceil(r / p)) + 1
    lo = (int(math.floor(idx[:, 0].min())) - margin, int(math.floor(idx[:, 1].min())) - margin)
    hi = (int(math.ceil(idx[:, 0].max())) + margin, int(math.ceil(idx[:, 1].max())) + margin)
    side = max(hi[0] - lo[0], hi[1] - lo[1]) + 1  # exposure_map maps a square
    hi = (lo[0] + side - 1, lo[1] + side - 1)
    dose, (oy, ox) = _grown(dose, lo, hi)
    # the square's centre, so that exposure_map's pixels are the map's own
    centre = (
        np.asarray(dose.origin_m) + (np.asarray(lo) + (np.array([oy, ox])) + (side - 1) / 2) * p
    )
    square = exposure_map(pos - centre, spot_m, side * p, p)
    counts = np.zeros(dose.values.shape, dtype=np.int32)
    y0, x0 = lo[0] + oy, lo[1] + ox
    counts[y0 : y0 + side, x0 : x0 + side] = square
    return dose, counts


def add_exposures(
    dose: DoseMap, positions_m: np.ndarray, spot_m: float, dose_gray: np.ndarray | float
) -> DoseMap:
    """``dose`` plus exposures at ``positions_m`` of ``dose_gray`` each.

    Parameters
    ----------
    dose : the map so far
    positions_m : (N, 2) float64 spot centres (y, x), stage coordinates (m)
    spot_m : spot diameter (m)
    dose_gray : single-exposure dose (Gy), one for all or (N,) one per exposure (the
        energy or the flux changes from exposure to exposure in a stack)
    """
    pos = np.asarray(positions_m, dtype=np.float64).reshape(-1, 2)
    each = np.broadcast_to(np.asarray(dose_gray, dtype=np.float64), (len(pos),))
    dose, _ = spots_map(dose, pos[:0], spot_m)
    values = dose.values.copy()
    for value in np.unique(each):  # one stamp per distinct dose (per energy in a stack)
        dose, counts = spots_map(
            DoseMap(values, dose.origin_m, dose.pixel_m), pos[each == value], spot_m
        )
        values = dose.values + counts * float(value)
    return DoseMap(values, dose.origin_m, dose.pixel_m)


@dataclass(frozen=True)
class DosePeak:
    """The most dosed point of a sample after a planned scan.

    Attributes
    ----------
    y_m, x_m : its stage coordinates (m)
    total_gray : dose it would reach (Gy)
    received_gray : dose it has already received (Gy)
    """

    y_m: float
    x_m: float
    total_gray: float
    received_gray: float


def planned_peak(
    received: DoseMap, positions_m: np.ndarray, spot_m: float, dose_gray: float
) -> DosePeak:
    """Where the received dose plus a planned scan is highest, and how high.

    Parameters
    ----------
    received : the sample's map so far (possibly empty)
    positions_m : (N, 2) planned spot centres (y, x), stage coordinates (m)
    spot_m : spot diameter (m)
    dose_gray : dose of one visit of every position: the single-exposure dose summed over
        the ptychograms of the scan (they all visit the same positions)
    """
    grid, counts = spots_map(received, positions_m, spot_m)
    total = grid.values + counts * float(dose_gray)
    i, j = np.unravel_index(int(np.argmax(total)), total.shape)
    y, x = grid.coordinates_m()
    return DosePeak(float(y[i]), float(x[j]), float(total[i, j]), float(grid.values[i, j]))


def coarsened(dose: DoseMap, max_side: int) -> DoseMap:
    """``dose`` with blocks of pixels merged into their maximum, at most ``max_side``
    pixels a side (the peak survives: what a budget check needs to see)."""
    ny, nx = dose.values.shape
    f = max(1, int(math.ceil(max(ny, nx) / max_side)))
    if f == 1:
        return dose
    py, px = (-ny) % f, (-nx) % f
    padded = np.pad(dose.values, ((0, py), (0, px)))
    blocks = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).max(axis=(1, 3))
    shift = (f - 1) / 2 * dose.pixel_m  # a block's centre
    origin = (dose.origin_m[0] + shift, dose.origin_m[1] + shift)
    return DoseMap(blocks, origin, dose.pixel_m * f)
