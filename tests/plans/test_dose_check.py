"""The sample, its preset and the dose budget in the plans' parameters and at the plan's
start, without hardware (devices not connected; bluesky's RunEngineSimulator)."""

import pytest
from bluesky.simulators import RunEngineSimulator
from pydantic import ValidationError

from devices.beamline import make_beamline
from plans.dose_check import DoseRefused, visit_dose_gray
from plans.parameters import RasterParams, StackParams
from plans.ptycho import defocused_raster, raster_as_stack, spectro_stack
from recon.dose import single_exposure_dose_gray, weight_factor

SMALL = dict(area_m=0.4e-6, spot_m=0.2e-6, overlap=0.5, n_dark=0, mode="step")


@pytest.fixture(scope="module")
def bl():
    return make_beamline("DOSECHECK:", connect=False)


def test_a_preset_sets_material_and_thickness_unless_given():
    p = RasterParams(sample="BN-1", **SMALL)
    assert (p.material, p.thickness_m) == ("BN", 100e-9)
    q = RasterParams(sample="permalloy-rods", thickness_m=50e-9, **SMALL)
    assert (q.material, q.thickness_m) == ("permalloy", 50e-9)
    r = RasterParams(sample="BN-1", material="kapton", **SMALL)  # an xraydb material
    assert r.material == "kapton" and raster_as_stack(r).material == "kapton"
    assert RasterParams(sample="my-sample", **SMALL).material is None


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(sample="bad/name"), "should match pattern"),
        (dict(sample="grid-3", dose_budget_gray=1e7), "needs material and thickness_m"),
        (dict(material="kryptonite"), "unknown material 'kryptonite'"),
        (dict(sample="BN-1", dose_budget_gray=-1.0), "greater than 0"),
    ],
)
def test_bad_sample_and_budget_values_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        StackParams(**SMALL, **bad)


def test_without_a_flux_and_without_i0_the_budget_refuses_before_any_message(bl):
    plan = defocused_raster(bl, dict(sample="BN-1", dose_budget_gray=1e12, **SMALL))
    with pytest.raises(DoseRefused, match="needs the incident flux and I0 cannot be read"):
        next(plan)


def test_a_fresh_sample_is_refused_at_the_plan_start_with_the_peak(bl):
    p = StackParams(energies=[192.0, 194.0], polarizations=["LH", "LV"], **SMALL)
    p = p.model_copy(update=dict(material="BN", thickness_m=100e-9, flux_ph_s=1e8))
    visit = visit_dose_gray(p, 1e8)
    single = single_exposure_dose_gray("BN", 100e-9, 1e8 * p.exposure_s, p.spot_m, 192.0)
    assert visit == pytest.approx(4 * single, rel=0.05)  # four ptychograms, nearby energies
    refused = p.model_copy(update=dict(dose_budget_gray=visit))  # less than 1 + k visits
    with pytest.raises(DoseRefused) as err:
        next(spectro_stack(bl, refused))
    line = str(err.value)
    assert line.startswith("refused: point (") and "sample '(unnamed)'" in line
    assert "0 Gy already received" in line and "\n" not in line
    reach = float(line.split("would reach ")[1].split(" Gy")[0])
    # the most exposed point: at least 1 + k spots (the mean far from the edges), each a visit
    assert visit * (1 + weight_factor(p.step_m, p.spot_m)) <= reach * 1.01 <= visit * 9.1
    assert reach / visit == pytest.approx(round(reach / visit), rel=0.02)


def test_the_start_document_carries_the_sample_and_the_check(bl):
    params = dict(sample="BN-1", flux_ph_s=1e8, dose_budget_gray=1e12, energy_ev=192.0, **SMALL)
    sim = RunEngineSimulator()
    sim.add_read_handler_for(bl.shutter.status, "Open")
    msgs = sim.simulate_plan(defocused_raster(bl, params))
    start = next(m for m in msgs if m.command == "open_run").kwargs
    assert start["sample"] == "BN-1" and start["sample_coarse_um"] == [0.0, 0.0]
    check = start["dose_check"]
    assert check["flux_source"] == "given" and check["received_gray"] == 0.0
    single = single_exposure_dose_gray("BN", 100e-9, 1e8 * 0.1, 0.2e-6, 192.0)
    exposures = check["peak_gray"] / single
    assert exposures == pytest.approx(round(exposures)) and 2 <= round(exposures) <= 9
    assert start["plan_args"]["material"] == "BN"
