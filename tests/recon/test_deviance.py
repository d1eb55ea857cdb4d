"""The Poisson deviance: its definition, normalisation, and the numba kernel that fuses it."""

import numpy as np
import pytest

from recon import kernels, numba_kernels
from recon.deviance import poisson_deviance


def _data(rng, shape=(3, 8, 8)):
    model = rng.uniform(0.5, 20, shape)
    measured = rng.poisson(model).astype(np.float64)
    return measured, model


def test_deviance_against_its_definition():
    rng = np.random.default_rng(0)
    measured, model = _data(rng)
    mask = np.zeros(measured.shape[1:], bool)
    mask[1, 2] = mask[5, 5] = True
    keep = np.broadcast_to(~mask, measured.shape)
    i, m = measured[keep], model[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(i > 0, i * np.log(i / m), 0.0)
    total = 2 * np.sum(m - i + log_term)
    assert poisson_deviance(measured, model, mask, normalise=False) == pytest.approx(total)
    assert poisson_deviance(measured, model, mask) == pytest.approx(total / keep.sum())
    assert poisson_deviance(model, model) == pytest.approx(0.0, abs=1e-12)


def test_deviance_ignores_masked_pixels_and_is_about_one_per_pixel_for_poisson_noise():
    rng = np.random.default_rng(1)
    measured, model = _data(rng, (200, 16, 16))
    assert 0.9 < poisson_deviance(measured, model) < 1.1
    mask = np.zeros((16, 16), bool)
    mask[0, 0] = True
    garbage = measured.copy()
    garbage[:, 0, 0] = 1e6
    assert poisson_deviance(garbage, model, mask) == pytest.approx(
        poisson_deviance(measured, model, mask)
    )


@pytest.mark.skipif(not numba_kernels.AVAILABLE, reason="numba not installed")
def test_numba_deviance_kernel_computes_the_same_quantity():
    rng = np.random.default_rng(2)
    m, k, n = 5, 2, 8
    wave = (rng.standard_normal((m, k, n, n)) + 1j * rng.standard_normal((m, k, n, n))) * 2
    wave = wave.astype(np.complex64)
    bg = rng.uniform(0, 0.5, (n, n)).astype(np.float32)
    scale = rng.uniform(0.8, 1.2, m).astype(np.float32)
    model = scale[:, None, None] * (np.abs(wave) ** 2).sum(axis=1) + bg
    inten = rng.poisson(model).astype(np.float32)
    good = rng.uniform(size=(n, n)) > 0.1
    every, j0 = 2, 1  # frames 1 and 3 of this chunk
    dev = np.zeros(m, np.float64)
    args = kernels._numba_args(wave, inten, good, bg)
    numba_kernels.deviance_rows(*args, scale, dev, every, j0)
    rows = (np.arange(m) + j0) % every == 0
    expected = poisson_deviance(inten[rows], model[rows], ~good, normalise=False)
    assert dev[~rows].sum() == 0
    assert dev.sum() == pytest.approx(expected, rel=1e-5)
