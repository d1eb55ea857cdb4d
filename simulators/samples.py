"""Sample models of the seed paper: Siemens star, BN nanobamboo, CNT bundles, permalloy rods.

Each sample is a seeded list of analytic 3-D primitives (cylinders, shells, cones, capsules,
wedges) in metres; ``transmission`` projects them onto any pixel grid, so a stack whose
object pixel ``lambda z / (N p)`` changes with energy shows the same sample at every energy.
The projected transmission of a thin sample is

``T = prod_layers exp(-i k delta t) exp(-k beta t)``, ``k = 2 pi / lambda``

(projection approximation, e.g. Paganin, *Coherent X-Ray Optics*, OUP 2006,
doi:10.1093/acprof:oso/9780198567288.001.0001). Oriented materials (h-BN and graphitic
sheets) carry, per pixel, the in-plane tensor ``Q = int n n^T dz`` of their pi* orbital
direction ``n`` (the sheet normal), and the pi*/sigma* weights of ``optics.delta_beta`` are
``(1 - S) + 3 S |e.n|^2`` and ``(1 - S) + 3/2 S (1 - |e.n|^2)`` with ``S`` an order parameter
(Stohr, *NEXAFS Spectroscopy*, doi:10.1007/978-3-662-02853-7, ch. 9). Magnetic layers carry
``int (M.k) dz`` for XMCD. Geometry and sizes follow the seed paper (Vijayakumar et al.,
J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955, Sec. 2-3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Voronoi

from recon.geometry import wavelength_m
from simulators.optics import components, helicity, tensor_weight
from simulators.shapes import (
    Grid,
    chord,
    clip_segment,
    cone_sheet,
    local_frame,
    segment_distance,
    shell,
)

#: Orientation labels of ``Sample.orientation_label``.
LABEL_BACKGROUND, LABEL_HORIZONTAL, LABEL_VERTICAL, LABEL_OBLIQUE = 0, 1, 2, 3

#: Energy (eV) at which each sample is usually imaged (its resonance).
EDGE_ENERGY_EV: dict[str, float] = {
    "siemens-star": 280.0,
    "bn-bamboo": 192.0,
    "cnt-bundle": 285.2,
    "permalloy-rods": 706.0,
}


@dataclass
class Layer:
    """One projected material of a sample on a pixel grid.

    Attributes
    ----------
    name : key in ``thickness_maps`` (e.g. ``"h-BN wall"``)
    material : ``optics`` material name
    t : (ny, nx) float64 path length (m)
    q : (3, ny, nx) float64 ``Qxx, Qyy, Qxy`` (m) of the pi* orbital direction, or None
    order : order parameter ``S`` of the orientation (0 isotropic, 1 perfect)
    tm : (ny, nx) float64 ``int (M.k)/|M| dz`` (m), or None
    """

    name: str
    material: str
    t: np.ndarray
    q: np.ndarray | None = None
    order: float = 0.0
    tm: np.ndarray | None = None


def _classify(angle: float) -> int:
    a = math.degrees(angle) % 180.0
    if a < 30 or a > 150:
        return LABEL_HORIZONTAL
    if 60 < a < 120:
        return LABEL_VERTICAL
    return LABEL_OBLIQUE


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
        return _classify(self.angle)

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        u = np.array([math.cos(self.angle), math.sin(self.angle)])
        c = np.asarray(self.centre)
        return c - 0.5 * self.length * u, c + 0.5 * self.length * u

    def bbox(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        p0, p1 = self.ends()
        r = self.radius + margin
        return (
            min(p0[0], p1[0]) - r,
            max(p0[0], p1[0]) + r,
            min(p0[1], p1[1]) - r,
            max(p0[1], p1[1]) + r,
        )


def _place_rods(
    rng: np.random.Generator,
    half: float,
    angles: list[float | None],
    radius: Callable[[], float],
    length: Callable[[], float],
    gap: float,
) -> list[Rod]:
    """Place non-overlapping rods inside ``[-half, half]^2`` (``None`` angle = random)."""
    rods: list[Rod] = []
    for base in angles:
        for _ in range(200):
            ang = rng.uniform(0, math.pi) if base is None else base + rng.normal(0, 0.1)
            r = radius()
            ln = min(length(), 1.7 * (half - r))
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


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> Callable[[], float]:
    return lambda: float(rng.uniform(*lo_hi))


class Sample:
    """Base class: a seeded sample made of projected layers.

    Subclasses implement ``_render(grid) -> list[Layer]`` and ``_labels(grid)``.
    """

    name: str = "sample"

    def __init__(self, *, seed: int = 0, area_m: float = 2e-6) -> None:
        if not 50e-9 <= area_m <= 50e-6:
            raise ValueError(f"area_m must be in [50 nm, 50 um], got {area_m}")
        self.seed = int(seed)
        self.area_m = float(area_m)
        self._rng = np.random.default_rng(self.seed)
        self._cache: dict[tuple[float, tuple[int, int]], list[Layer]] = {}

    # -- to implement ---------------------------------------------------------------------
    def _render(self, grid: Grid) -> list[Layer]:
        raise NotImplementedError

    def _labels(self, grid: Grid) -> np.ndarray:
        return np.zeros(grid.shape, dtype=np.uint8)

    # -- public ---------------------------------------------------------------------------
    def extent_m(self) -> tuple[float, float]:
        """Size (height, width) of the region with structure, centred on the origin (m)."""
        return (self.area_m, self.area_m)

    def layers(self, pixel_m: float, shape: tuple[int, int]) -> list[Layer]:
        """Projected layers on a ``shape`` grid of ``pixel_m`` pixels (cached)."""
        if pixel_m <= 0:
            raise ValueError(f"pixel_m must be > 0, got {pixel_m}")
        key = (float(pixel_m), (int(shape[0]), int(shape[1])))
        if key not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._render(Grid(*key))
        return self._cache[key]

    def thickness_maps(self, pixel_m: float, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Path length per material/orientation class.

        Returns
        -------
        dict name -> (ny, nx) float64 path length (m)
        """
        return {layer.name: layer.t for layer in self.layers(pixel_m, shape)}

    def orientation_label(self, pixel_m: float, shape: tuple[int, int]) -> np.ndarray:
        """(ny, nx) uint8: 0 background, 1 horizontal, 2 vertical, 3 oblique body."""
        return self._labels(Grid(float(pixel_m), (int(shape[0]), int(shape[1]))))

    def optical_thickness(
        self, energy_ev: float, polarization: str, pixel_m: float, shape: tuple[int, int]
    ) -> np.ndarray:
        """``k (delta + i beta) t`` summed over layers: (ny, nx) complex128 (rad, nepers)."""
        k = 2 * math.pi / wavelength_m(energy_ev)
        h = helicity(polarization)
        total = np.zeros(shape, dtype=np.complex128)
        for layer in self.layers(pixel_m, shape):
            c = components(layer.material, energy_ev)
            n0 = complex(c.base[0][0], c.base[1][0])
            npi = complex(c.pi[0][0], c.pi[1][0])
            nsig = complex(c.sigma[0][0], c.sigma[1][0])
            t = layer.t
            if layer.q is not None and layer.order > 0:
                s = layer.order
                eqe = tensor_weight(polarization, *layer.q)
                t_pi = (1 - s) * t + 3 * s * eqe
                t_sig = (1 - s) * t + 1.5 * s * (t - eqe)
            else:
                t_pi = t_sig = t
            total += n0 * t + npi * t_pi + nsig * t_sig
            if layer.tm is not None and h != 0:
                total += h * complex(c.xmcd[0][0], c.xmcd[1][0]) * layer.tm
        return k * total

    def transmission(
        self, energy_ev: float, polarization: str, pixel_m: float, shape: tuple[int, int]
    ) -> np.ndarray:
        """Complex transmission ``exp(-i k delta t) exp(-k beta t)``.

        Parameters
        ----------
        energy_ev : photon energy (eV)
        polarization : ``"LH"``, ``"LV"``, ``"CL"`` or ``"CR"``
        pixel_m : object pixel size (m)
        shape : (ny, nx); pixel (ny//2, nx//2) is the sample origin

        Returns
        -------
        (ny, nx) complex64
        """
        tau = self.optical_thickness(energy_ev, polarization, pixel_m, shape)
        return np.exp(-1j * tau.real - tau.imag).astype(np.complex64)


# ---------------------------------------------------------------------------------------------
# Supports
# ---------------------------------------------------------------------------------------------


def _membrane(name: str, material: str, thickness: float, grid: Grid) -> Layer:
    return Layer(name, material, np.full(grid.shape, thickness))


@dataclass(frozen=True)
class LacyWeb:
    """Lacy carbon: a random web (Voronoi edges) of cylindrical strands with holes."""

    segments: tuple[tuple[np.ndarray, np.ndarray, float], ...]

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        half: float,
        cell_m: float,
        diameter_range: tuple[float, float],
    ) -> LacyWeb:
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
            win = grid.window(
                min(p0[0], p1[0]) - r,
                max(p0[0], p1[0]) + r,
                min(p0[1], p1[1]) - r,
                max(p0[1], p1[1]) + r,
            )
            if win is None:
                continue
            sl, x, y = win
            d, _ = segment_distance(x, y, tuple(p0), tuple(p1))
            np.maximum(t[sl], chord(d, r), out=t[sl])
        return t


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


class SiemensStar(Sample):
    """Gold Siemens star (resolution target) on a Si3N4 membrane.

    Parameters
    ----------
    n_spokes : number of gold spokes
    thickness_m : gold thickness (150-200 nm)
    radius_m : outer radius, default ``area_m / 2``
    membrane_m : Si3N4 membrane thickness (m), 0 for none
    """

    name = "siemens-star"

    def __init__(
        self,
        *,
        seed: int = 0,
        area_m: float = 2e-6,
        n_spokes: int = 36,
        thickness_m: float = 180e-9,
        radius_m: float | None = None,
        membrane_m: float = 50e-9,
    ) -> None:
        super().__init__(seed=seed, area_m=area_m)
        if n_spokes < 2:
            raise ValueError("n_spokes must be >= 2")
        self.n_spokes = int(n_spokes)
        self.thickness_m = float(thickness_m)
        self.radius_m = float(radius_m) if radius_m is not None else area_m / 2
        self.membrane_m = float(membrane_m)
        self.rotation = float(self._rng.uniform(0, 2 * math.pi / self.n_spokes))

    def _coverage(self, grid: Grid) -> np.ndarray:
        x, y = grid.full()
        r = np.hypot(x, y)
        period = 2 * math.pi / self.n_spokes
        phi = np.arctan2(y, x) - self.rotation
        psi = (phi + period / 2) % period - period / 2
        d = r * np.sin(period / 4 - np.abs(psi))  # signed distance to the spoke edge
        p = grid.pixel_m
        cov = np.clip(0.5 + d / p, 0, 1) * np.clip(0.5 + (self.radius_m - r) / p, 0, 1)
        return cov

    def _render(self, grid: Grid) -> list[Layer]:
        layers = [Layer("Au", "gold", self.thickness_m * self._coverage(grid))]
        if self.membrane_m > 0:
            layers.append(_membrane("Si3N4 membrane", "Si3N4", self.membrane_m, grid))
        return layers

    def _labels(self, grid: Grid) -> np.ndarray:
        return (self._coverage(grid) > 0.5).astype(np.uint8) * LABEL_OBLIQUE


@dataclass(frozen=True)
class Bamboo:
    """A BN nanobamboo: a cylindrical shell with conical panes at the sub-unit interfaces."""

    rod: Rod
    r_in: float
    panes: tuple[float, ...]  # axial apex positions (m, from the centre)
    kappa: float  # cone slope: axial shift per radius
    pane_width: float  # axial thickness of the conical pane (m)


class _TubeSample(Sample):
    """Shared rendering of oriented shells (BN nanobamboo, CNT bundles)."""

    material = "h-BN"
    order = 0.5
    tubes: list[Bamboo]

    def _tube_layers(self, grid: Grid) -> tuple[Layer, Layer]:
        ny, nx = grid.shape
        tw, tp = np.zeros(grid.shape), np.zeros(grid.shape)
        qw, qp = np.zeros((3, ny, nx)), np.zeros((3, ny, nx))
        for tube in self.tubes:
            rod = tube.rod
            win = grid.window(*rod.bbox())
            if win is None:
                continue
            sl, x, y = win
            a, rho = local_frame(x, y, rod.centre, rod.angle)
            inside = np.abs(a) <= rod.length / 2
            t, t_vv = shell(rho, rod.radius, tube.r_in)
            t, t_vv = t * inside, t_vv * inside
            c, s = math.cos(rod.angle), math.sin(rod.angle)
            vv = (s * s, c * c, -s * c)  # v = (-s, c)
            uu = (c * c, s * s, s * c)
            tw[sl] += t
            for i in range(3):
                qw[(i, *sl)] += vv[i] * t_vv
            if tube.panes:
                pane = np.zeros_like(t)
                for apex in tube.panes:
                    pane += cone_sheet(a, rho, apex, tube.kappa, tube.pane_width, tube.r_in)
                pane *= inside
                k2 = tube.kappa**2
                wu, wv = 1 / (1 + k2), 0.5 * k2 / (1 + k2)
                tp[sl] += pane
                for i in range(3):
                    qp[(i, *sl)] += (wu * uu[i] + wv * vv[i]) * pane
        m = self.material
        return (
            Layer(f"{m} wall", m, tw, qw, self.order),
            Layer(f"{m} pane", m, tp, qp, self.order),
        )

    def _labels(self, grid: Grid) -> np.ndarray:
        lab = np.zeros(grid.shape, dtype=np.uint8)
        for tube in self.tubes:
            rod = tube.rod
            win = grid.window(*rod.bbox())
            if win is None:
                continue
            sl, x, y = win
            a, rho = local_frame(x, y, rod.centre, rod.angle)
            body = (np.abs(a) <= rod.length / 2) & (np.abs(rho) < rod.radius)
            lab[sl][body] = rod.label
        return lab


class BNBamboo(_TubeSample):
    """Boron nitride nanobamboo on lacy carbon (seed paper Sec. 2.2, 3.2, Fig. 1).

    Tubes 80-120 nm in diameter with walls of 16-40 nm whose sheets run along the axis
    (pi* orbitals radial), divided every 100-200 nm by conical panes 25-30 nm thick whose
    sheets lie across the axis (pi* orbitals along it). Roughly horizontal, vertical and
    oblique tubes lie on a lacy carbon web of 20-50 nm strands with open holes.

    Parameters
    ----------
    n_horizontal, n_vertical, n_oblique : number of tubes of each orientation
    diameter_range_m, wall_range_m, length_range_m, pane_period_range_m, pane_width_range_m
    order : orientation order ``S`` of the BN sheets
    lacy_cell_m : mean hole size of the lacy carbon; ``lacy_diameter_range_m`` its strands
    """

    name = "bn-bamboo"
    material = "h-BN"

    def __init__(
        self,
        *,
        seed: int = 0,
        area_m: float = 2e-6,
        n_horizontal: int = 2,
        n_vertical: int = 2,
        n_oblique: int = 1,
        diameter_range_m: tuple[float, float] = (80e-9, 120e-9),
        wall_range_m: tuple[float, float] = (16e-9, 40e-9),
        length_range_m: tuple[float, float] = (0.6e-6, 1.4e-6),
        pane_period_range_m: tuple[float, float] = (100e-9, 200e-9),
        pane_width_range_m: tuple[float, float] = (25e-9, 30e-9),
        order: float = 0.5,
        lacy_cell_m: float = 350e-9,
        lacy_diameter_range_m: tuple[float, float] = (20e-9, 50e-9),
    ) -> None:
        super().__init__(seed=seed, area_m=area_m)
        if not 0 <= order <= 1:
            raise ValueError("order must be in [0, 1]")
        self.order = float(order)
        rng = self._rng
        half = area_m / 2
        angles: list[float | None] = (
            [0.0] * n_horizontal + [math.pi / 2] * n_vertical + [None] * n_oblique
        )
        rods = _place_rods(
            rng,
            half,
            angles,
            lambda: 0.5 * float(rng.uniform(*diameter_range_m)),
            _uniform(rng, length_range_m),
            gap=40e-9,
        )
        self.tubes = []
        for rod in rods:
            wall = min(float(rng.uniform(*wall_range_m)), 0.7 * rod.radius)
            period = float(rng.uniform(*pane_period_range_m))
            n = int(rod.length // period)
            start = -0.5 * (n - 1) * period
            panes = tuple(
                start + i * period + float(rng.normal(0, 0.05 * period)) for i in range(n)
            )
            kappa = float(rng.uniform(0.4, 0.8)) * float(rng.choice([-1.0, 1.0]))
            self.tubes.append(
                Bamboo(
                    rod, rod.radius - wall, panes, kappa, float(rng.uniform(*pane_width_range_m))
                )
            )
        self.web = LacyWeb.random(rng, half, lacy_cell_m, lacy_diameter_range_m)

    def _render(self, grid: Grid) -> list[Layer]:
        wall, pane = self._tube_layers(grid)
        return [wall, pane, Layer("lacy carbon", "amorphous-carbon", self.web.render(grid))]


class CNTBundle(_TubeSample):
    """Carbon nanotube bundles on a formvar or Si3N4 membrane (seed paper Sec. 2.1, 3.1).

    Bundles 100-200 nm in diameter modelled as concentric graphitic shells around a small
    hollow core: the pi* orbitals are radial, so pi* absorbs most for E perpendicular to the
    bundle axis, like the BN walls.

    Parameters
    ----------
    membrane : ``"formvar"`` or ``"si3n4"``
    membrane_m : its thickness; default 30 nm formvar, 5 nm Si3Nx (as in the paper)
    """

    name = "cnt-bundle"
    material = "cnt"

    def __init__(
        self,
        *,
        seed: int = 0,
        area_m: float = 2e-6,
        n_horizontal: int = 2,
        n_vertical: int = 2,
        n_oblique: int = 1,
        diameter_range_m: tuple[float, float] = (100e-9, 200e-9),
        core_fraction_range: tuple[float, float] = (0.15, 0.35),
        length_range_m: tuple[float, float] = (0.8e-6, 1.8e-6),
        order: float = 0.5,
        membrane: str = "formvar",
        membrane_m: float | None = None,
    ) -> None:
        super().__init__(seed=seed, area_m=area_m)
        mem = membrane.lower()
        if mem not in ("formvar", "si3n4"):
            raise ValueError(f"membrane must be 'formvar' or 'si3n4', got {membrane!r}")
        self.membrane = "formvar" if mem == "formvar" else "Si3N4"
        default = 30e-9 if mem == "formvar" else 5e-9
        self.membrane_m = float(default if membrane_m is None else membrane_m)
        self.order = float(order)
        rng = self._rng
        half = area_m / 2
        angles: list[float | None] = (
            [0.0] * n_horizontal + [math.pi / 2] * n_vertical + [None] * n_oblique
        )
        rods = _place_rods(
            rng,
            half,
            angles,
            lambda: 0.5 * float(rng.uniform(*diameter_range_m)),
            _uniform(rng, length_range_m),
            gap=40e-9,
        )
        self.tubes = [
            Bamboo(rod, rod.radius * float(rng.uniform(*core_fraction_range)), (), 0.0, 0.0)
            for rod in rods
        ]

    def _render(self, grid: Grid) -> list[Layer]:
        wall, _ = self._tube_layers(grid)
        wall.name = "cnt"
        mem = _membrane(f"{self.membrane} membrane", self.membrane, self.membrane_m, grid)
        return [wall, mem]


@dataclass(frozen=True)
class MagneticRod:
    """A permalloy rod (capsule) with end domains: ``M.k = m * sign * tanh(rho / w)``."""

    rod: Rod
    m: float
    end_length: float
    end_signs: tuple[float, float]


class PermalloyRods(Sample):
    """Permalloy (Ni81Fe19) nanorods on Si3N4 (seed paper Sec. 2.3, 3.3, Fig. 4).

    Rods 100-150 nm in diameter, 0.5-1.5 um long. The magnetisation lies along the rod
    (``M.k = 0``) except near each end, where the two halves across the width tilt out of
    the plane in opposite directions (``M.k = +m`` and ``-m``, ``m`` in ``m_range``), giving
    white/black XMCD at the terminations.
    """

    name = "permalloy-rods"

    def __init__(
        self,
        *,
        seed: int = 0,
        area_m: float = 2e-6,
        n_rods: int = 5,
        diameter_range_m: tuple[float, float] = (100e-9, 150e-9),
        length_range_m: tuple[float, float] = (0.5e-6, 1.5e-6),
        m_range: tuple[float, float] = (0.6, 1.0),
        membrane_m: float = 50e-9,
    ) -> None:
        super().__init__(seed=seed, area_m=area_m)
        rng = self._rng
        rods = _place_rods(
            rng,
            area_m / 2,
            [None] * n_rods,
            lambda: 0.5 * float(rng.uniform(*diameter_range_m)),
            _uniform(rng, length_range_m),
            gap=25e-9,
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
        for mr in self.rods:
            win = grid.window(*mr.rod.bbox())
            if win is None:
                continue
            sl, x, y = win
            a, rho = local_frame(x, y, mr.rod.centre, mr.rod.angle)
            core = max(mr.rod.length - 2 * mr.rod.radius, 0.0)
            d = np.sqrt(np.maximum(np.abs(a) - core / 2, 0.0) ** 2 + rho**2)
            yield mr, sl, a, rho, chord(d, mr.rod.radius)

    def magnetization_map(self, pixel_m: float, shape: tuple[int, int]) -> np.ndarray:
        """(ny, nx) float64 ``M.k / |M|`` (0 outside the rods)."""
        grid = Grid(float(pixel_m), (int(shape[0]), int(shape[1])))
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
        grid = Grid(float(pixel_m), (int(shape[0]), int(shape[1])))
        out = np.zeros(grid.shape, dtype=bool)
        for mr, sl, a, _, t in self._each(grid):
            out[sl] |= (t > 0) & (mr.rod.length / 2 - np.abs(a) < scale * mr.end_length)
        return out

    def _render(self, grid: Grid) -> list[Layer]:
        t = np.zeros(grid.shape)
        for _, sl, _, _, tr in self._each(grid):
            t[sl] += tr
        mk = self.magnetization_map(grid.pixel_m, grid.shape)
        layers = [Layer("permalloy", "permalloy", t, tm=t * mk)]
        if self.membrane_m > 0:
            layers.append(_membrane("Si3N4 membrane", "Si3N4", self.membrane_m, grid))
        return layers

    def _labels(self, grid: Grid) -> np.ndarray:
        lab = np.zeros(grid.shape, dtype=np.uint8)
        for mr, sl, _, _, t in self._each(grid):
            lab[sl][t > 0] = mr.rod.label
        return lab


SAMPLES: dict[str, type[Sample]] = {
    "siemens-star": SiemensStar,
    "bn-bamboo": BNBamboo,
    "cnt-bundle": CNTBundle,
    "permalloy-rods": PermalloyRods,
}


def make_sample(name: str, *, seed: int = 0, area_m: float = 2e-6, **params: object) -> Sample:
    """Build a sample by name.

    Parameters
    ----------
    name : one of ``SAMPLES``
    seed : random seed of the geometry
    area_m : side of the square region with structure (m)
    **params : sample-specific parameters (see each class)
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}: use one of {', '.join(SAMPLES)}")
    try:
        return SAMPLES[name](seed=seed, area_m=area_m, **params)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"bad parameter for sample {name!r}: {exc}") from exc


__all__ = [
    "EDGE_ENERGY_EV",
    "LABEL_BACKGROUND",
    "LABEL_HORIZONTAL",
    "LABEL_OBLIQUE",
    "LABEL_VERTICAL",
    "SAMPLES",
    "BNBamboo",
    "CNTBundle",
    "Layer",
    "PermalloyRods",
    "Sample",
    "SiemensStar",
    "make_sample",
]
