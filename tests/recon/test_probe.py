"""Zone plate optics and the probe field against theory."""

import math

import numpy as np
import pytest
from scipy.signal import argrelmin

from recon.geometry import wavelength_m
from recon.probe import ZonePlate, radial_profile, zone_plate_probe


def test_focal_length_changes_with_energy():
    zp = ZonePlate(outer_diameter=240e-6, outermost_zone_width=50e-9)
    f192 = zp.focal_length_m(192.0)
    assert f192 == pytest.approx(240e-6 * 50e-9 / wavelength_m(192.0))
    assert zp.focal_length_m(384.0) == pytest.approx(2 * f192)


def test_spot_defocus_round_trip():
    zp = ZonePlate()
    for spot in (0.1e-6, 0.5e-6, 1e-6, 3e-6):
        dz = zp.defocus_m(spot, 192.0)
        assert zp.spot_size_m(dz, 192.0) == pytest.approx(spot, rel=1e-9)
    assert zp.spot_size_m(0.0, 192.0) == pytest.approx(1.22 * 50e-9)
    with pytest.raises(ValueError, match="smaller than the focus"):
        zp.defocus_m(10e-9, 192.0)
    # Geometric annulus D dz / f far from focus.
    dz = 50e-6
    assert zp.spot_size_m(dz, 706.0) == pytest.approx(
        zp.outer_diameter * dz / zp.focal_length_m(706.0), rel=0.01
    )


def test_focus_spot_is_1p22_dr():
    zp = ZonePlate(central_stop_diameter=0.0)
    probe = zone_plate_probe(zp, 192.0, 0.0, 512, 4e-9)
    assert probe.dtype == np.complex64
    assert np.sum(np.abs(probe) ** 2) == pytest.approx(1.0, rel=1e-4)
    prof = radial_profile(np.abs(probe) ** 2)
    first_zero = argrelmin(prof)[0][0] * 4e-9
    assert first_zero == pytest.approx(1.22 * 50e-9, rel=0.10)


def _annulus_edges(intensity, pixel):
    """Inner and outer diameters where the intensity crosses 25 % of the annulus plateau.

    A Fresnel knife edge has a quarter of the unobstructed intensity at the geometric shadow,
    so the 25 % crossings estimate the geometric edges; the bright on-axis (Arago) spot in the
    shadow of the central stop is skipped.
    """
    prof = radial_profile(intensity)
    r = np.arange(len(prof))
    enclosed = np.cumsum(prof * r)
    enclosed /= enclosed[-1]
    lo, hi = np.searchsorted(enclosed, 0.3), np.searchsorted(enclosed, 0.9)
    plateau = np.median(prof[lo:hi])  # the annulus carries most of the energy
    r_out = np.nonzero(prof > 0.25 * plateau)[0].max()
    r_arago = np.argmax(prof < 0.25 * plateau)
    r_in = r_arago + np.argmax(prof[r_arago:] > 0.25 * plateau)
    return 2 * r_in * pixel, 2 * r_out * pixel


@pytest.mark.parametrize("energy", [192.0, 706.0])
def test_defocused_annulus_diameters_and_stop_ratio(energy):
    # A large spot (high Fresnel number) shows the geometric annulus clearly.
    zp = ZonePlate()
    spot = 6e-6
    dz = zp.defocus_m(spot, energy)
    pixel = 25e-9
    probe = zone_plate_probe(zp, energy, dz, 512, pixel)
    inner, outer = _annulus_edges(np.abs(probe) ** 2, pixel)
    expected_outer = zp.outer_diameter * dz / zp.focal_length_m(energy)
    assert outer == pytest.approx(expected_outer, rel=0.10)
    assert inner / outer == pytest.approx(zp.stop_ratio, rel=0.10)
    # The central stop shadow is dark.
    prof = radial_profile(np.abs(probe) ** 2)
    assert prof[: int(0.5 * inner / 2 / pixel)].mean() < 0.2 * prof.max()


def test_probe_too_coarse_pixel_refused():
    with pytest.raises(ValueError, match="cannot sample"):
        zone_plate_probe(ZonePlate(), 192.0, 1e-6, 64, 60e-9)


def test_probe_energy_flux_is_independent_of_defocus():
    zp = ZonePlate()
    a = zone_plate_probe(zp, 400.0, 0.0, 256, 20e-9)
    b = zone_plate_probe(zp, 400.0, zp.defocus_m(1e-6, 400.0), 256, 20e-9)
    assert np.sum(np.abs(a) ** 2) == pytest.approx(np.sum(np.abs(b) ** 2), rel=1e-4)
    # The far field (pupil) is the same annulus: |FFT| equal.
    fa, fb = np.abs(np.fft.fft2(a)), np.abs(np.fft.fft2(b))
    assert np.allclose(fa, fb, atol=1e-3 * fa.max())
    assert math.isfinite(float(np.abs(b).max()))
