"""Simulate a ptychogram: sample x zone-plate probe -> far-field frames on the sCMOS camera.

The exit wave of each scan point is the probe (sub-pixel shifted in Fourier space) times
the sample transmission; the detector sees ``|FFT(exit wave)|^2`` (orthonormal FFT,
centred), in photons, then :class:`simulators.detector.SCMOSDetector` adds Poisson noise,
gain, dark offset, read noise, hot pixels and saturation. The result is a
:class:`recon.cxi.Ptychogram` with the averaged dark and the ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recon.backend import fft2c
from recon.cxi import Ptychogram
from recon.geometry import object_pixel_size_m, wavelength_m
from recon.probe import ZonePlate, zone_plate_probe
from recon.scan import scan_positions, step_from_overlap
from simulators.detector import SCMOSDetector, auto_binning
from simulators.samples import SAMPLES, make_sample

Polarization = Literal["LH", "LV", "CL", "CR"]
MAX_POINTS = 20_000


class SimulationParams(BaseModel):
    """Validated parameters of one simulated ptychogram (SI units, eV)."""

    model_config = ConfigDict(extra="forbid")

    sample: str = "bn-bamboo"
    energy_ev: float = Field(192.0, ge=100.0, le=2000.0)
    polarization: Polarization = "LH"
    spot_m: float = Field(1e-6, gt=0, le=20e-6)
    overlap: float = Field(0.9, ge=0.0, lt=1.0)
    area_m: float = Field(2e-6, gt=0, le=100e-6)
    exposure_s: float = Field(0.1, gt=0, le=100.0)
    frame_size: int = Field(256, ge=32, le=2048)
    seed: int = Field(1, ge=0)
    pattern: Literal["raster", "fermat"] = "raster"
    distance_m: float = Field(0.0513, ge=0.03, le=0.2)
    binning: int | None = Field(None, ge=1, le=16)
    flux_ph_s: float = Field(1e8, gt=0, le=1e12)
    jitter_m: float = Field(0.0, ge=0, le=1e-6)
    n_dark: int = Field(25, ge=1, le=1000)
    stage_offset_m: tuple[float, float] = (0.0, 0.0)
    zone_plate_diameter_m: float = Field(240e-6, gt=0)
    zone_width_m: float = Field(50e-9, gt=0)
    central_stop_m: float = Field(72e-6, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SimulationParams:
        if self.sample not in SAMPLES:
            raise ValueError(f"unknown sample {self.sample!r}: use one of {', '.join(SAMPLES)}")
        zp = self.zone_plate
        if self.spot_m < zp.focus_spot_m * 0.999:
            raise ValueError(
                f"spot {self.spot_m * 1e9:.0f} nm is smaller than the zone plate focus "
                f"{zp.focus_spot_m * 1e9:.0f} nm"
            )
        if self.spot_m > self.area_m + 20e-6:
            raise ValueError("spot is much larger than the scanned area")
        step = step_from_overlap(self.spot_m, self.overlap)
        n = (math.floor(self.area_m / step + 1e-9) + 1) ** 2
        if n > MAX_POINTS:
            raise ValueError(
                f"{n} scan points (step {step * 1e9:.1f} nm over {self.area_m * 1e6:g} um) "
                f"is more than {MAX_POINTS}; lower the overlap or the area"
            )
        return self

    @property
    def zone_plate(self) -> ZonePlate:
        return ZonePlate(
            outer_diameter=self.zone_plate_diameter_m,
            outermost_zone_width=self.zone_width_m,
            central_stop_diameter=self.central_stop_m,
        )

    @property
    def step_m(self) -> float:
        return step_from_overlap(self.spot_m, self.overlap)


def shift_probe_fourier(probe_ft: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Probe shifted by a sub-pixel ``(dy, dx)`` from its Fourier transform.

    The same shift as :func:`recon.operators.fourier_shift`, starting from the probe's
    transform (computed once per simulation) instead of the probe.

    Parameters
    ----------
    probe_ft : (n, n) complex, ``fft2c`` of the centred probe
    dy, dx : shift in pixels (|shift| <= 0.5 in use)

    Returns
    -------
    probe : (n, n) complex64
    """
    from recon.backend import ifft2c
    from recon.operators import shift_ramp

    ramp = shift_ramp(probe_ft.shape, [[dy, dx]])[0]
    return ifft2c(probe_ft * ramp).astype(np.complex64)


class Simulation:
    """Everything needed to produce frames of one ptychogram, computed once.

    Attributes
    ----------
    params : the validated parameters
    binning : detector binning used
    pixel_m : object pixel size (m)
    probe : (n, n) complex64 probe in sqrt(photons) per frame
    obj : (Hy, Hx) complex64 sample transmission
    positions_m : (N, 2) float64 probe positions on the sample (y, x) (m), stage offset added
    positions_px : (N, 2) float64 top-left corner of each frame's patch in ``obj`` (pixels)
    """

    def __init__(self, params: SimulationParams, detector: SCMOSDetector | None = None):
        self.params = p = params
        self.detector = detector or SCMOSDetector()
        zp = p.zone_plate
        n = p.frame_size
        self.binning = p.binning or auto_binning(
            self.detector, n, p.energy_ev, p.distance_m, p.zone_width_m
        )
        self.detector.region(n, self.binning)  # raises if the crop does not fit
        self.pixel_m = object_pixel_size_m(
            p.energy_ev, p.distance_m, n, self.detector.pixel_m * self.binning
        )
        self.defocus_m = zp.defocus_m(p.spot_m, p.energy_ev)
        rng = np.random.default_rng(p.seed)
        nominal = scan_positions(p.pattern, p.area_m, p.step_m)
        actual = nominal + (rng.normal(0, p.jitter_m, nominal.shape) if p.jitter_m else 0.0)
        photons = p.flux_ph_s * p.exposure_s
        self.probe = zone_plate_probe(zp, p.energy_ev, self.defocus_m, n, self.pixel_m)
        self.probe *= np.float32(math.sqrt(photons))
        self._probe_ft = fft2c(self.probe)
        # Object big enough for every patch, with a margin of 4 pixels.
        half = np.abs(actual).max(axis=0) / self.pixel_m if len(actual) else np.zeros(2)
        size = (2 * np.ceil(half) + n + 8).astype(int)
        self.obj_shape = (int(size[0]), int(size[1]))
        self.sample = make_sample(p.sample, seed=p.seed, area_m=p.area_m)
        self.obj = self.sample.transmission(
            p.energy_ev, p.polarization, self.pixel_m, self.obj_shape
        ).astype(np.complex64)
        centre = np.array(self.obj_shape, dtype=float) // 2
        self.positions_px = actual / self.pixel_m + centre - n // 2
        self.positions_m = actual + np.asarray(p.stage_offset_m)
        self._rng = rng

    @property
    def n_points(self) -> int:
        return len(self.positions_px)

    def expected_photons(self, index: int) -> np.ndarray:
        """(n, n) float32 expected photons of frame ``index`` (centred, before the camera)."""
        n = self.params.frame_size
        py, px = self.positions_px[index]
        iy, ix = int(math.floor(py)), int(math.floor(px))
        probe = shift_probe_fourier(self._probe_ft, py - iy, px - ix)
        exit_wave = probe * self.obj[iy : iy + n, ix : ix + n]
        return np.fft.fftshift(np.abs(fft2c(exit_wave)) ** 2).astype(np.float32)

    def frame(self, index: int) -> np.ndarray:
        """Camera frame of scan point ``index`` (counts, uint16 or uint32)."""
        p = self.params
        return self.detector.acquire(
            self.expected_photons(index), p.energy_ev, p.exposure_s, self.binning, self._rng
        )

    def dark_frame(self) -> np.ndarray:
        """Camera frame with the shutter closed (counts)."""
        p = self.params
        return self.detector.acquire(
            None, p.energy_ev, p.exposure_s, self.binning, self._rng, frame_size=p.frame_size
        )

    def frames(self) -> Iterator[np.ndarray]:
        for i in range(self.n_points):
            yield self.frame(i)

    def mask(self) -> np.ndarray:
        """(n, n) bool: binned pixels containing a known hot pixel."""
        return self.detector.hot_pixel_count(self.params.frame_size, self.binning) > 0

    def truth(self) -> dict:
        p = self.params
        return {
            "object": self.obj,
            "probe": self.probe,
            "object_pixel_size": self.pixel_m,
            "positions_px": self.positions_px,
            "sample": p.sample,
            "seed": p.seed,
            "photons_per_frame": p.flux_ph_s * p.exposure_s,
            "binning": self.binning,
            "wavelength": wavelength_m(p.energy_ev),
        }


def acquire(
    sim: Simulation, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Camera frames of every scan point, then ``n_dark`` dark frames, from ``sim``.

    Returns
    -------
    frames : (N, n, n) counts (the detector's output dtype)
    darks : (n_dark, n, n) counts, same dtype
    """
    n = sim.params.frame_size
    frames = np.empty((sim.n_points, n, n), dtype=sim.detector.output_dtype(sim.binning))
    for i in range(sim.n_points):
        frames[i] = sim.frame(i)
        if progress:
            progress(i + 1, sim.n_points)
    darks = np.stack([sim.dark_frame() for _ in range(sim.params.n_dark)]).astype(frames.dtype)
    return frames, darks


def ptychogram_of(sim: Simulation, frames: np.ndarray, dark: np.ndarray) -> Ptychogram:
    """The :class:`recon.cxi.Ptychogram` of ``sim``'s frames with the averaged ``dark``
    ((n, n) float32), its optics and its ground truth."""
    params = sim.params
    zp = params.zone_plate
    return Ptychogram(
        frames=frames,
        positions_m=sim.positions_m,
        energy_ev=params.energy_ev,
        distance_m=params.distance_m,
        pixel_m=sim.detector.pixel_m * sim.binning,
        mask=sim.mask(),
        dark=dark,
        counts_per_photon=sim.detector.counts_per_photon(params.energy_ev),
        zone_plate={
            "outer_diameter": zp.outer_diameter,
            "outermost_zone_width": zp.outermost_zone_width,
            "central_stop_diameter": zp.central_stop_diameter,
            "defocus": sim.defocus_m,
        },
        polarization=params.polarization,
        truth=sim.truth(),
    )


def simulate_ptychogram(
    progress: Callable[[int, int], None] | None = None, **kwargs: object
) -> Ptychogram:
    """Simulate one ptychogram; keyword arguments are :class:`SimulationParams` fields.

    Parameters
    ----------
    progress : called as ``progress(done, total)`` after each frame
    **kwargs : SimulationParams fields (``sample``, ``energy_ev``, ``polarization``,
        ``spot_m``, ``overlap``, ``area_m``, ``exposure_s``, ``frame_size``, ``seed``...)

    Returns
    -------
    Ptychogram with raw frames (N, n, n), the averaged dark of ``n_dark`` frames, the mask,
    the zone plate optics and the ground truth.
    """
    sim = Simulation(SimulationParams(**kwargs))
    frames, darks = acquire(sim, progress)
    dark = darks.mean(axis=0, dtype=np.float64).astype(np.float32)
    return ptychogram_of(sim, frames, dark)
