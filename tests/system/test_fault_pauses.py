"""Faults that need a person pause the scan (shutter closed); resuming completes it.

A real session (:func:`services.session.open_session`: the IOC over Channel Access, the
embedded Tiled server, the journal and its delivery thread, the beam suspenders) runs a
small raster; the test injects a fault that the devices' own retries cannot cure, checks
the pause (one-line notice naming the device, shutter closed), clears the fault, resumes,
and judges the run from what Tiled holds.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import epics
import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted

from plans.ptycho import defocused_raster
from services.session import open_session
from simulators.ioc.testing import IOCProcess

pytestmark = pytest.mark.system

PREFIX = "PAU:"
RASTER = dict(
    energy_ev=192.0, area_m=0.4e-6, spot_m=0.2e-6, overlap=0.5, exposure_s=0.02,
    frame_size=64, n_dark=3, mode="step",
)  # fmt: skip
POINTS = 25


def caput(name: str, value) -> None:
    assert epics.caput(f"{PREFIX}{name}", value, wait=True, timeout=5) == 1


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    os.environ["SPTYCHO_BEAM_SETTLE_S"] = "0.5"
    with IOCProcess(PREFIX, args=["--pol-time", "0.2"]):
        with open_session(
            PREFIX, data_dir=tmp_path_factory.mktemp("pauses"), context_managers=[],
            connect_timeout=30,
        ) as s:  # fmt: skip
            s.beamline.camera.frame_timeout_s = 0.5
            yield s
    os.environ.pop("SPTYCHO_BEAM_SETTLE_S", None)


@pytest.fixture(autouse=True)
def clear_faults(session):
    yield
    caput("fault:camera_timeout", 0)
    caput("fault:motor_stall", "")
    caput("fault:beam_dump", 0)


def after_events(RE, n: int, action) -> None:
    """Call ``action`` (in a thread) once the n-th primary event has been emitted."""
    seen = []

    def cb(name, doc):
        if name == "event":
            seen.append(doc)
            if len(seen) == n:
                threading.Thread(target=action, daemon=True).start()

    token = RE.subscribe(cb)
    RE._sptycho_token = token


def assert_complete(session, uid: str) -> None:
    client = session.server.client()
    run = client[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert list(np.asarray(run["primary"].read()["point"])) == list(range(POINTS))
    images = np.asarray(run["primary"]["camera_image"].read(), dtype=np.float64)
    dark = float(np.asarray(run["dark"]["camera_image"].read(), dtype=np.float64).mean())
    assert images.shape[0] == POINTS
    assert images.mean(axis=(1, 2)).min() > dark * 1.2


def run_until_paused(session, inject):
    RE = session.RE
    after_events(RE, 8, inject)
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(defocused_raster(session.beamline, RASTER, guard=RE.guard))
    finally:
        RE.unsubscribe(RE._sptycho_token)
    assert RE.state == "paused"
    return RE


def test_stuck_camera_pauses_with_one_line_and_resume_completes(session):
    RE = run_until_paused(session, lambda: caput("fault:camera_timeout", 100))
    notice = RE.notices.current
    assert notice.startswith("paused: camera: no frame within") and "then resume" in notice
    assert "\n" not in notice
    assert session.beamline.shutter.status.get() == "Closed"  # no dose while paused
    caput("fault:camera_timeout", 0)
    time.sleep(0.5)
    (uid,) = RE.resume()
    assert RE.notices.current is None
    assert_complete(session, uid)
    assert session.beamline.shutter.status.get() == "Closed"


def test_stalled_stage_pauses_naming_the_axis(session):
    fx = session.beamline.sample.fx
    fx.timeout_margin_s = 0.5
    try:
        RE = run_until_paused(session, lambda: caput("fault:motor_stall", "sample:fx"))
    finally:
        fx.timeout_margin_s = 5.0
    notice = RE.notices.current
    assert notice.startswith("paused: sample_fx") and "free the axis, then resume" in notice
    assert session.beamline.shutter.status.get() == "Closed"
    caput("fault:motor_stall", "")
    time.sleep(0.5)
    (uid,) = RE.resume()
    assert_complete(session, uid)


def test_user_pause_closes_the_shutter_and_resume_reopens_it(session):
    RE = run_until_paused(session, lambda: session.RE.request_pause(defer=False))
    assert session.beamline.shutter.status.get() == "Closed"
    opened = []
    token = session.beamline.shutter.status.subscribe(
        lambda value=None, **_: opened.append(value), run=False
    )
    try:
        (uid,) = RE.resume()
    finally:
        session.beamline.shutter.status.unsubscribe(token)
    assert "Open" in opened  # resume opened it again for the rest of the raster
    assert_complete(session, uid)


def test_embedded_tiled_dying_mid_scan_the_run_is_completed(session):
    server = session.server

    def kill():
        os.killpg(server.process.pid, signal.SIGKILL)

    RE = session.RE
    RE.delivery_wait_s = 180
    after_events(RE, 6, kill)
    pid = server.process.pid
    try:
        (uid,) = RE(defocused_raster(session.beamline, RASTER, guard=RE.guard))
    finally:
        RE.unsubscribe(RE._sptycho_token)
    assert server.process.pid != pid  # the session restarted it
    assert_complete(session, uid)
    run = server.client()[uid]
    assert run["dark"]["camera_image"].shape[0] == 3


def test_short_dark_series_reaches_tiled_before_the_run_ends(session):
    """3 dark frames (fewer than any write batch) are in Tiled while the raster still runs."""
    RE = session.RE
    seen: dict = {}

    def check_dark():
        client = session.server.client()
        uid = next(reversed(list(client.keys())))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            run = client[uid]
            if "dark" in run and "camera_image" in run["dark"]:
                seen["dark"] = run["dark"]["camera_image"].shape[0]
                seen["stopped"] = bool(run.metadata.get("stop"))
                if seen["dark"] == 3:
                    return
            time.sleep(0.2)

    after_events(RE, 2, check_dark)
    try:
        (uid,) = RE(defocused_raster(session.beamline, RASTER, guard=RE.guard))
    finally:
        RE.unsubscribe(RE._sptycho_token)
    assert seen == {"dark": 3, "stopped": False}
    assert_complete(session, uid)
