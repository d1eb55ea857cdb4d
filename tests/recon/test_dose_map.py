"""The accumulated dose map (recon.dose_map) against recon.dose's exposure counts, the
sample presets against the simulator's samples, and material densities against xraydb."""

import math

import numpy as np
import pytest
import xraydb

from recon.dose import (
    MATERIALS,
    SAMPLE_PRESETS,
    exposure_map,
    material_properties,
    sample_preset,
    weight_factor,
)
from recon.dose_map import (
    DoseMap,
    add_exposures,
    coarsened,
    default_pixel_m,
    empty_map,
    planned_peak,
)
from recon.scan import raster_positions

SPOT = 1e-6
STEP = 0.1e-6


def _direct(positions_m, y_m, x_m, spot_m=SPOT):
    """Spots covering stage point (y, x), counted without any map."""
    d2 = ((np.asarray(positions_m) - [y_m, x_m]) ** 2).sum(axis=1)
    return int(np.count_nonzero(d2 <= (spot_m / 2) ** 2 * (1 + 1e-9)))


def test_one_scan_is_recon_dose_exposure_map_times_the_single_dose():
    pos = raster_positions(2e-6, STEP)
    dose = add_exposures(empty_map(STEP / 2), pos, SPOT, 3.0)
    counts = exposure_map(pos, SPOT, 81 * STEP / 2, STEP / 2)  # the same grid, 0 its centre
    centre = dose.at(0.0, 0.0) / 3.0
    assert centre == counts[counts.shape[0] // 2, counts.shape[1] // 2]
    assert dose.values.max() == pytest.approx(3.0 * counts.max())
    assert dose.values.sum() == pytest.approx(3.0 * counts.sum())
    # far from the edges a point gets 1 + k exposures (Eqs. 3-5)
    assert centre == pytest.approx(1 + weight_factor(STEP, SPOT), rel=0.05)


def test_two_overlapping_scans_add_and_the_rest_keeps_one_scan_dose():
    a = raster_positions(2e-6, STEP)
    b = a + [0.0, 1e-6]  # 1 um to the right
    dose = add_exposures(empty_map(default_pixel_m(SPOT)), a, SPOT, 2.0)
    dose = add_exposures(dose, b, SPOT, 5.0)
    y, x = dose.coordinates_m()
    for yi in y[::3]:
        for xj in x[::3]:
            expected = 2.0 * _direct(a, yi, xj) + 5.0 * _direct(b, yi, xj)
            assert dose.at(yi, xj) == pytest.approx(expected)
    assert dose.at(0.0, -1.2e-6) == pytest.approx(2.0 * _direct(a, 0.0, -1.2e-6))
    assert dose.at(0.0, 2.2e-6) == pytest.approx(5.0 * _direct(b, 0.0, 2.2e-6))
    assert _direct(b, 0.0, -1.2e-6) == 0 and _direct(a, 0.0, 2.2e-6) == 0


def test_a_stack_of_n_images_gives_n_times_one_image():
    pos = raster_positions(1e-6, STEP)
    one = add_exposures(empty_map(default_pixel_m(SPOT)), pos, SPOT, 1.5)
    stack = add_exposures(empty_map(default_pixel_m(SPOT)), np.tile(pos, (84, 1)), SPOT, 1.5)
    np.testing.assert_allclose(stack.values, 84 * one.values)


def test_per_exposure_doses_and_a_finer_spot_refine_the_map():
    pos = raster_positions(1e-6, 0.2e-6)
    doses = np.where(np.arange(len(pos)) % 2 == 0, 1.0, 3.0)
    coarse = add_exposures(empty_map(default_pixel_m(SPOT)), pos, SPOT, doses)
    fine = add_exposures(coarse, np.array([[0.0, 0.0]]), 0.1e-6, 10.0)
    assert fine.pixel_m < coarse.pixel_m
    for yi, xj in ((0.0, 0.0), (0.3e-6, -0.2e-6), (-0.4e-6, 0.5e-6)):  # coarse pixel centres
        expected = sum(d for p, d in zip(pos, doses, strict=True) if _direct([p], yi, xj))
        assert coarse.at(yi, xj) == pytest.approx(expected)
        assert fine.at(yi, xj) == pytest.approx(expected + 10.0 * _direct([[0, 0]], yi, xj, 0.1e-6))


def test_planned_peak_adds_what_was_received():
    pos = raster_positions(1e-6, STEP)
    received = add_exposures(empty_map(default_pixel_m(SPOT)), pos, SPOT, 4.0)
    fresh = planned_peak(empty_map(received.pixel_m), pos, SPOT, 4.0)
    peak = planned_peak(received, pos, SPOT, 4.0)
    assert fresh.received_gray == 0.0 and fresh.total_gray == pytest.approx(received.values.max())
    assert peak.total_gray == pytest.approx(2 * received.values.max())
    assert peak.received_gray == pytest.approx(received.at(peak.y_m, peak.x_m))
    away = planned_peak(received, pos + [0.0, 10e-6], SPOT, 5.0)  # elsewhere on the sample
    assert away.received_gray == 0.0 and away.total_gray == pytest.approx(1.25 * fresh.total_gray)
    assert away.x_m > 9e-6


def test_coarsened_keeps_the_peak():
    values = np.zeros((1000, 700))
    values[637, 411] = 9.0
    dose = DoseMap(values, (0.0, 0.0), 1e-8)
    small = coarsened(dose, 100)
    assert max(small.values.shape) <= 100 and small.values.max() == 9.0
    assert small.at(637e-8, 411e-8) == 9.0
    assert coarsened(dose, 2000) is dose


def test_presets_follow_the_simulator_samples():
    from simulators.samples import SAMPLES
    from simulators.samples.permalloy import PermalloyRods
    from simulators.samples.siemens import SiemensStar
    from simulators.samples.tubes import BNBamboo, CNTBundle

    assert set(SAMPLE_PRESETS) == set(SAMPLES)
    assert SAMPLE_PRESETS["siemens-star"] == ("Au", SiemensStar().thickness_m)
    for preset, cls in (("bn-bamboo", BNBamboo), ("cnt-bundle", CNTBundle)):
        low, high = cls.diameter_range_m
        assert low <= SAMPLE_PRESETS[preset][1] <= high
    rods = PermalloyRods(seed=1)
    diameters = [2 * mr.rod.radius for mr in rods.rods]
    assert min(diameters) * 0.8 <= SAMPLE_PRESETS["permalloy-rods"][1] <= max(diameters) * 1.2
    assert sample_preset("BN-1") == sample_preset("bn-bamboo") == ("BN", 100e-9)
    assert sample_preset("siemens-star-2")[0] == "Au" and sample_preset("kryptonite") is None


def test_material_densities_come_from_xraydb_where_it_knows_the_name():
    assert material_properties("kapton") == ("C22H10N2O5", pytest.approx(1.42))
    assert material_properties("silicon nitride")[1] == xraydb.find_material("Si3N4").density
    for name in ("BN", "Si3N4", "Au", "PMMA"):  # the project's densities are xraydb's
        formula, density = MATERIALS[name]
        assert density == pytest.approx(xraydb.find_material(formula).density)
    assert material_properties("C") == ("C", 2.0)  # amorphous carbon, not xraydb's diamond
    with pytest.raises(ValueError, match="unknown material 'kryptonite'"):
        material_properties("kryptonite")
    assert math.isfinite(default_pixel_m(SPOT))
