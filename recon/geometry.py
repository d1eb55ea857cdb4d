"""Geometry of far-field ptychography: wavelength, pixel sizes, scattering angles, resolution.

Conventions follow Vijayakumar et al., "Soft X-ray spectro-ptychography" at the HERMES
beamline, J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955: the scattering vector
is ``q = (4 pi / lambda) sin(theta)`` with ``theta`` the angle from the optical axis to the
edge of the detector region used, and the expected resolution is ``lambda / sin(theta)``
(equivalently ``4 pi / q_max``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: h c in eV metres (CODATA 2018).
HC_EV_M = 1.239841984e-6
#: electron volt in joules.
EV_J = 1.602176634e-19


def wavelength_m(energy_ev: float) -> float:
    """Photon wavelength in metres for a photon energy in eV."""
    if energy_ev <= 0:
        raise ValueError(f"energy must be > 0 eV, got {energy_ev}")
    return HC_EV_M / energy_ev


def energy_ev_from_wavelength(wavelength: float) -> float:
    """Photon energy in eV for a wavelength in metres."""
    return HC_EV_M / wavelength


def object_pixel_size_m(
    energy_ev: float, distance_m: float, n_pixels: int, detector_pixel_m: float
) -> float:
    """Object (sample-plane) pixel size ``lambda z / (N p)`` in metres.

    Parameters
    ----------
    energy_ev : photon energy (eV)
    distance_m : sample-detector distance z (m)
    n_pixels : frame width N in detector pixels (after binning)
    detector_pixel_m : detector pixel pitch p (m) (after binning)
    """
    return wavelength_m(energy_ev) * distance_m / (n_pixels * detector_pixel_m)


def max_scattering_angle_rad(n_pixels: int, detector_pixel_m: float, distance_m: float) -> float:
    """Angle from the axis to the edge of an ``n_pixels`` wide centred detector region."""
    return math.atan(0.5 * n_pixels * detector_pixel_m / distance_m)


def q_max_inv_nm(
    energy_ev: float, n_pixels: int, detector_pixel_m: float, distance_m: float
) -> float:
    """Maximum scattering vector ``(4 pi / lambda) sin(theta)`` in nm^-1.

    As in Vijayakumar et al. 2023, Table 1.
    """
    theta = max_scattering_angle_rad(n_pixels, detector_pixel_m, distance_m)
    return 4 * math.pi / (wavelength_m(energy_ev) * 1e9) * math.sin(theta)


def expected_resolution_m(
    energy_ev: float, n_pixels: int, detector_pixel_m: float, distance_m: float
) -> float:
    """Expected resolution ``lambda / sin(theta)`` in metres (Vijayakumar et al. 2023, Table 1)."""
    theta = max_scattering_angle_rad(n_pixels, detector_pixel_m, distance_m)
    return wavelength_m(energy_ev) / math.sin(theta)


def resolution_from_q_max_m(q_max_per_nm: float) -> float:
    """Resolution ``4 pi / q_max`` in metres, the same quantity from the Table 1 q column."""
    return 4 * math.pi / q_max_per_nm * 1e-9


@dataclass(frozen=True)
class DetectorGeometry:
    """A square, centred detector region used for reconstruction.

    Attributes
    ----------
    energy_ev : photon energy (eV)
    distance_m : sample-detector distance (m)
    n_pixels : frame width in (binned) pixels
    pixel_m : (binned) pixel pitch (m)
    """

    energy_ev: float
    distance_m: float
    n_pixels: int
    pixel_m: float

    @property
    def wavelength_m(self) -> float:
        return wavelength_m(self.energy_ev)

    @property
    def object_pixel_m(self) -> float:
        return object_pixel_size_m(self.energy_ev, self.distance_m, self.n_pixels, self.pixel_m)

    @property
    def q_max_inv_nm(self) -> float:
        return q_max_inv_nm(self.energy_ev, self.n_pixels, self.pixel_m, self.distance_m)

    @property
    def expected_resolution_m(self) -> float:
        return expected_resolution_m(self.energy_ev, self.n_pixels, self.pixel_m, self.distance_m)


def binning_for_zone_plate_cone(
    energy_ev: float,
    distance_m: float,
    outermost_zone_width_m: float,
    frame_size: int,
    detector_pixel_m: float,
    margin: float = 1.15,
) -> int:
    """Smallest detector binning whose frame holds the zone plate's bright-field cone.

    The cone half-angle is ``NA = lambda / (2 dr)``; a frame of ``N`` binned pixels of pitch
    ``b p`` holds it (with ``margin``) when the object pixel ``lambda z / (N b p)`` is at most
    ``dr / margin``, which is also the condition for sampling the probe.
    """
    need = (
        margin
        * wavelength_m(energy_ev)
        * distance_m
        / (outermost_zone_width_m * frame_size * detector_pixel_m)
    )
    return max(1, math.ceil(need - 1e-9))
