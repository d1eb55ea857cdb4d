"""sCMOS camera model: dark offset, Poisson statistics, gain, saturation, binning."""

import numpy as np
import pytest

from simulators.detector import SCMOSDetector, auto_binning


def test_dark_offset_is_about_200_counts_in_100_ms():
    det = SCMOSDetector()
    rng = np.random.default_rng(0)
    dark = det.acquire(None, 192.0, 0.1, 1, rng, frame_size=256)
    assert dark.dtype == np.uint16
    cold = ~(det.hot_pixel_count(256, 1) > 0)
    assert dark[cold].mean() == pytest.approx(200.0, rel=0.02)
    assert dark[cold].std() == pytest.approx(det.read_noise, rel=0.2)
    # Twice the exposure, twice the offset.
    dark2 = det.acquire(None, 192.0, 0.2, 1, rng, frame_size=256)
    assert dark2[cold].mean() == pytest.approx(400.0, rel=0.02)


def test_poisson_statistics_of_photon_counts():
    det = SCMOSDetector(read_noise=0.0)
    rng = np.random.default_rng(1)
    photons = np.full((256, 256), 50.0)
    energy = 706.0
    gain = det.counts_per_photon(energy) / det.quantum_efficiency(energy)  # counts / detected
    frames = np.stack([det.acquire(photons, energy, 0.1, 1, rng) for _ in range(4)])
    cold = ~(det.hot_pixel_count(256, 1) > 0)
    detected = (frames[:, cold] - det.mean_dark(0.1, 256, 1)[cold]) / gain
    mean = 50.0 * det.quantum_efficiency(energy)
    assert detected.mean() == pytest.approx(mean, rel=0.01)
    # Poisson: variance equals the mean.
    assert detected.var() == pytest.approx(mean, rel=0.05)
    # Counts per photon grow with energy (more electrons per photon).
    assert det.counts_per_photon(706.0) > 3 * det.counts_per_photon(192.0)


def test_saturation_and_binning():
    det = SCMOSDetector()
    rng = np.random.default_rng(2)
    bright = np.full((64, 64), 1e6)
    frame = det.acquire(bright, 706.0, 0.1, 1, rng)
    assert frame.max() == det.saturation
    binned = det.acquire(bright, 706.0, 0.1, 4, rng)
    assert binned.dtype == np.uint32
    assert binned.max() == det.saturation * 16
    dark4 = det.acquire(None, 192.0, 0.1, 4, rng, frame_size=64)
    cold = ~(det.hot_pixel_count(64, 4) > 0)
    assert dark4[cold].mean() == pytest.approx(16 * 200.0, rel=0.02)


def test_hot_pixels_are_fixed_and_bright():
    det = SCMOSDetector(hot_pixel_fraction=1e-3)
    hot = det.hot_pixel_count(512, 1) > 0
    assert 0 < hot.sum() < 0.01 * hot.size
    assert np.array_equal(hot, SCMOSDetector(hot_pixel_fraction=1e-3).hot_pixel_count(512, 1) > 0)
    dark = det.acquire(None, 192.0, 0.1, 1, np.random.default_rng(3), frame_size=512)
    assert dark[hot].mean() > 10 * dark[~hot].mean()


def test_crop_larger_than_sensor_refused():
    det = SCMOSDetector()
    with pytest.raises(ValueError, match="exceeds"):
        det.region(1024, 4)


def test_auto_binning_fits_the_zone_plate_cone():
    det = SCMOSDetector()
    # 192 eV at 51.3 mm: the cone (NA = lambda / 2 dr = 0.065) needs ~2.7 x 256 pixels.
    assert auto_binning(det, 256, 192.0, 0.0513, 50e-9) == 3
    assert auto_binning(det, 256, 706.0, 0.0513, 50e-9) == 1
    with pytest.raises(ValueError, match="cannot hold"):
        auto_binning(det, 1024, 150.0, 0.0513, 20e-9)
