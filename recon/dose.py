"""Radiation dose of overlapping ptychographic scans.

Following Vijayakumar et al., "Soft X-ray spectro-ptychography" at the HERMES beamline,
J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955, Sec. 4.3, Eqs. 1-5 and Fig. 7
(the equation and figure numbers below are theirs).

The overlap of two spots of radius ``R`` whose centres are ``d`` apart is the lens area
(Eq. 2) ``A(d) = 2 R^2 acos(d / 2R) - (d / 2) sqrt(4 R^2 - d^2)``. Summed over every
neighbour of a raster point (Eq. 4) and divided by the spot area (Eq. 5) it gives the weight
factor ``k``: the additional dose a point receives because of the overlap, as a multiple of
the dose of one exposure. ``k ~ pi R^2 / d^2 - 1`` for ``d << R`` (k ~ 78 at d = 0.2 R).

The absorbed dose of one exposure follows Howells et al. 2009
(doi:10.1016/j.elspec.2008.10.008): ``D = N_abs E / (rho A t)`` with the number of absorbed
photons ``N_abs = N0 (1 - exp(-mu t))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recon.geometry import EV_J
from recon.scan import raster_positions, raster_shape

#: Materials known by name: (chemical formula, density g/cm^3).
MATERIALS: dict[str, tuple[str, float]] = {
    "BN": ("BN", 2.1),
    "C": ("C", 2.0),
    "formvar": ("C5H8O2", 1.23),
    "PMMA": ("C5H8O2", 1.18),
    "Si3N4": ("Si3N4", 3.17),
    "permalloy": ("Ni0.81Fe0.19", 8.7),
    "Au": ("Au", 19.3),
    "protein": ("H50C30N9O10S1", 1.35),
}

#: Sample presets named after the simulator's samples (:mod:`simulators.samples`), with
#: short aliases: the material and thickness the dose is computed for (the dominant
#: absorber's typical path length through the structure).
SAMPLE_PRESETS: dict[str, tuple[str, float]] = {
    "bn-bamboo": ("BN", 100e-9),  # h-BN tubes 80-120 nm across
    "siemens-star": ("Au", 180e-9),  # 180 nm gold spokes
    "cnt-bundle": ("C", 150e-9),  # graphitic bundles 100-200 nm across
    "permalloy-rods": ("permalloy", 125e-9),  # Ni81Fe19 rods 100-150 nm across
}
#: Short names of the presets (``BN-1`` is a BN nanobamboo sample).
PRESET_ALIASES: dict[str, str] = {
    "bn": "bn-bamboo",
    "au": "siemens-star",
    "siemens": "siemens-star",
    "cnt": "cnt-bundle",
    "permalloy": "permalloy-rods",
    "py": "permalloy-rods",
}

#: Most scan points :func:`dose_report` maps (each one stamps its spot on the exposure map).
MAX_POINTS = 250_000
#: Most cells of any grid allocated here: the neighbours summed by :func:`weight_factor`
#: and the exposure map of :func:`dose_report` (which coarsens its pixels to stay below).
MAX_GRID_CELLS = 40_000_000
#: float64 arrays alive at once per grid cell or scan point (coordinates, distances, areas).
_BYTES_PER_CELL = 6 * 8


def _size(n_bytes: float) -> str:
    """``n_bytes`` in the largest binary unit that keeps the number >= 1 (``29.1 TiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def check_grid(n_cells: int, limit: int, what: str, hint: str) -> None:
    """Refuse a grid of more than ``limit`` cells before anything is allocated.

    Parameters
    ----------
    n_cells : cells (or points) the grid would have
    limit : the most allowed
    what : what the grid is, for the message (``"scan points (2001 x 2001)"``)
    hint : how to make it smaller, for the message

    Raises
    ------
    ValueError
        One line with the number of cells, the memory they would take and the limit.
    """
    if n_cells > limit:
        raise ValueError(
            f"{n_cells:,} {what} would need about {_size(n_cells * _BYTES_PER_CELL)}, more "
            f"than the limit of {limit:,}: {hint}"
        )


def check_scan_size(spot_m: float, step_m: float, area_m: float) -> None:
    """Refuse scans whose raster or neighbour grid is too large to compute (or not finite).

    Raises
    ------
    ValueError
        If spot, step or area is not finite and > 0, the raster has more than
        :data:`MAX_POINTS` points, or the neighbour grid of :func:`weight_factor` more than
        :data:`MAX_GRID_CELLS` cells.
    """
    if not all(math.isfinite(v) and v > 0 for v in (spot_m, step_m, area_m)):
        raise ValueError("spot, step and area must be finite and > 0")
    ny, nx = raster_shape(area_m, step_m)
    check_grid(
        ny * nx,
        MAX_POINTS,
        f"scan points ({ny:,} x {nx:,}, step {step_m:.3g} m over {area_m:.3g} m)",
        "increase the step or reduce the area",
    )
    _check_neighbours(step_m, spot_m)


def _check_neighbours(step_m: float, spot_m: float) -> None:
    side = 2 * int(math.ceil(spot_m / step_m)) + 1
    check_grid(
        side * side,
        MAX_GRID_CELLS,
        f"neighbour cells ({side:,} x {side:,}: spot {spot_m:.3g} m / step {step_m:.3g} m)",
        "increase the step (lower the overlap)",
    )


def lens_area(d: np.ndarray | float, radius: float) -> np.ndarray:
    """Overlap area of two circles of ``radius`` with centres ``d`` apart (Eq. 2).

    Parameters
    ----------
    d : centre distances (m), any shape
    radius : circle radius R (m)

    Returns
    -------
    area : float64 array of the shape of ``d`` (m^2); 0 where ``d >= 2 R``.
    """
    d = np.abs(np.asarray(d, dtype=np.float64))
    r = float(radius)
    inside = d < 2 * r
    dc = np.where(inside, d, 0.0)
    area = 2 * r**2 * np.arccos(dc / (2 * r)) - 0.5 * dc * np.sqrt(4 * r**2 - dc**2)
    return np.where(inside, area, 0.0)


def weight_factor(step_m: float, spot_m: float) -> float:
    """Weight factor ``k`` (Eqs. 3-5) of an infinite raster, far from its edges.

    Sums the overlap of one spot with every neighbour within ``2R`` (the spot itself
    excluded) and divides by ``pi R^2``.
    """
    if not (step_m > 0 and spot_m > 0 and math.isfinite(step_m) and math.isfinite(spot_m)):
        raise ValueError("step and spot must be finite and > 0")
    _check_neighbours(step_m, spot_m)
    r = spot_m / 2
    n = int(math.ceil(2 * r / step_m))
    i = np.arange(-n, n + 1)
    dist = step_m * np.hypot(*np.meshgrid(i, i, indexing="ij"))
    dist[n, n] = np.inf  # the spot itself is not an additional exposure
    return float(lens_area(dist, r).sum() / (math.pi * r**2))


def weight_factor_of_scan(positions_m: np.ndarray, spot_m: float) -> float:
    """Mean weight factor over the points of a finite scan (edges included).

    Parameters
    ----------
    positions_m : (N, 2) float64 probe centres (m)
    spot_m : spot diameter 2R (m)
    """
    pos = np.asarray(positions_m, dtype=np.float64)
    r = spot_m / 2
    total = 0.0
    for chunk in np.array_split(np.arange(len(pos)), max(1, len(pos) // 512)):
        d = np.hypot(*(pos[chunk, None, :] - pos[None, :, :]).transpose(2, 0, 1))
        d[np.arange(len(chunk)), chunk] = np.inf
        total += lens_area(d, r).sum()
    return float(total / (len(pos) * math.pi * r**2))


def exposure_map(
    positions_m: np.ndarray, spot_m: float, area_m: float, pixel_m: float
) -> np.ndarray:
    """Number of exposures of each pixel of the scanned area (Fig. 7c, d).

    Parameters
    ----------
    positions_m : (N, 2) float64 spot centres (y, x) in metres, centred on the area
    spot_m : spot diameter (m); a pixel is exposed when its centre is within the spot
    area_m : side of the square area mapped (m)
    pixel_m : map pixel size (m)

    Returns
    -------
    counts : (M, M) int32, M = round(area / pixel)
    """
    m = max(1, int(round(area_m / pixel_m)))
    coords = (np.arange(m) - (m - 1) / 2) * pixel_m
    counts = np.zeros((m, m), dtype=np.int32)
    r = spot_m / 2
    rad = int(math.ceil(r / pixel_m)) + 1
    for y, x in np.asarray(positions_m):
        cy, cx = int(round(y / pixel_m + (m - 1) / 2)), int(round(x / pixel_m + (m - 1) / 2))
        y0, y1 = max(cy - rad, 0), min(cy + rad + 1, m)
        x0, x1 = max(cx - rad, 0), min(cx + rad + 1, m)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = coords[y0:y1, None] - y
        xx = coords[None, x0:x1] - x
        counts[y0:y1, x0:x1] += (yy**2 + xx**2 <= r**2 * (1 + 1e-9)).astype(np.int32)
    return counts


def material_properties(material: str) -> tuple[str, float]:
    """(chemical formula, density g/cm^3) of a material known by name.

    xraydb's materials table answers names it has (``kapton``, ``silicon nitride``, ``pmma``;
    the match is on the material's name, not on a formula, so ``C`` stays amorphous carbon
    rather than xraydb's diamond); the project's :data:`MATERIALS` answer the short names.

    Raises
    ------
    ValueError
        One line naming the project's materials when neither knows the name.
    """
    import xraydb

    known = xraydb.find_material(material) if material else None
    if known is not None and known.name.lower() == material.lower():
        return known.formula, float(known.density)
    if material in MATERIALS:
        return MATERIALS[material]
    raise ValueError(
        f"unknown material {material!r}: use one of {', '.join(MATERIALS)} "
        "or a material name of xraydb (kapton, silicon nitride, ...)"
    )


def sample_preset(name: str) -> tuple[str, float] | None:
    """(material, thickness m) of the preset a sample name starts with, or None.

    ``bn-bamboo``, ``BN``, ``BN-1`` and ``bn_2`` are all the BN nanobamboo preset: the name,
    case-insensitive, is a preset or an alias, alone or followed by ``-``/``_`` and a
    suffix (the longest match wins).
    """
    key = name.strip().lower()
    names = {**{p: p for p in SAMPLE_PRESETS}, **PRESET_ALIASES}
    for candidate in sorted(names, key=len, reverse=True):
        if key == candidate or key.startswith((candidate + "-", candidate + "_")):
            return SAMPLE_PRESETS[names[candidate]]
    return None


def attenuation_per_m(material: str, energy_ev: float) -> float:
    """Linear attenuation coefficient mu (1/m) of a named material (off resonance, xraydb)."""
    import xraydb

    formula, density = material_properties(material)
    _, _, atlen_cm = xraydb.xray_delta_beta(formula, density, energy_ev)
    return 1.0 / (float(atlen_cm) * 1e-2)


def single_exposure_dose_gray(
    material: str, thickness_m: float, photons: float, spot_m: float, energy_ev: float
) -> float:
    """Dose (Gy) of one exposure of ``photons`` spread over a disc of diameter ``spot_m``."""
    _, density = material_properties(material)
    mu = attenuation_per_m(material, energy_ev)
    absorbed = photons * (1.0 - math.exp(-mu * thickness_m))
    area = math.pi * (spot_m / 2) ** 2
    mass = density * 1e3 * area * thickness_m  # kg
    return absorbed * energy_ev * EV_J / mass


@dataclass(frozen=True)
class DoseReport:
    """Overlap and dose figures of a raster scan (JSON-ready through :meth:`as_dict`)."""

    spot_m: float
    step_m: float
    area_m: float
    n_points: int
    overlap: float
    k: float
    k_scan: float
    max_exposures: int
    mean_exposures: float
    histogram_counts: list[int]
    histogram_exposures: list[int]
    dose_gray: float | None = None
    dose_gray_max: float | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def dose_report(
    spot_m: float,
    step_m: float,
    area_m: float,
    *,
    pixel_m: float | None = None,
    material: str | None = None,
    thickness_m: float | None = None,
    flux_ph_s: float | None = None,
    exposure_s: float | None = None,
    energy_ev: float | None = None,
) -> DoseReport:
    """Weight factor, exposure statistics and (given the sample and beam) the dose of a raster.

    ``dose_gray`` is the dose of a point far from the edges, ``(1 + k)`` single exposures;
    ``dose_gray_max`` uses the most exposed pixel of the map.

    Raises
    ------
    ValueError
        If the scan is too large to map (:func:`check_scan_size`, before any allocation) or
        the beam parameters are incomplete.
    """
    check_scan_size(spot_m, step_m, area_m)
    positions = raster_positions(area_m, step_m)
    pixel = pixel_m or min(step_m / 5, spot_m / 10)
    if (area_m / pixel) ** 2 > MAX_GRID_CELLS:
        pixel = area_m / math.sqrt(MAX_GRID_CELLS)
    counts = exposure_map(positions, spot_m, area_m, pixel)
    hist = np.bincount(counts.ravel())
    k = weight_factor(step_m, spot_m)
    dose = dose_max = None
    beam = (material, thickness_m, flux_ph_s, exposure_s, energy_ev)
    if any(v is not None for v in beam):
        if any(v is None for v in beam):
            raise ValueError("dose needs material, thickness, flux, exposure and energy together")
        single = single_exposure_dose_gray(
            material, thickness_m, flux_ph_s * exposure_s, spot_m, energy_ev
        )
        dose, dose_max = single * (1 + k), single * int(counts.max())
    return DoseReport(
        spot_m=spot_m,
        step_m=step_m,
        area_m=area_m,
        n_points=len(positions),
        overlap=1 - step_m / spot_m,
        k=k,
        k_scan=weight_factor_of_scan(positions, spot_m) if len(positions) <= 20000 else k,
        max_exposures=int(counts.max()),
        mean_exposures=float(counts.mean()),
        histogram_counts=[int(c) for c in hist],
        histogram_exposures=list(range(len(hist))),
        dose_gray=dose,
        dose_gray_max=dose_max,
    )
