"""Plan message streams, without hardware (bluesky's RunEngineSimulator)."""

from collections import Counter

import pytest
from bluesky.simulators import RunEngineSimulator
from pydantic import ValidationError

from devices.beamline import make_beamline
from plans.parameters import RasterParams, StackParams
from plans.ptycho import defocused_raster, spectro_stack

SMALL = dict(area_m=0.4e-6, spot_m=0.2e-6, overlap=0.5, n_dark=3, mode="step")  # 5 x 5 points


@pytest.fixture(scope="module")
def bl():
    return make_beamline("PLANTEST:", connect=False)


def simulate(bl, plan):
    sim = RunEngineSimulator()
    sim.add_read_handler_for(bl.shutter.status, "Open")  # the plan opened it
    return sim.simulate_plan(plan)


def events(msgs, stream):
    """Names of the objects read in each event of ``stream``."""
    out, current, name = [], [], None
    for m in msgs:
        if m.command == "create":
            current, name = [], m.kwargs.get("name", "primary")
        elif m.command == "read" and name is not None:
            current.append(m.obj.name)
        elif m.command == "save":
            if name == stream:
                out.append(current)
            name = None
    return out


def test_stack_message_stream(bl):
    msgs = simulate(
        bl,
        spectro_stack(
            bl, dict(energies=[190.0, 192.0, 194.0], polarizations=["LH", "LV"], **SMALL)
        ),
    )
    counts = Counter(m.command for m in msgs)
    assert counts["open_run"] == 1 and counts["close_run"] == 1
    # staged for the run, re-staged around the dark series (a file per stream)
    assert counts["stage"] == 1 + 2 and counts["unstage"] == 1 + 2
    primary = events(msgs, "primary")
    assert len(primary) == 3 * 2 * 25
    # every event carries the frame, positions, energy, polarization, flux and indices
    for names in primary[:3]:
        for key in (
            "camera",
            "sample_fx",
            "sample_fy",
            "optics_energy",
            "polarization",
            "beam_i0",
            "ptychogram",
            "point",
        ):
            assert key in names
    assert len(events(msgs, "dark")) == 3  # once per stack
    # energy outer loop: 190 (LH, LV), 192 (LH, LV), 194 (LH, LV)
    energies = [m.args[0] for m in msgs if m.command == "set" and m.obj.name == "optics_energy"]
    assert energies == [190.0, 192.0, 194.0]
    pols = [m.args[0] for m in msgs if m.command == "set" and m.obj.name == "polarization"]
    assert pols == ["LH", "LV"] * 3
    # the spot is set before the first energy (so the zone plate follows it)
    first_spot = next(
        i for i, m in enumerate(msgs) if m.command == "set" and m.obj.name == "optics_spot"
    )
    first_energy = next(
        i for i, m in enumerate(msgs) if m.command == "set" and m.obj.name == "optics_energy"
    )
    assert first_spot < first_energy
    assert msgs[first_spot].args[0] == pytest.approx(0.2)
    # the last shutter command closes it
    shutter = [m.args[0] for m in msgs if m.command == "set" and m.obj.name == "shutter"]
    assert shutter[-1] == "close"


def test_polarization_outer_order_and_dark_per_energy(bl):
    msgs = simulate(
        bl,
        spectro_stack(
            bl,
            dict(
                energies=[190.0, 192.0],
                polarizations=["CL", "CR"],
                order="polarization",
                dark="per-energy",
                **SMALL,
            ),
        ),
    )
    pols = [m.args[0] for m in msgs if m.command == "set" and m.obj.name == "polarization"]
    assert pols == ["CL", "CL", "CR", "CR"]
    energies = [m.args[0] for m in msgs if m.command == "set" and m.obj.name == "optics_energy"]
    assert energies == [190.0, 192.0, 190.0, 192.0]
    assert len(events(msgs, "dark")) == 3 * 4  # at every energy change


def test_start_document_carries_the_geometry(bl):
    msgs = simulate(bl, defocused_raster(bl, dict(energy_ev=706.0, polarization="CR", **SMALL)))
    md = next(m for m in msgs if m.command == "open_run").kwargs
    g = md["geometry"]
    assert md["plan_name"] == "defocused_raster"
    assert g["energies"] == [706.0] and g["polarizations"] == ["CR"]
    assert g["grid"] == [5, 5] and g["points_per_ptychogram"] == 25
    assert g["step_m"] == pytest.approx(0.1e-6)
    assert g["overlap"] == pytest.approx(0.5)
    assert g["zone_plate"]["outermost_zone_width"] == pytest.approx(50e-9)
    assert g["dark_frames"] == 3 and g["exposure_s"] == pytest.approx(0.1)
    assert g["dose"]["k"] == pytest.approx(2.29, rel=0.02)
    assert {"detector_distance_m", "detector_pixel_m", "spot_m", "area_m"} <= set(g)


def test_abort_closes_the_shutter(bl):
    gen = spectro_stack(bl, dict(energies=[192.0], polarizations=["LH"], **SMALL))
    sent, msgs = None, []
    for _ in range(60):  # well into the raster
        msg = gen.send(sent)
        msgs.append(msg)
        is_rd = msg.command == "read" and msg.obj.name == "shutter_status"
        sent = {"shutter_status": {"value": "Open", "timestamp": 0.0}} if is_rd else None
    after = []
    msg = gen.throw(KeyboardInterrupt())
    while True:
        after.append(msg)
        try:
            msg = gen.send(None)
        except (KeyboardInterrupt, StopIteration):
            break
    closes = [m for m in after if m.command == "set" and m.obj.name == "shutter"]
    assert closes and closes[0].args[0] == "close"


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(overlap=1.0), "less than 1"),
        (dict(overlap=-0.1), "greater than or equal to 0"),
        (dict(spot_m=3e-6, area_m=2e-6), "larger than the scanned area"),
        (dict(energy_ev=50.0), "greater than or equal to 100"),
        (dict(energy_ev=2500.0), "less than or equal to 2000"),
        (dict(exposure_s=0.0), "greater than 0"),
        (dict(spot_m=0.1e-6, overlap=0.95, area_m=20e-6), "points per ptychogram"),
        (dict(spot_m=20e-9), "smaller than the zone plate focus"),
        (
            dict(material="BN", thickness_m=100e-9, flux_ph_s=1e9, dose_budget_gray=1e3),
            "exceeds the budget",
        ),
    ],
)
def test_refused_parameters_produce_no_message(bl, bad, message):
    with pytest.raises(ValidationError, match=message):
        RasterParams(**bad)
    gen = defocused_raster(bl, bad)
    with pytest.raises(ValidationError, match=message):
        next(gen)  # refused before the first message: nothing moves


def test_stack_refuses_bad_energy_and_budget():
    with pytest.raises(ValidationError, match="outside 100-2000"):
        StackParams(energies=[192.0, 3000.0])
    ok = StackParams(
        energies=[192.0, 193.0],
        polarizations=["LH", "LV"],
        material="BN",
        thickness_m=100e-9,
        flux_ph_s=1e8,
        dose_budget_gray=1e12,
    )
    assert len(ok.ptychograms()) == 4
    with pytest.raises(ValidationError, match="exceeds the budget"):
        StackParams(
            energies=[192.0, 193.0],
            polarizations=["LH", "LV"],
            material="BN",
            thickness_m=100e-9,
            flux_ph_s=1e8,
            dose_budget_gray=1e6,
        )


def test_camera_is_configured_before_staging(bl):
    msgs = simulate(bl, defocused_raster(bl, dict(energy_ev=192.0, frame_size=128, **SMALL)))
    stage = next(i for i, m in enumerate(msgs) if m.command == "stage")
    sets = {m.obj.name: m.args[0] for m in msgs[:stage] if m.command == "set"}
    assert sets["camera_cam_acquire_time"] == pytest.approx(0.1)
    # 192 eV at 51.3 mm with 128 frames needs binning 6 to hold the zone plate cone
    assert sets["camera_cam_bin_x"] == 6 == sets["camera_cam_bin_y"]
    assert sets["camera_cam_size_x"] == 128 * 6
    assert sets["camera_cam_min_x"] == (2048 - 128 * 6) // 2
    md = next(m for m in msgs if m.command == "open_run").kwargs
    assert md["geometry"]["detector_pixel_m"] == pytest.approx(66e-6)


def test_fly_mode_refuses_what_the_scan_controller_cannot_do():
    with pytest.raises(ValidationError, match="needs pattern 'raster'"):
        RasterParams(pattern="fermat", mode="fly", motion="continuous")
    with pytest.raises(ValidationError, match="holds at most 10000"):
        RasterParams(area_m=20e-6, spot_m=1e-6, overlap=0.9, mode="fly", max_points=100_000)
    assert RasterParams(pattern="fermat", mode="fly").motion == "step"  # spiral, stepping
