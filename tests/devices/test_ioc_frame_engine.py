"""The IOC camera's frame engine: dark level, photon budget, annular bright field, geometry."""

import math
from dataclasses import replace

import numpy as np
import pytest

from recon.probe import radial_profile
from simulators.ioc.physics import BeamState, FrameEngine


@pytest.fixture(scope="module")
def engine():
    return FrameEngine("bn-bamboo", seed=3, area_m=2e-6)


def _state(engine, energy=192.0, spot=1e-6, **kw):
    zp = engine.zone_plate
    z = zp.focal_length_m(energy) + zp.defocus_m(spot, energy)
    base = BeamState(energy, "LH", 0.0, 0.0, 0.0, 0.0, z, 0.0, True, 1e8)
    return replace(base, **kw)


def test_dark_frame_is_the_dark_offset(engine):
    frame, geom = engine.frame(_state(engine, shutter_open=False), 256, 3, 0.1)
    assert frame.dtype == np.uint32 and frame.shape == (256, 256)
    cold = engine.detector.hot_pixel_count(256, 3) == 0
    # 2000 counts/s per raw pixel: 200 in 100 ms, times 3 x 3 binned pixels.
    assert frame[cold].mean() == pytest.approx(1800.0, rel=0.005)
    assert frame[cold].std() == pytest.approx(2.0 * 3, rel=0.2)


def test_photons_off_the_sample_equal_flux_times_exposure(engine):
    state = _state(engine, sample_x_m=1e-3)  # far outside the sample: only background
    geom = engine.geometry(256, 3, 192.0)
    obj, _ = engine.object_window(state, geom)
    background = float(abs(obj[0, 0]) ** 2)
    photons = engine.expected_photons(state, geom, 0.1)
    assert photons.sum() == pytest.approx(1e8 * 0.1 * background, rel=0.01)
    frame, _ = engine.frame(state, 256, 3, 0.1)
    dark = engine.detector.mean_dark(0.1, 256, 3)
    measured = (frame - dark).sum() / engine.detector.counts_per_photon(192.0)
    assert measured == pytest.approx(1e7 * background, rel=0.02)


def test_annular_bright_field_has_the_zone_plate_radii(engine):
    state = _state(engine)
    geom = engine.geometry(256, 3, 192.0)
    photons = engine.expected_photons(state, geom, 0.1)
    profile = radial_profile(photons)
    # Cone edge on the detector: z NA / (p b) with NA = lambda / (2 dr).
    lam = 1.239841984e-6 / 192.0
    r_out = 0.0513 * lam / (2 * 50e-9) / (11e-6 * 3)
    r_in = r_out * 72 / 240
    ring = profile[int(r_in) + 5 : int(r_out) - 5].mean()
    assert profile[: int(r_in) - 8].mean() < 0.05 * ring
    assert profile[int(r_out) + 8 : 127].mean() < 0.05 * ring


def test_frames_change_with_position_and_polarization_is_cached(engine):
    geom = engine.geometry(256, 3, 192.0)
    a = engine.expected_photons(_state(engine), geom, 0.1)
    b = engine.expected_photons(_state(engine, sample_x_m=0.2e-6), geom, 0.1)
    assert np.abs(a - b).sum() > 0.01 * a.sum()
    # A zone plate move shifts the probe by as much as a sample move in the other sense.
    c = engine.expected_photons(_state(engine, sample_x_m=0.1e-6, zp_x_m=0.1e-6), geom, 0.1)
    np.testing.assert_allclose(b, c, rtol=1e-3, atol=1e-3 * b.max())


def test_coarse_pixels_render_finer_and_crop_the_cone(engine):
    # Unbinned 256 frame at 192 eV: pixel 118 nm > dr, the cone overfills the camera.
    geom = engine.geometry(256, 1, 192.0)
    assert geom.upsample == math.ceil(geom.pixel_m * 1.05 / 50e-9)
    photons = engine.expected_photons(_state(engine, sample_x_m=1e-3), geom, 0.1)
    assert photons.shape == (256, 256)
    assert 0 < photons.sum() < 0.9e7


def test_osa_misalignment_blocks_the_beam(engine):
    assert engine.osa_transmission(0.0) == 1.0
    assert engine.osa_transmission(15e-6) == pytest.approx(0.5)
    assert engine.photons_on_sample(_state(engine, osa_offset_m=30e-6), 0.1) == 0.0
