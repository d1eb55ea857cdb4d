"""Metrics and post-processing on images with known answers."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from recon.metrics import (
    frc,
    knife_edge_width,
    phase_correlation,
    poisson_llk,
    sharpness,
    snr,
)
from recon.operators import fourier_shift
from recon.postprocess import (
    crop_illuminated,
    illuminated_slices,
    phase_ramp,
    remove_phase_ramp,
)
from recon.spectro import optical_density


def _phase_object(seed=0, n=96):
    rng = np.random.default_rng(seed)
    ph = gaussian_filter(rng.standard_normal((n, n)), 3)
    return np.exp(1j * ph / ph.std()).astype(np.complex64)


def test_poisson_llk_values():
    i = np.array([[0.0, 1.0], [4.0, 9.0]])
    assert poisson_llk(i, i) == pytest.approx(0.0, abs=1e-9)
    m = np.full((2, 2), 2.0)
    expected = 2 * (2 + (1 * np.log(0.5) + 1) + (4 * np.log(2) - 2) + (9 * np.log(4.5) - 7)) / 4
    assert poisson_llk(i, m) == pytest.approx(expected)
    mask = np.array([[False, False], [False, True]])
    assert poisson_llk(i, m, mask) < poisson_llk(i, m)
    rng = np.random.default_rng(0)
    lam = rng.uniform(50, 100, (200, 200))
    assert poisson_llk(rng.poisson(lam), lam) == pytest.approx(1.0, abs=0.02)


def test_frc_identical_and_noisy():
    rng = np.random.default_rng(1)
    a = gaussian_filter(rng.standard_normal((128, 128)), 2)
    same = frc(a, a)
    assert same.frc[1:].min() > 0.999 and same.resolution_px == np.inf
    b1 = a + 0.05 * rng.standard_normal(a.shape)
    b2 = a + 0.05 * rng.standard_normal(a.shape)
    res = frc(b1, b2)
    assert 2 < res.resolution_px < 20
    # 1/2-bit threshold: ~1 at the centre, -> 0.1716 for large rings
    assert res.threshold[1] > 0.5 and 0.17 < res.threshold[-1] < 0.3
    assert res.threshold[2] > res.threshold[10] > res.threshold[-1]


def test_knife_edge_width_of_gaussian_edge():
    x = np.arange(200.0)
    sigma = 4.0
    profile = 0.5 * (1 + erf((x - 100.3) / (np.sqrt(2) * sigma)))
    # 20-80 % of a Gaussian-blurred edge is 2 * 0.8416 sigma
    assert knife_edge_width(profile) == pytest.approx(2 * 0.8416 * sigma, rel=0.01)
    assert knife_edge_width(profile[::-1]) == pytest.approx(2 * 0.8416 * sigma, rel=0.01)


def test_sharpness_and_snr():
    rng = np.random.default_rng(2)
    im = rng.standard_normal((64, 64))
    assert sharpness(im) > 10 * sharpness(gaussian_filter(im, 2))
    img = np.zeros((32, 32))
    img[8:16, 8:16] = 5.0
    img += rng.normal(0, 1.0, img.shape)
    sig = np.zeros(img.shape, bool)
    sig[8:16, 8:16] = True
    bg = np.zeros(img.shape, bool)
    bg[20:, 20:] = True
    assert snr(img, sig, bg) == pytest.approx(5.0, rel=0.3)


def test_phase_correlation_ignores_shift_ramp_and_offset():
    truth = _phase_object(3)
    y, x = np.indices(truth.shape)
    recon = fourier_shift(truth, 0.4, -0.3) * np.exp(1j * (0.05 * y - 0.02 * x + 1.0))
    region = np.zeros(truth.shape, bool)
    region[16:80, 16:80] = True
    assert phase_correlation(recon, truth, region) > 0.98
    other = _phase_object(4)
    assert abs(phase_correlation(other, truth, region)) < 0.3


def test_remove_phase_ramp_and_offset():
    y, x = np.indices((64, 64))
    obj = 0.9 * np.exp(1j * (0.3 * y - 0.2 * x + 2.0))
    assert phase_ramp(obj) == pytest.approx((0.3, -0.2), abs=1e-6)
    flat = remove_phase_ramp(obj)
    np.testing.assert_allclose(np.angle(flat), 0, atol=1e-4)
    np.testing.assert_allclose(np.abs(flat), 0.9, rtol=1e-5)


def test_crop_illuminated_and_optical_density():
    ill = np.zeros((50, 60))
    ill[10:30, 20:45] = 1.0
    ill[5, 5] = 0.05  # below 10 %
    assert illuminated_slices(ill) == (slice(10, 30), slice(20, 45))
    assert crop_illuminated(np.ones((2, 50, 60)), ill).shape == (2, 20, 25)
    obj = np.full((10, 10), 0.9 + 0j)
    obj[2:5, 2:5] = 0.9 * 10 ** (-0.25)  # |O|^2 ten times ... OD 0.5 relative to free area
    od = optical_density(obj)
    assert od[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert od[3, 3] == pytest.approx(0.5, abs=1e-5)
    free = np.zeros((10, 10), bool)
    free[7:, 7:] = True
    np.testing.assert_allclose(optical_density(obj, mask=free), od, atol=1e-6)
    assert optical_density(obj, i0=0.81)[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert od.dtype == np.float32
