"""Ophyd devices driving the simulated beamline IOC through real Channel Access on loopback."""

from __future__ import annotations

import threading
import time

import epics
import h5py
import numpy as np
import pytest
from ophyd.utils import LimitError, StatusTimeoutError

from devices.beamline import make_beamline
from devices.camera import CameraFaultError
from recon.probe import ZonePlate, radial_profile
from simulators.detector import SCMOSDetector
from simulators.ioc.physics import BeamState, FrameEngine

pytestmark = pytest.mark.timeout(120)


def caput(ioc, name: str, value) -> None:
    assert epics.caput(f"{ioc.prefix}{name}", value, wait=True, timeout=5) == 1


def caget(ioc, name: str):
    return epics.caget(f"{ioc.prefix}{name}", timeout=5, use_monitor=False)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def frames_of(camera, n: int) -> np.ndarray:
    """Stage, take ``n`` frames, unstage; return them from the HDF5 file."""
    camera.stage()
    try:
        for _ in range(n):
            camera.trigger().wait(30)
    finally:
        camera.unstage()
    with h5py.File(camera.file_name, "r") as f:
        return f["/entry/data/data"][()]


@pytest.fixture
def closed(beamline):
    beamline.shutter.set("close").wait(5)
    yield beamline


# -- motors --------------------------------------------------------------------------------
def test_connect_and_initial_focus(beamline):
    # The IOC starts at 192 eV with z set for a 1 um spot (computed there with recon).
    assert beamline.optics.mono.position == pytest.approx(192.0)
    assert beamline.zp.z.position == pytest.approx(
        beamline.optics.optics.zp_z_um(1.0, 192.0), abs=1e-6
    )
    assert beamline.optics.position.spot == pytest.approx(1.0, abs=1e-9)


def test_motor_moves_with_velocity_and_reports_positions(beamline):
    m = beamline.sample.cx
    seen: list[float] = []
    cid = m.user_readback.subscribe(lambda value, **_: seen.append(value), run=False)
    try:
        m.velocity.put(500.0, wait=True)
        start = m.position
        t0 = time.monotonic()
        m.move(start + 50.0, wait=True)
        elapsed = time.monotonic() - t0
    finally:
        m.user_readback.unsubscribe(cid)
    assert m.position == pytest.approx(start + 50.0, abs=1e-9)
    assert m.motor_done_move.get(use_monitor=False) == 1
    assert elapsed >= 50.0 / 500.0  # 0.1 s at 500 um/s plus acceleration
    assert elapsed < 2.0
    assert len([v for v in seen if start < v < start + 50.0]) >= 2  # readback while moving
    m.move(start, wait=True)


def test_moves_outside_soft_limits_are_refused_before_moving(beamline):
    cx, fx = beamline.sample.cx, beamline.sample.fx
    before = cx.position
    with pytest.raises(LimitError):
        cx.move(5000.0)
    with pytest.raises(LimitError):
        fx.set(60.0)
    assert cx.position == before and cx.user_setpoint.get() == pytest.approx(before)
    # Narrowed limits (.HLM) are honoured too.
    cx.high_limit_travel.put(100.0, wait=True)
    try:
        wait_until(lambda: cx.limits[1] == pytest.approx(100.0))
        with pytest.raises(LimitError):
            cx.move(150.0)
    finally:
        cx.high_limit_travel.put(4000.0, wait=True)
    wait_until(lambda: cx.limits[1] == pytest.approx(4000.0))


# -- optics ---------------------------------------------------------------------------------
def test_energy_change_moves_zone_plate_z_to_keep_the_spot(beamline):
    optics = beamline.optics
    optics.mono.velocity.put(500.0, wait=True)
    optics.spot.set(1.0).wait(20)
    optics.energy.set(250.0).wait(20)
    zp = ZonePlate()
    theory = (zp.focal_length_m(250.0) + zp.defocus_m(1e-6, 250.0)) * 1e6
    assert optics.mono.position == pytest.approx(250.0)
    assert beamline.zp.z.position == pytest.approx(theory, abs=1e-4)
    assert optics.position.spot == pytest.approx(1.0, abs=1e-6)
    assert optics.mono.gap.get() > 0
    # A new spot at this energy: only z moves.
    optics.spot.set(2.0).wait(20)
    theory = (zp.focal_length_m(250.0) + zp.defocus_m(2e-6, 250.0)) * 1e6
    assert beamline.zp.z.position == pytest.approx(theory, abs=1e-4)
    assert optics.mono.position == pytest.approx(250.0)
    optics.set(192.0, 1.0).wait(20)
    assert optics.position.energy == pytest.approx(192.0)


def test_energy_or_focus_outside_limits_is_refused(beamline):
    optics = beamline.optics
    before = (optics.mono.position, beamline.zp.z.position)
    with pytest.raises(ValueError):
        optics.energy.set(2500.0)
    with pytest.raises(LimitError):  # z would be 20.96 mm, beyond the 20 mm stage
        optics.set(2000.0, 20.0)
    with pytest.raises(ValueError, match="focus"):
        optics.spot.set(0.01)
    assert (optics.mono.position, beamline.zp.z.position) == before


def test_polarization_change_takes_its_time(beamline):
    und = beamline.undulator
    gap0 = beamline.optics.mono.gap.get()
    t0 = time.monotonic()
    und.set("CR").wait(10)
    elapsed = time.monotonic() - t0
    assert und.position == "CR"
    assert 0.3 <= elapsed < 3.0  # the IOC was started with --pol-time 0.3
    assert beamline.optics.mono.gap.get() != pytest.approx(gap0)
    with pytest.raises(ValueError, match="polarization"):
        und.set("XX")
    und.set("LH").wait(10)
    assert und.readback.get() == "LH"


def test_shutter_and_beam_monitor(beamline):
    beamline.shutter.set("open").wait(5)
    assert beamline.shutter.is_open
    beamline.shutter.set("close").wait(5)
    assert beamline.shutter.status.get() == "Closed"
    beamline.shutter.set("close").wait(5)  # already closed: finishes at once
    i0 = beamline.monitor.i0.get()
    assert i0 == pytest.approx(1e8, rel=0.002)
    assert beamline.monitor.ring_current.get() == pytest.approx(400.0, abs=0.5)


def test_the_i0_diode_gives_the_flux_at_the_energy_now(beamline, ioc):
    from types import SimpleNamespace

    from plans.dose_check import I0_DIODE, DoseRefused, incident_flux

    monitor, mono = beamline.monitor, beamline.optics.mono
    not_given = SimpleNamespace(flux_ph_s=None)
    mono.velocity.put(2000.0, wait=True)
    currents = {}
    try:
        for energy in (192.0, 706.0):
            mono.set(energy).wait(20)
            # the IOC publishes the beam every 0.1 s: wait for the current at this energy
            want = I0_DIODE.current_a(monitor.i0.get(), energy)
            wait_until(lambda w=want: monitor.i0_current.get() == pytest.approx(w, rel=2e-3))
            flux, source = incident_flux(not_given, beamline)
            assert source == f"I0 diode at {energy:.1f} eV"
            assert flux == pytest.approx(1e8, rel=3e-3)  # the simulator's flux, any energy
            currents[energy] = monitor.i0_current.get()
        # the same flux gives 3.9x the current at 706 eV; read at the wrong energy, the
        # current would be taken for 3.9x the photons
        assert currents[706.0] / currents[192.0] == pytest.approx(3.86, rel=0.02)
        assert I0_DIODE.flux_ph_s(currents[706.0], 192.0) > 3.5e8
        caput(ioc, "fault:beam_dump", 1)
        wait_until(lambda: monitor.i0_current.get() == 0.0)
        with pytest.raises(DoseRefused, match="I0 reads 0 A: give the flux"):
            incident_flux(not_given, beamline)
    finally:
        caput(ioc, "fault:beam_dump", 0)
        mono.set(192.0).wait(20)
        mono.velocity.put(50.0, wait=True)  # the IOC's default
    assert incident_flux(SimpleNamespace(flux_ph_s=2e7), beamline) == (2e7, "given")


# -- camera ---------------------------------------------------------------------------------
def test_dark_frames_with_the_shutter_closed(closed):
    camera = closed.camera
    camera.cam.acquire_time.put(0.1, wait=True)
    frames = frames_of(camera, 2)
    assert frames.shape == (2, 256, 256) and frames.dtype == np.uint32
    det = SCMOSDetector()
    cold = det.hot_pixel_count(256, 3) == 0
    # 200 counts per raw pixel in 100 ms, 3 x 3 raw pixels per binned pixel.
    assert frames[:, cold].mean() == pytest.approx(200 * 9, rel=0.005)
    assert frames[:, cold].std() < 12


def test_open_frames_follow_the_physics(beamline, ioc):
    """Photon budget, Poisson noise and the annular bright field of a defocused zone plate."""
    bl = beamline
    bl.shutter.set("open").wait(5)
    camera = bl.camera
    camera.cam.acquire_time.put(0.1, wait=True)
    det = SCMOSDetector()
    dark = det.mean_dark(0.1, 256, 3)
    cpp = det.counts_per_photon(192.0)
    engine = FrameEngine("bn-bamboo", seed=3, area_m=4e-6)
    z = bl.zp.z.position * 1e-6
    try:
        # Far off the sample: total photons = flux x exposure x background transmission.
        bl.sample.cx.move(20.0, wait=True)
        off = frames_of(camera, 1)[0].astype(np.float64)
        state = BeamState(192.0, "LH", 20e-6, 0.0, 0.0, 0.0, z, 0.0, True, 1e8)
        geom = engine.geometry(256, 3, 192.0)
        background = float(abs(engine.object_window(state, geom)[0][0, 0]) ** 2)
        photons = (off - dark).sum() / cpp
        assert photons == pytest.approx(1e8 * 0.1 * background, rel=0.03)
        assert photons == pytest.approx(1e8 * 0.1, rel=0.10)
        # On the sample: two frames at one position.
        bl.sample.cx.move(0.0, wait=True)
        on = frames_of(camera, 2).astype(np.float64)
    finally:
        bl.sample.cx.move(0.0, wait=True)
        bl.shutter.set("close").wait(5)
    state = BeamState(192.0, "LH", 0.0, 0.0, 0.0, 0.0, z, 0.0, True, 1e8)
    expected = engine.expected_photons(state, engine.geometry(256, 3, 192.0), 0.1)
    signal = on.mean(axis=0) - dark
    assert signal.sum() / cpp == pytest.approx(expected.sum(), rel=0.03)
    # Poisson: var(f1 - f2) / 2 = gain * signal + read noise^2 (gain per detected photon).
    gain = cpp / det.quantum_efficiency(192.0)
    bright = expected > np.percentile(expected, 90)
    var = ((on[0] - on[1]) ** 2 / 2)[bright].mean()
    assert var == pytest.approx(gain * signal[bright].mean() + (2.0 * 3) ** 2, rel=0.1)
    # Annular bright field: cone radius z NA / (p b), central stop 72/240 of it.
    profile = radial_profile(signal)
    r_out = 0.0513 * (1.239841984e-6 / 192.0) / (2 * 50e-9) / (11e-6 * 3)
    r_in = 0.3 * r_out
    ring = profile[int(r_in) + 5 : int(r_out) - 5].mean()
    assert profile[: int(r_in) - 8].mean() < 0.1 * ring
    assert profile[int(r_out) + 8 : 127].mean() < 0.05 * ring


def test_hdf5_files_and_documents_through_the_run_engine(beamline):
    from bluesky import RunEngine
    from bluesky.plans import count

    camera = beamline.camera
    camera.cam.acquire_time.put(0.02, wait=True)
    docs: list[tuple[str, dict]] = []
    RE = RunEngine({})
    RE(count([camera, beamline.monitor], num=3), lambda name, doc: docs.append((name, doc)))
    names = [n for n, _ in docs]
    assert names.count("resource") == 1 and names.count("datum") == 3
    assert names.count("event") == 3
    resource = next(d for n, d in docs if n == "resource")
    assert resource["spec"] == "AD_HDF5_SWMR"
    datums = [d for n, d in docs if n == "datum"]
    events = [d for n, d in docs if n == "event"]
    assert [e["data"]["camera_image"] for e in events] == [d["datum_id"] for d in datums]
    assert [d["datum_kwargs"]["point_number"] for d in datums] == [0, 1, 2]
    descriptor = next(d for n, d in docs if n == "descriptor")
    key = descriptor["data_keys"]["camera_image"]
    assert key["external"] == "FILESTORE:" and key["shape"] == [256, 256]
    assert "beam_i0" in events[0]["data"]
    path = f"{resource['root']}/{resource['resource_path']}"
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (3, 256, 256) and data.dtype == np.uint32
        energy = f["/entry/instrument/NDAttributes/energy_ev"][()]
        np.testing.assert_allclose(energy, 192.0)


def test_larger_frames_and_file_numbers(beamline):
    camera = beamline.camera
    cam = camera.cam
    number = int(camera.hdf5.file_number.get())
    cam.size_x.put(1024, wait=True)
    cam.size_y.put(1024, wait=True)
    cam.bin_x.put(2, wait=True)
    cam.bin_y.put(2, wait=True)
    try:
        wait_until(lambda: cam.array_size_x.get() == 512)
        frames = frames_of(camera, 2)
        assert frames.shape == (2, 512, 512)
        assert camera.describe()["camera_image"]["shape"] == [512, 512]
        assert int(camera.hdf5.file_number.get()) == number + 1
    finally:
        for sig, value in ((cam.size_x, 768), (cam.size_y, 768), (cam.bin_x, 3), (cam.bin_y, 3)):
            sig.put(value, wait=True)


# -- faults ---------------------------------------------------------------------------------
def test_beam_dump_drops_i0_and_darkens_frames(beamline, ioc):
    bl = beamline
    bl.shutter.set("open").wait(5)
    caput(ioc, "fault:beam_dump", 1)
    try:
        wait_until(lambda: bl.monitor.i0.get() == 0.0)
        assert bl.monitor.ring_current.get() == 0.0
        bl.camera.cam.acquire_time.put(0.05, wait=True)
        frame = frames_of(bl.camera, 1)[0]
        assert frame.mean() == pytest.approx(2000 * 0.05 * 9, rel=0.01)
    finally:
        caput(ioc, "fault:beam_dump", 0)
        bl.shutter.set("close").wait(5)
    wait_until(lambda: bl.monitor.i0.get() > 0.9e8)


def test_stalled_motor_times_out_naming_the_motor(beamline, ioc):
    cy = beamline.sample.cy
    caput(ioc, "fault:motor_stall", "sample:cy")
    cy.timeout_margin_s = 0.5
    try:
        t0 = time.monotonic()
        with pytest.raises(StatusTimeoutError, match="sample_cy"):
            cy.move(20.0)  # default timeout: 2 x travel time + margin
        assert time.monotonic() - t0 < 5
        wait_until(lambda: cy.motor_done_move.get() == 1)  # stopped
        time.sleep(0.1)  # let the done monitor reach the motor's callbacks
    finally:
        caput(ioc, "fault:motor_stall", "")
        cy.timeout_margin_s = 5.0
    cy.move(0.0, wait=True)
    assert cy.position == pytest.approx(0.0)


def test_stalled_zone_plate_fails_the_energy_move(beamline, ioc):
    optics = beamline.optics
    caput(ioc, "fault:motor_stall", "zp:z")
    optics.zp_z.timeout_margin_s = 0.5
    try:
        st = optics.energy.set(200.0)
        with pytest.raises(TimeoutError, match="optics_zp_z"):
            st.wait(10)
        wait_until(lambda: optics.zp_z.motor_done_move.get() == 1)
        wait_until(lambda: optics.mono.done.get() == 1)
        time.sleep(0.1)
    finally:
        caput(ioc, "fault:motor_stall", "")
        optics.zp_z.timeout_margin_s = 5.0
    optics.set(192.0, 1.0).wait(20)
    assert optics.position.spot == pytest.approx(1.0, abs=1e-6)


def test_a_stuck_frame_is_taken_again_and_a_stuck_camera_fails_naming_it(beamline, ioc):
    camera = beamline.camera
    camera.cam.acquire_time.put(0.01, wait=True)
    camera.frame_timeout_s = 0.5
    retried0 = camera.retried
    caput(ioc, "fault:camera_timeout", 1)  # one stuck frame: retried at once
    camera.stage()
    try:
        camera.trigger().wait(10)
        assert camera.retried == retried0 + 1
        assert int(caget(ioc, "fault:camera_timeout")) == 0
        caput(ioc, "fault:camera_timeout", 10)  # stuck for good: every attempt fails
        st = camera.trigger()
        with pytest.raises(
            CameraFaultError, match=r"camera: no frame within .*\(4 attempts\); check the camera"
        ):
            st.wait(20)
        assert camera.retried == retried0 + 4
        caput(ioc, "fault:camera_timeout", 0)
        wait_until(lambda: camera.cam.detector_state.get(use_monitor=False) != "Acquire")
        camera.trigger().wait(10)  # works again
        datums = [d for n, d in camera.collect_asset_docs() if n == "datum"]
    finally:
        caput(ioc, "fault:camera_timeout", 0)
        camera.frame_timeout_s = 3.0
        camera.unstage()
    assert [d["datum_kwargs"]["point_number"] for d in datums] == [0, 1]
    with h5py.File(camera.file_name, "r") as f:
        assert f["/entry/data/data"].shape[0] == 2


def test_dropped_frames_are_taken_again_and_the_file_stays_consistent(beamline, ioc):
    camera = beamline.camera
    camera.cam.acquire_time.put(0.01, wait=True)
    retried0 = camera.retried
    caput(ioc, "fault:drop_frames", 2)
    camera.stage()
    try:
        for _ in range(3):
            camera.trigger().wait(10)
        datums = [d for n, d in camera.collect_asset_docs() if n == "datum"]
    finally:
        camera.unstage()
    assert camera.retried == retried0 + 2
    assert [d["datum_kwargs"]["point_number"] for d in datums] == [0, 1, 2]
    with h5py.File(camera.file_name, "r") as f:
        assert f["/entry/data/data"].shape[0] == 3


def test_position_mode_replaces_a_refused_frame_and_cuts_the_file(beamline, ioc):
    camera = beamline.camera
    camera.cam.acquire_time.put(0.01, wait=True)
    camera.stage()
    try:
        camera.trigger().wait(10)
        camera.trigger().wait(10)
        camera.hdf5.next_record.put(1, wait=True)  # refuse the second frame: take it again
        camera.trigger().wait(10)
        camera.trigger().wait(10)
        camera.hdf5.next_record.put(2, wait=True)  # the last frame refused, never re-taken
        datums = [d for n, d in camera.collect_asset_docs() if n == "datum"]
    finally:
        camera.unstage()
    assert [d["datum_kwargs"]["point_number"] for d in datums] == [0, 1, 1, 2]
    with h5py.File(camera.file_name, "r") as f:
        assert f["/entry/data/data"].shape[0] == 2


def test_unstaged_trigger_and_wrong_prefix_fail_clearly(beamline):
    with pytest.raises(RuntimeError, match="not staged"):
        beamline.camera.trigger()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="NOPE:"):
        make_beamline("NOPE:", timeout=1.0)
    assert time.monotonic() - t0 < 10


def test_concurrent_moves_of_two_axes(beamline):
    fx, fy = beamline.sample.fx, beamline.sample.fy
    done = threading.Event()
    st = fx.set(5.0) & fy.set(-5.0)
    st.add_callback(lambda _: done.set())
    assert done.wait(10)
    assert (fx.position, fy.position) == (pytest.approx(5.0), pytest.approx(-5.0))
    (fx.set(0.0) & fy.set(0.0)).wait(10)
