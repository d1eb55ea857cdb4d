"""Scientific CMOS camera model (Tucsen Dhyana 95-like, soft X-ray, uncoated sensor).

A photon of energy ``E`` frees ``E / 3.65 eV`` electrons in silicon; the camera converts
electrons to counts (ADU) with a fixed gain, so counts per photon grow with energy. Each
frame is ``gain * Poisson(photons) + dark offset + read noise``, with hot pixels, 16-bit
saturation, a centred crop and on-chip-style binning (binned pixels sum their raw pixels).
The dark offset is ~2000 counts/s per raw pixel (about 200 counts in 100 ms), as measured
at HERMES (Vijayakumar et al., "Soft X-ray spectro-ptychography" at the HERMES beamline,
J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955, Sec. 2.4; Desjardins et al.
2020, doi:10.1107/S1600577520005809).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Mean energy to create one electron-hole pair in silicon (eV).
SILICON_PAIR_EV = 3.65


@dataclass
class SCMOSDetector:
    """sCMOS camera; all counts are per raw pixel unless stated.

    Attributes
    ----------
    sensor_pixels : sensor width and height (pixels)
    pixel_m : raw pixel pitch (m)
    bit_depth : ADC bits; a raw pixel saturates at ``2**bit_depth - 1``
    adu_per_electron : conversion gain (counts per electron)
    dark_rate : dark offset rate (counts / s / pixel)
    read_noise : read noise (counts rms / pixel)
    hot_pixel_fraction : fraction of raw pixels that are hot
    hot_pixel_rate : extra dark rate of a hot pixel (counts / s)
    seed : fixes the hot-pixel and offset pattern of this camera
    """

    sensor_pixels: int = 2048
    pixel_m: float = 11e-6
    bit_depth: int = 16
    adu_per_electron: float = 0.2
    dark_rate: float = 2000.0
    read_noise: float = 2.0
    hot_pixel_fraction: float = 2e-5
    hot_pixel_rate: float = 2.0e5
    seed: int = 12345
    _hot: np.ndarray | None = field(default=None, init=False, repr=False)
    _hot_binned: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def saturation(self) -> int:
        """Largest count of a raw pixel."""
        return 2**self.bit_depth - 1

    def quantum_efficiency(self, energy_ev: float) -> float:
        """Quantum efficiency of the uncoated back-illuminated sensor (0-1).

        A smooth model: ~0.5 at 100 eV rising to ~0.9 above 500 eV (thin dead layer).
        """
        return 0.9 - 0.4 * math.exp(-(energy_ev - 100.0) / 200.0)

    def counts_per_photon(self, energy_ev: float) -> float:
        """Mean counts (ADU) per incident photon at ``energy_ev``."""
        return (
            self.quantum_efficiency(energy_ev)
            * energy_ev
            / SILICON_PAIR_EV
            * (self.adu_per_electron)
        )

    def hot_pixels(self) -> np.ndarray:
        """(sensor_pixels, sensor_pixels) bool map of hot pixels (fixed for this camera)."""
        if self._hot is None:
            rng = np.random.default_rng(self.seed)
            n = self.sensor_pixels
            k = int(round(self.hot_pixel_fraction * n * n))
            hot = np.zeros(n * n, dtype=bool)
            hot[rng.choice(n * n, size=k, replace=False)] = True
            self._hot = hot.reshape(n, n)
        return self._hot

    def region(self, frame_size: int, binning: int) -> tuple[slice, slice]:
        """Raw-pixel slices of the centred crop that gives ``frame_size`` binned pixels."""
        span = frame_size * binning
        if span > self.sensor_pixels:
            raise ValueError(
                f"frame {frame_size} x binning {binning} = {span} pixels exceeds the "
                f"{self.sensor_pixels}-pixel sensor"
            )
        start = (self.sensor_pixels - span) // 2
        return slice(start, start + span), slice(start, start + span)

    def hot_pixel_count(self, frame_size: int, binning: int) -> np.ndarray:
        """(frame_size, frame_size) int: hot raw pixels inside each binned pixel."""
        key = (frame_size, binning)
        if key not in self._hot_binned:
            ys, xs = self.region(frame_size, binning)
            hot = self.hot_pixels()[ys, xs].astype(np.int32)
            binned = hot.reshape(frame_size, binning, frame_size, binning).sum(axis=(1, 3))
            binned.flags.writeable = False
            self._hot_binned[key] = binned
        return self._hot_binned[key]

    def mean_dark(self, exposure_s: float, frame_size: int, binning: int) -> np.ndarray:
        """(frame_size, frame_size) float64 expected dark frame (counts)."""
        base = self.dark_rate * exposure_s * binning**2
        return base + self.hot_pixel_rate * exposure_s * self.hot_pixel_count(frame_size, binning)

    def output_dtype(self, binning: int) -> type:
        """uint16 unbinned; uint32 binned (sums of 16-bit pixels)."""
        return np.uint16 if binning == 1 else np.uint32

    def acquire(
        self,
        photons: np.ndarray | None,
        energy_ev: float,
        exposure_s: float,
        binning: int,
        rng: np.random.Generator,
        frame_size: int | None = None,
    ) -> np.ndarray:
        """One frame in counts.

        Parameters
        ----------
        photons : (n, n) float expected photons per binned pixel, or None for a dark frame
        energy_ev : photon energy (eV)
        exposure_s : exposure time (s)
        binning : binning factor (binned pixel = binning x binning raw pixels, summed)
        rng : random generator (Poisson photon noise, read noise)
        frame_size : frame width when ``photons`` is None

        Returns
        -------
        frame : (n, n) uint16 (binning 1) or uint32 counts
        """
        n = photons.shape[-1] if photons is not None else int(frame_size)
        counts = self.mean_dark(exposure_s, n, binning)
        counts = counts + rng.normal(0.0, self.read_noise * binning, (n, n))
        if photons is not None:
            detected = rng.poisson(np.maximum(photons, 0) * self.quantum_efficiency(energy_ev))
            gain = energy_ev / SILICON_PAIR_EV * self.adu_per_electron
            counts += detected * gain
        full = self.saturation * binning**2
        np.clip(np.rint(counts), 0, full, out=counts)
        return counts.astype(self.output_dtype(binning))


def auto_binning(
    detector: SCMOSDetector,
    frame_size: int,
    energy_ev: float,
    distance_m: float,
    outermost_zone_width_m: float,
    margin: float = 1.15,
) -> int:
    """Smallest binning whose frame holds the zone plate's bright-field cone with ``margin``.

    See :func:`recon.geometry.binning_for_zone_plate_cone`.
    """
    from recon.geometry import binning_for_zone_plate_cone

    binning = binning_for_zone_plate_cone(
        energy_ev, distance_m, outermost_zone_width_m, frame_size, detector.pixel_m, margin
    )
    if frame_size * binning > detector.sensor_pixels:
        raise ValueError(
            f"a {frame_size}-pixel frame cannot hold the zone plate cone at {energy_ev} eV on a "
            f"{detector.sensor_pixels}-pixel sensor at {distance_m * 1e3:.1f} mm; "
            "use a smaller frame or a longer distance"
        )
    return binning
