"""Frame engine of the simulated camera: diffraction for any stage, optics and beam state.

For the beam state at the start of an exposure (sample stage position, zone plate position,
energy, polarization, shutter, flux) the engine forms the exit wave ``P(r - r0) O(r)`` of the
zone-plate probe ``P`` (:func:`recon.probe.zone_plate_probe`, sub-pixel shifted in Fourier
space) and the sample transmission ``O`` (:mod:`simulators.samples`), propagates it to the
far field with an orthonormal FFT and hands ``|FFT|^2`` in photons to the sCMOS model
(:class:`simulators.detector.SCMOSDetector`), which adds Poisson noise, gain, dark offset
and read noise. The rendered object and probe are cached per (energy, polarization,
defocus, frame geometry), so a frame costs three FFTs of the frame size.

When the camera's region of interest is too small to hold the zone plate's cone (object
pixel larger than the outermost zone width), the field is computed on a finer grid and the
far field cropped to the detector, so the camera records only the part of the cone that
falls on it, as a real one would.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.backend import fft2c, ifft2c
from recon.geometry import wavelength_m
from recon.probe import ZonePlate, zone_plate_probe
from simulators.detector import SCMOSDetector

#: Radius (m) within which a misaligned OSA still passes the whole first order.
OSA_TOLERANCE_M = 10e-6


class CachedDetector(SCMOSDetector):
    """:class:`SCMOSDetector` that remembers its hot-pixel map per frame geometry.

    The camera's region rarely changes, so the binned hot-pixel counts (a sum over the
    whole region) are computed once per (frame size, binning) instead of once per frame.
    """

    def hot_pixel_count(self, frame_size: int, binning: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_hot_counts", {})
        key = (frame_size, binning)
        if key not in cache:
            cache[key] = super().hot_pixel_count(frame_size, binning)
        return cache[key]


@dataclass(frozen=True)
class BeamState:
    """Snapshot of the beamline at the start of an exposure (SI units).

    Attributes
    ----------
    energy_ev : photon energy (eV)
    polarization : undulator polarization, one of ``LH``, ``LV``, ``CL``, ``CR``
    sample_x_m, sample_y_m : sample stage position, coarse plus fine (m); the probe's
        position on the sample (x along object columns, y along rows)
    zp_x_m, zp_y_m : zone plate lateral position (m); shifts the probe on the sample
    zp_z_m : zone plate to sample distance (m); defocus is ``zp_z_m - f(E)``
    osa_offset_m : distance of the OSA centre from the optical axis (m)
    shutter_open : photons reach the sample
    flux_ph_s : photons per second in the focused beam (0 on a beam dump)
    """

    energy_ev: float
    polarization: str
    sample_x_m: float
    sample_y_m: float
    zp_x_m: float
    zp_y_m: float
    zp_z_m: float
    osa_offset_m: float
    shutter_open: bool
    flux_ph_s: float


@dataclass(frozen=True)
class FrameGeometry:
    """Detector geometry of one frame.

    Attributes
    ----------
    n : frame width and height in binned pixels
    binning : binning factor
    pixel_m : object pixel of the detector grid, ``lambda z / (n p b)`` (m)
    upsample : render grid is ``upsample`` times finer than the detector grid
    """

    n: int
    binning: int
    pixel_m: float
    upsample: int


class FrameEngine:
    """Computes camera frames from the physics of the current beam state.

    Parameters
    ----------
    sample : sample name for :func:`simulators.samples.make_sample`
    seed : seed of the sample model and of the photon/read noise
    area_m : side of the patterned sample area (m)
    distance_m : sample to detector distance (m)
    zone_plate : zone plate optics
    detector : camera model (a default :class:`CachedDetector` when None)
    cache_size : number of rendered objects and probes kept
    """

    def __init__(
        self,
        sample: str = "bn-bamboo",
        *,
        seed: int = 0,
        area_m: float = 4e-6,
        distance_m: float = 0.0513,
        zone_plate: ZonePlate | None = None,
        detector: SCMOSDetector | None = None,
        cache_size: int = 4,
    ) -> None:
        from simulators.samples import make_sample

        self.sample_name = sample
        self.sample = make_sample(sample, seed=seed, area_m=area_m)
        self.area_m = area_m
        self.distance_m = distance_m
        self.zone_plate = zone_plate or ZonePlate()
        self.detector = detector or CachedDetector()
        self.rng = np.random.default_rng(seed)
        self._cache_size = cache_size
        self._objects: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._probes: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    # -- geometry -------------------------------------------------------------------------
    def geometry(self, n: int, binning: int, energy_ev: float) -> FrameGeometry:
        """Object pixel of an ``n``-pixel frame at ``binning`` and the render upsampling."""
        self.detector.region(n, binning)  # raises if the crop does not fit the sensor
        pixel = wavelength_m(energy_ev) * self.distance_m / (n * self.detector.pixel_m * binning)
        # The zone plate cone needs a pixel below the outermost zone width (with 5 % margin).
        need = pixel * 1.05 / self.zone_plate.outermost_zone_width
        upsample = max(1, math.ceil(need - 1e-9))
        return FrameGeometry(n=n, binning=binning, pixel_m=pixel, upsample=upsample)

    def defocus_m(self, state: BeamState) -> float:
        """Sample distance downstream of the focus (m) for the state's zone plate z."""
        return state.zp_z_m - self.zone_plate.focal_length_m(state.energy_ev)

    # -- cached ingredients -----------------------------------------------------------------
    def _remember(self, cache: OrderedDict, key: tuple, value: Any) -> None:
        cache[key] = value
        while len(cache) > self._cache_size:
            cache.popitem(last=False)

    def probe_ft(self, state: BeamState, geom: FrameGeometry) -> np.ndarray:
        """(m, m) complex64 FFT of the unit-norm probe on the render grid, ``m = n upsample``."""
        m = geom.n * geom.upsample
        defocus = self.defocus_m(state)
        key = (round(state.energy_ev, 6), round(defocus, 12), m, geom.pixel_m / geom.upsample)
        with self._lock:
            hit = self._probes.get(key)
        if hit is not None:
            return hit
        probe = zone_plate_probe(
            self.zone_plate, state.energy_ev, defocus, m, geom.pixel_m / geom.upsample
        )
        value = fft2c(probe).astype(np.complex64)
        with self._lock:
            self._remember(self._probes, key, value)
        return value

    def object_window(self, state: BeamState, geom: FrameGeometry) -> tuple[np.ndarray, np.ndarray]:
        """Rendered sample transmission and its centre pixel (row, column).

        Returns
        -------
        obj : (H, W) complex64 transmission on the render grid, centred on the sample origin,
            covering the patterned area plus one frame
        centre : (2,) int64 pixel of the sample origin in ``obj``
        """
        m = geom.n * geom.upsample
        pixel = geom.pixel_m / geom.upsample
        key = (round(state.energy_ev, 6), state.polarization, m, pixel)
        with self._lock:
            hit = self._objects.get(key)
        if hit is not None:
            return hit
        side = int(math.ceil(1.2 * self.area_m / pixel)) + m + 8
        obj = self.sample.transmission(state.energy_ev, state.polarization, pixel, (side, side))
        value = (np.ascontiguousarray(obj, dtype=np.complex64), np.array([side // 2, side // 2]))
        with self._lock:
            self._remember(self._objects, key, value)
        return value

    # -- frames -------------------------------------------------------------------------------
    def osa_transmission(self, offset_m: float) -> float:
        """Fraction of the first order passed by an OSA ``offset_m`` off axis (0-1)."""
        excess = max(0.0, abs(offset_m) - OSA_TOLERANCE_M)
        return float(max(0.0, 1.0 - excess / OSA_TOLERANCE_M))

    def photons_on_sample(self, state: BeamState, exposure_s: float) -> float:
        """Photons in the probe during one exposure (0 with the shutter closed)."""
        if not state.shutter_open:
            return 0.0
        return state.flux_ph_s * exposure_s * self.osa_transmission(state.osa_offset_m)

    def expected_photons(self, state: BeamState, geom: FrameGeometry, exposure_s: float) -> Any:
        """(n, n) float32 expected photons per binned pixel, centred, before the camera."""
        n, up = geom.n, geom.upsample
        m = n * up
        photons = self.photons_on_sample(state, exposure_s)
        if photons <= 0:
            return np.zeros((n, n), np.float32)
        obj, centre = self.object_window(state, geom)
        pixel = geom.pixel_m / up
        # Top-left corner of the patch under the probe (render pixels).
        py = (state.sample_y_m + state.zp_y_m) / pixel + centre[0] - m // 2
        px = (state.sample_x_m + state.zp_x_m) / pixel + centre[1] - m // 2
        iy, ix = math.floor(py), math.floor(px)
        patch = _patch(obj, iy, ix, m)
        ky = np.fft.fftfreq(m).astype(np.float32)[:, None]
        kx = np.fft.fftfreq(m).astype(np.float32)[None, :]
        ramp = np.exp(-2j * np.pi * (ky * np.float32(py - iy) + kx * np.float32(px - ix)))
        probe = ifft2c(self.probe_ft(state, geom) * ramp.astype(np.complex64))
        probe *= np.float32(math.sqrt(photons))
        far = np.fft.fftshift(np.abs(fft2c(probe * patch)) ** 2)
        if up > 1:  # keep the part of the far field that falls on the detector
            lo = m // 2 - n // 2
            far = far[lo : lo + n, lo : lo + n]
        return far.astype(np.float32)

    def frame(
        self, state: BeamState, n: int, binning: int, exposure_s: float
    ) -> tuple[np.ndarray, FrameGeometry]:
        """One camera frame in counts, the beamline held still during the exposure.

        Parameters
        ----------
        state : beam state at the start of the exposure
        n : frame width in binned pixels
        binning : binning factor
        exposure_s : exposure (s)

        Returns
        -------
        frame : (n, n) uint16 (binning 1) or uint32 counts
        geom : the frame geometry used
        """
        return self.frame_along([state], n, binning, exposure_s)

    def frame_along(
        self, states: list[BeamState], n: int, binning: int, exposure_s: float
    ) -> tuple[np.ndarray, FrameGeometry]:
        """One camera frame exposed while the beamline went through ``states``.

        The exposure is split into ``len(states)`` equal parts, each lit as its state says
        (sample position, shutter, flux): a stage moving during the exposure blurs the
        frame (the intensities of the probe positions add up, incoherently), a shutter that
        closes part way darkens it. One state is a step-scan frame.

        Parameters
        ----------
        states : K >= 1 beam states at equally spaced times within the exposure
        n : frame width in binned pixels
        binning : binning factor
        exposure_s : whole exposure (s)

        Returns
        -------
        frame : (n, n) uint16 (binning 1) or uint32 counts
        geom : the frame geometry used
        """
        if not states:
            raise ValueError("a frame needs at least one beam state")
        first = states[0]
        geom = self.geometry(n, binning, first.energy_ev)
        part = exposure_s / len(states)
        photons: np.ndarray | None = None
        for state in states:
            if self.photons_on_sample(state, part) <= 0:
                continue
            lit = self.expected_photons(state, geom, part)
            photons = lit if photons is None else photons + lit
        if photons is None:
            counts = self.detector.acquire(
                None, first.energy_ev, exposure_s, binning, self.rng, frame_size=n
            )
        else:
            counts = self.detector.acquire(photons, first.energy_ev, exposure_s, binning, self.rng)
        return counts, geom


def _patch(obj: np.ndarray, iy: int, ix: int, m: int) -> np.ndarray:
    """(m, m) window of ``obj`` with top-left ``(iy, ix)``, edge values repeated outside."""
    h, w = obj.shape
    if 0 <= iy and iy + m <= h and 0 <= ix and ix + m <= w:
        return obj[iy : iy + m, ix : ix + m]
    rows = np.clip(np.arange(iy, iy + m), 0, h - 1)
    cols = np.clip(np.arange(ix, ix + m), 0, w - 1)
    return obj[np.ix_(rows, cols)]
