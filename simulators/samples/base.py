"""The sample base class: seeded geometry projected into material layers on any pixel grid.

The projected transmission of a thin sample is

``T = prod_layers exp(-i k delta t) exp(-k beta t)``, ``k = 2 pi / lambda``

(projection approximation, e.g. Paganin, *Coherent X-Ray Optics*, OUP 2006,
doi:10.1093/acprof:oso/9780198567288.001.0001). Oriented materials (h-BN and graphitic
sheets) carry, per pixel, the in-plane tensor ``Q = int n n^T dz`` of their pi* orbital
direction ``n`` (the sheet normal), and the pi*/sigma* weights of ``optics.delta_beta`` are
``(1 - S) + 3 S |e.n|^2`` and ``(1 - S) + 3/2 S (1 - |e.n|^2)`` with ``S`` an order parameter
(Stohr, *NEXAFS Spectroscopy*, doi:10.1007/978-3-662-02853-7, ch. 9). Magnetic layers carry
``int (M.k) dz`` for XMCD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recon.geometry import wavelength_m
from simulators.optics import components
from simulators.polarization import helicity, tensor_weight
from simulators.shapes import Grid

#: Orientation labels of ``Sample.orientation_label``.
LABEL_BACKGROUND, LABEL_HORIZONTAL, LABEL_VERTICAL, LABEL_OBLIQUE = 0, 1, 2, 3


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


def membrane(material: str, thickness_m: float, grid: Grid) -> list[Layer]:
    """A uniform support membrane ``"{material} membrane"``; none when ``thickness_m <= 0``."""
    if thickness_m <= 0:
        return []
    return [Layer(f"{material} membrane", material, np.full(grid.shape, thickness_m))]


def make_grid(pixel_m: float, shape: tuple[int, int]) -> Grid:
    return Grid(float(pixel_m), (int(shape[0]), int(shape[1])))


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
        self._cache: dict[Grid, list[Layer]] = {}

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
        grid = make_grid(pixel_m, shape)
        if grid not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[grid] = self._render(grid)
        return self._cache[grid]

    def thickness_maps(self, pixel_m: float, shape: tuple[int, int]) -> dict[str, np.ndarray]:
        """Path length per material/orientation class.

        Returns
        -------
        dict name -> (ny, nx) float64 path length (m)
        """
        return {layer.name: layer.t for layer in self.layers(pixel_m, shape)}

    def orientation_label(self, pixel_m: float, shape: tuple[int, int]) -> np.ndarray:
        """(ny, nx) uint8: 0 background, 1 horizontal, 2 vertical, 3 oblique body."""
        return self._labels(make_grid(pixel_m, shape))

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
