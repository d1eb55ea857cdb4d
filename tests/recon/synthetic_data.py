"""Small synthetic ptychography data sets for the reconstruction tests (seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from recon.cxi import Ptychogram
from recon.geometry import object_pixel_size_m
from recon.operators import PtychoOperator
from recon.probe import ZonePlate, zone_plate_probe

ENERGY = 700.0
DISTANCE = 0.05
N = 64
PIXEL = 25e-9  # object pixel
DET_PIXEL = 1.239841984e-6 / ENERGY * DISTANCE / (N * PIXEL)


@dataclass
class Synthetic:
    obj: np.ndarray  # (H, W) complex64 truth
    probe: np.ndarray  # (n, n) complex64 truth, sqrt(photons)
    positions: np.ndarray  # (M, 2) top-left corners (pixels)
    intensities: np.ndarray  # (M, n, n) float32, FFT order
    op: PtychoOperator

    def lit(self, illumination: np.ndarray, fraction: float = 0.3) -> np.ndarray:
        return illumination > fraction * illumination.max()


def make_object(shape, seed=0, phase=0.8, absorption=0.15):
    rng = np.random.default_rng(seed)
    ph = gaussian_filter(rng.standard_normal(shape), 2.0)
    ph *= phase / ph.std()
    am = gaussian_filter(rng.standard_normal(shape), 3.0)
    am = 1 - absorption * np.abs(am) / np.abs(am).max()
    return (am * np.exp(1j * ph)).astype(np.complex64)


def make(
    n_side=8,
    step=6.0,
    photons=1e6,
    seed=0,
    poisson=True,
    defocus=30e-6,
    phase=0.8,
    jitter=0.5,
):
    """Raster scan (step ``step`` pixels, spot ~40 px: ~85 % overlap) of a smooth object."""
    rng = np.random.default_rng(seed)
    size = int(N + step * (n_side - 1) + 16)
    obj = make_object((size, size), seed, phase)
    probe = zone_plate_probe(ZonePlate(), ENERGY, defocus, N, PIXEL) * np.float32(np.sqrt(photons))
    g = np.arange(n_side) * step + 8
    yy, xx = np.meshgrid(g, g, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1) + rng.uniform(-jitter, jitter, (n_side**2, 2))
    op = PtychoOperator(pos, (N, N), (size, size), subpixel=16)
    inten = op.intensities(obj, probe[None], centred=False)
    if poisson:
        inten = rng.poisson(inten).astype(np.float32)
    return Synthetic(obj, probe, pos, inten.astype(np.float32), op)


def ptychogram(s: Synthetic, dark_level=100.0, cpp=2.0, seed=0, zone_plate=True) -> Ptychogram:
    """Raw-camera version of a synthetic data set (centred frames, dark, gain)."""
    rng = np.random.default_rng(seed)
    frames = np.fft.fftshift(s.intensities, axes=(-2, -1)) * cpp + dark_level
    frames = np.rint(frames + rng.normal(0, 0.3, frames.shape)).astype(np.uint16)
    assert abs(object_pixel_size_m(ENERGY, DISTANCE, N, DET_PIXEL) - PIXEL) < 1e-15
    zp = ZonePlate()
    return Ptychogram(
        frames=frames,
        positions_m=s.positions * PIXEL,
        energy_ev=ENERGY,
        distance_m=DISTANCE,
        pixel_m=DET_PIXEL,
        dark=np.full(frames.shape[1:], dark_level, np.float32),
        counts_per_photon=cpp,
        zone_plate={
            "outer_diameter": zp.outer_diameter,
            "outermost_zone_width": zp.outermost_zone_width,
            "central_stop_diameter": zp.central_stop_diameter,
            "defocus": 30e-6,
        }
        if zone_plate
        else None,
    )
