"""Fresnel zone plate illumination: focal length, spot size <-> defocus, and the probe field.

The first diffraction order of a zone plate of diameter ``D`` and outermost zone width
``dr`` converges to a focus at ``f = D dr / lambda`` with numerical aperture
``NA = lambda / (2 dr)``. Its angular spectrum at the focus is the pupil: an annulus of
spatial frequencies between ``(cs / D) / (2 dr)`` and ``1 / (2 dr)`` (central stop
diameter ``cs``; the order-sorting aperture removes the other orders). The field at a
sample ``dz`` downstream of the focus is obtained by angular-spectrum propagation
(Goodman, *Introduction to Fourier Optics*, ch. 3.10). Far from focus it is an annulus of
outer diameter ``D |dz| / f`` and inner/outer ratio ``cs / D``; at focus the Rayleigh spot
is ``1.22 dr`` (Attwood, *Soft X-rays and EUV radiation*, doi:10.1017/CBO9781139164429).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from recon.geometry import wavelength_m


@dataclass(frozen=True)
class ZonePlate:
    """Fresnel zone plate optics (NeXus NXfresnel_zone_plate names, metres).

    Attributes
    ----------
    outer_diameter : zone plate diameter D (m)
    outermost_zone_width : outermost zone width dr (m)
    central_stop_diameter : central stop diameter cs (m); the annulus ratio is cs / D
    osa_diameter : order-sorting aperture diameter (m); blocks the zeroth and higher orders
    """

    outer_diameter: float = 240e-6
    outermost_zone_width: float = 50e-9
    central_stop_diameter: float = 72e-6
    osa_diameter: float = 50e-6

    def __post_init__(self) -> None:
        if self.outer_diameter <= 0 or self.outermost_zone_width <= 0:
            raise ValueError("zone plate diameter and outermost zone width must be > 0")
        if not 0 <= self.central_stop_diameter < self.outer_diameter:
            raise ValueError("central stop must be >= 0 and smaller than the zone plate")

    @property
    def stop_ratio(self) -> float:
        """Central stop ratio cs / D (inner/outer diameter of the defocused annulus)."""
        return self.central_stop_diameter / self.outer_diameter

    def focal_length_m(self, energy_ev: float) -> float:
        """First-order focal length ``f = D dr / lambda`` (m)."""
        return self.outer_diameter * self.outermost_zone_width / wavelength_m(energy_ev)

    def numerical_aperture(self, energy_ev: float) -> float:
        """``NA = lambda / (2 dr)`` (half-angle of the converging cone, rad)."""
        return wavelength_m(energy_ev) / (2 * self.outermost_zone_width)

    @property
    def focus_spot_m(self) -> float:
        """Rayleigh spot size at focus, ``1.22 dr`` (m)."""
        return 1.22 * self.outermost_zone_width

    def spot_size_m(self, defocus_m: float, energy_ev: float) -> float:
        """Spot diameter (m) at ``defocus_m`` from focus.

        Geometric annulus diameter ``D |dz| / f`` combined in quadrature with the focus spot,
        so the relation is smooth and invertible (:meth:`defocus_m`).
        """
        geometric = self.outer_diameter * abs(defocus_m) / self.focal_length_m(energy_ev)
        return math.hypot(geometric, self.focus_spot_m)

    def defocus_m(self, spot_m: float, energy_ev: float) -> float:
        """Defocus (m, >= 0, sample downstream of focus) that gives a spot of ``spot_m``.

        Raises
        ------
        ValueError
            If the spot is smaller than the focus spot ``1.22 dr``.
        """
        if spot_m < self.focus_spot_m * (1 - 1e-9):
            raise ValueError(
                f"spot {spot_m * 1e9:.1f} nm is smaller than the focus spot "
                f"{self.focus_spot_m * 1e9:.1f} nm of this zone plate"
            )
        geometric = math.sqrt(max(spot_m**2 - self.focus_spot_m**2, 0.0))
        return geometric * self.focal_length_m(energy_ev) / self.outer_diameter


def frequency_grid(n: int, pixel_m: float, xp: ModuleType = np) -> tuple:
    """Spatial frequencies (1/m) of an ``n x n`` grid, unshifted FFT order.

    Returns
    -------
    (ky, kx) : broadcastable float64 arrays of shape (n, 1) and (1, n).
    """
    k = xp.fft.fftfreq(n, d=pixel_m)
    return k[:, None], k[None, :]


def angular_spectrum(k2: Any, wavelength_m: float, dz_m: float, xp: ModuleType = np) -> Any:
    """Angular-spectrum transfer function ``exp(2 pi i dz (k_z - 1/lambda))`` of free space.

    Parameters
    ----------
    k2 : (ny, nx) float64 squared spatial frequencies ``ky^2 + kx^2`` (1/m^2), FFT order
    wavelength_m : wavelength (m)
    dz_m : propagation distance (m, downstream > 0)

    Returns
    -------
    (ny, nx) complex128 (evanescent frequencies get ``k_z = 0``)
    """
    kz = xp.sqrt(xp.maximum(1.0 / wavelength_m**2 - k2, 0.0))
    return xp.exp(2j * math.pi * dz_m * (kz - 1.0 / wavelength_m))


def zone_plate_probe(
    zp: ZonePlate,
    energy_ev: float,
    defocus_m: float,
    shape: int | tuple[int, int],
    pixel_m: float,
    xp: ModuleType = np,
) -> np.ndarray:
    """Complex probe field at ``defocus_m`` downstream of the zone plate focus.

    Parameters
    ----------
    zp : zone plate optics
    energy_ev : photon energy (eV)
    defocus_m : sample distance downstream of the focus (m); negative is upstream
    shape : probe array shape (ny, nx) or n for square
    pixel_m : sample-plane pixel size (m)
    xp : array module (numpy or cupy)

    Returns
    -------
    probe : complex64 array of ``shape``, centred, normalised to ``sum(|probe|^2) = 1``.

    Raises
    ------
    ValueError
        If the pixel is too coarse to sample the zone plate's numerical aperture.
    """
    ny, nx = (shape, shape) if isinstance(shape, int) else shape
    lam = wavelength_m(energy_ev)
    k_out = 1.0 / (2.0 * zp.outermost_zone_width)
    k_in = k_out * zp.stop_ratio
    if k_out > 0.5 / pixel_m:
        raise ValueError(
            f"pixel {pixel_m * 1e9:.1f} nm cannot sample the zone plate cone "
            f"(needs < {zp.outermost_zone_width * 1e9:.1f} nm)"
        )
    ky = xp.fft.fftfreq(ny, d=pixel_m)[:, None]
    kx = xp.fft.fftfreq(nx, d=pixel_m)[None, :]
    k2 = ky**2 + kx**2
    kr = xp.sqrt(k2)
    # Soft-edged annulus (half a frequency bin) to limit ringing of the hard pupil edges.
    dk = 0.5 / (max(ny, nx) * pixel_m)
    outer = xp.clip((k_out - kr) / dk + 0.5, 0.0, 1.0)
    inner = xp.clip((kr - k_in) / dk + 0.5, 0.0, 1.0) if k_in > 0 else 1.0
    pupil = outer * inner
    transfer = angular_spectrum(k2, lam, defocus_m, xp)
    field = xp.fft.fftshift(xp.fft.ifft2(pupil * transfer))
    field /= xp.sqrt(xp.sum(xp.abs(field) ** 2))
    return field.astype(xp.complex64)


def radial_profile(image: np.ndarray, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Azimuthal mean of a 2-D real image in one-pixel radial bins.

    Parameters
    ----------
    image : (ny, nx) float array
    centre : (cy, cx) in pixels; the array centre ``(ny // 2, nx // 2)`` by default

    Returns
    -------
    profile : float64 array, mean of ``image`` at integer radii 0, 1, 2, ...
    """
    ny, nx = image.shape
    cy, cx = centre if centre is not None else (ny // 2, nx // 2)
    y, x = np.indices(image.shape)
    r = np.rint(np.hypot(y - cy, x - cx)).astype(int)
    sums = np.bincount(r.ravel(), weights=np.asarray(image, dtype=float).ravel())
    counts = np.bincount(r.ravel())
    return sums / np.maximum(counts, 1)
