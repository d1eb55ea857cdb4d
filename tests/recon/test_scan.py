"""Scan patterns."""

import numpy as np
import pytest

from recon.scan import (
    fermat_positions,
    overlap_from_step,
    raster_positions,
    raster_shape,
    scan_positions,
    step_from_overlap,
)


def test_step_overlap_round_trip():
    assert step_from_overlap(1e-6, 0.9) == pytest.approx(100e-9)
    assert overlap_from_step(500e-9, 50e-9) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        step_from_overlap(1e-6, 1.0)


def test_raster_grid():
    pos = raster_positions(2e-6, 100e-9)
    assert raster_shape(2e-6, 100e-9) == (21, 21)
    assert pos.shape == (441, 2)
    assert np.allclose(pos.mean(axis=0), 0.0, atol=1e-15)
    assert pos[:, 0].max() - pos[:, 0].min() == pytest.approx(2e-6)
    # x fastest
    assert pos[1, 1] - pos[0, 1] == pytest.approx(100e-9)
    assert pos[1, 0] == pos[0, 0]


def test_jitter_is_seeded():
    a = scan_positions("raster", 1e-6, 100e-9, 5e-9, np.random.default_rng(3))
    b = scan_positions("raster", 1e-6, 100e-9, 5e-9, np.random.default_rng(3))
    c = raster_positions(1e-6, 100e-9)
    assert np.array_equal(a, b)
    assert np.std(a - c) == pytest.approx(5e-9, rel=0.3)


def test_fermat_density_matches_raster():
    f = fermat_positions(2e-6, 100e-9)
    assert np.all(np.abs(f) <= 1e-6 + 1e-12)
    assert len(f) == pytest.approx(441, rel=0.15)
    d = np.hypot(*(f[:, None, :] - f[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert np.median(d.min(axis=1)) == pytest.approx(100e-9, rel=0.25)
    with pytest.raises(ValueError, match="unknown scan pattern"):
        scan_positions("spiral", 1e-6, 1e-7)
