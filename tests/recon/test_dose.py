"""Overlap weight factor and exposure counts against Vijayakumar et al., "Soft X-ray
spectro-ptychography" at the HERMES beamline, J. Synchrotron Rad. 30 (2023),
doi:10.1107/S1600577523000955 (Eqs. 2-5, Fig. 7)."""

import json
import math

import numpy as np
import pytest

from recon.dose import (
    dose_report,
    exposure_map,
    lens_area,
    single_exposure_dose_gray,
    weight_factor,
    weight_factor_of_scan,
)
from recon.scan import raster_positions


def test_lens_area_limits():
    r = 1.0
    assert lens_area(0.0, r) == pytest.approx(math.pi)
    assert lens_area(2.0, r) == 0.0
    assert lens_area(3.0, r) == 0.0
    # d = R: 2 pi / 3 - sqrt(3) / 2 (R = 1)
    assert lens_area(1.0, r) == pytest.approx(2 * math.pi / 3 - math.sqrt(3) / 2)


def test_k_is_78_at_d_equal_0p2_R():
    r = 250e-9
    assert weight_factor(0.2 * r, 2 * r) == pytest.approx(78, rel=0.02)


def test_k_tends_to_area_ratio_minus_one():
    for ratio in (0.05, 0.1):
        assert weight_factor(ratio, 2.0) == pytest.approx(math.pi / ratio**2 - 1, rel=0.02)


def test_k_decreases_to_zero_at_no_overlap():
    ks = [weight_factor(d, 2.0) for d in (0.2, 0.5, 1.0, 1.5, 1.99, 2.0)]
    assert all(a > b for a, b in zip(ks, ks[1:-1], strict=False))
    assert ks[-1] == 0.0


def test_focused_60nm_spot_30nm_steps_in_2um():
    pos = raster_positions(2e-6, 30e-9)
    assert weight_factor_of_scan(pos, 60e-9) == pytest.approx(2.2, rel=0.05)
    report = dose_report(60e-9, 30e-9, 2e-6)
    assert report.max_exposures == 5  # "exposed between one and five times"
    assert 1 <= report.mean_exposures <= 5


def test_defocused_500nm_spot_50nm_steps_up_to_81_exposures():
    report = dose_report(500e-9, 50e-9, 2e-6)
    assert report.max_exposures == 81
    assert report.k == pytest.approx(78, rel=0.02)
    # Fewer exposures at the corners than in the middle.
    counts = exposure_map(raster_positions(2e-6, 50e-9), 500e-9, 2e-6, 10e-9)
    assert counts[0, 0] < counts[100, 100]
    hist = np.bincount(counts.ravel())
    assert hist.sum() == counts.size
    # Points further than R from the edges see nearly every neighbour (70-81 exposures): the
    # inner (2 um - 0.5 um)^2 of the area.
    frac = hist[70:].sum() / counts.size
    assert frac == pytest.approx((1.5 / 2) ** 2, abs=0.2)


def test_dose_scales_with_flux_and_overlap():
    a = dose_report(
        1e-6,
        100e-9,
        2e-6,
        material="BN",
        thickness_m=100e-9,
        flux_ph_s=1e8,
        exposure_s=0.1,
        energy_ev=192.0,
    )
    b = dose_report(
        1e-6,
        100e-9,
        2e-6,
        material="BN",
        thickness_m=100e-9,
        flux_ph_s=2e8,
        exposure_s=0.1,
        energy_ev=192.0,
    )
    assert b.dose_gray == pytest.approx(2 * a.dose_gray)
    single = single_exposure_dose_gray("BN", 100e-9, 1e7, 1e-6, 192.0)
    assert a.dose_gray == pytest.approx(single * (1 + a.k))
    # Order of magnitude check: 1e7 photons at 192 eV on a 1 um disc of 100 nm BN
    # (attenuation length ~ 0.2-0.5 um) deposit 1e5-1e7 Gy.
    assert 1e5 < single < 1e7
    json.dumps(a.as_dict())  # JSON-ready


def test_dose_needs_all_beam_parameters():
    with pytest.raises(ValueError, match="together"):
        dose_report(1e-6, 100e-9, 2e-6, material="BN")


@pytest.mark.parametrize(
    "spot, step, area, words",
    [
        (500e-9, 1e-12, 2e-6, ["scan points", "TiB", "250,000"]),
        (1e-9, 1e-10, 1e-3, ["scan points", "PiB"]),
        (1e-3, 1e-8, 1e-8, ["neighbour cells", "40,000,000"]),
    ],
)
def test_dose_report_refuses_huge_grids_before_allocating(spot, step, area, words):
    with pytest.raises(ValueError) as err:
        dose_report(spot, step, area)
    for word in words:
        assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_weight_factor_refuses_huge_neighbour_grid_and_nan():
    with pytest.raises(ValueError, match="neighbour cells"):
        weight_factor(1e-12, 500e-9)
    with pytest.raises(ValueError, match="finite"):
        weight_factor(float("nan"), 500e-9)
    with pytest.raises(ValueError, match="finite"):
        dose_report(500e-9, float("inf"), 2e-6)
