"""Scans through a real bluesky queue server: the page's controller, the page, the console.

One queue server for the module (:mod:`queue_server`: the project's startup module, an
embedded Tiled server, a caproto IOC, a private Redis), since it is slow to start. Every
outcome is read back from the queue server's own status and history and from Tiled.
"""

import subprocess
import time

import pytest
from pydantic import ValidationError
from queue_server import BIN, queue_beamline
from service_process import Service, wait_for
from test_live_page import _open, browser  # noqa: F401 - the module's Chromium fixture

from services.api.control import ControllerBusy, ScanRequest
from services.api.queue_control import QueueController
from services.queue_client import connect_manager
from services.tiled_server import free_port

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

PREFIX = "QC:"
KEY = "operator-key-queue-1"
# 2 x (3 x 3) points: a few seconds, long enough to pause in the middle
SMALL = dict(
    energies=[190.0, 192.0],
    polarizations=["LH"],
    area_m=0.4e-6,
    spot_m=0.3e-6,
    overlap=0.5,
    exposure_s=0.3,
    n_dark=1,
    frame_size=64,
)


@pytest.fixture(scope="module")
def beamline(tmp_path_factory):
    with queue_beamline(tmp_path_factory.mktemp("queue"), PREFIX) as qb:
        yield qb


@pytest.fixture
def controller(beamline):
    published = []
    ctl = QueueController(connect_manager(beamline.control), poll_s=0.2)
    ctl.on_change = published.append
    ctl.published = published
    yield ctl
    ctl.close()
    beamline.RM.queue_clear()


def _until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout} s")


def _run_stop(beamline, uid):
    run = beamline.tiled.client()[uid]
    return run.metadata["stop"]


def test_bad_parameters_are_refused_before_anything_is_queued(beamline, controller):
    with pytest.raises(ValidationError, match="overlap"):
        controller.start(ScanRequest(kind="stack", params={**SMALL, "overlap": 1.5}))
    assert beamline.RM.queue_get(reload=True)["items"] == []
    with pytest.raises(ControllerBusy, match="nothing running"):
        controller.pause()
    state = controller.state()
    assert state["backend"] == "queue" and state["state"] == "idle" and state["queue"] == []


def test_a_scan_over_its_dose_budget_is_refused_with_the_number_and_not_requeued(
    beamline, controller
):
    """The plan refuses at its start in the queue server; the page gets the line (422) and
    the item is not left at the front of the queue; no run is written."""
    runs_before = len(beamline.tiled.client())
    # no flux given: the plan reads I0 when it starts (the model alone cannot refuse it)
    over = dict(SMALL, sample="BN-queue", dose_budget_gray=1.0)
    with pytest.raises(ValueError, match=r"^refused: point .* sample 'BN-queue' would reach"):
        controller.start(ScanRequest(kind="stack", params=over))
    assert beamline.RM.queue_get(reload=True)["items"] == []
    assert len(beamline.tiled.client()) == runs_before
    state = controller.state()
    assert state["state"] == "idle" and state["last_exit"] == "fail", state
    assert "refused: point" in state["last_error"], state


def test_start_pause_resume_from_the_controller_ends_in_tiled(beamline, controller):
    state = controller.start(ScanRequest(kind="stack", params=SMALL))
    assert state["state"] == "running", state
    assert state["plan"]["name"] == "ptycho_stack" and state["plan"]["kind"] == "stack"
    assert state["plan"]["params"]["energies"] == SMALL["energies"]
    assert state["plan"]["user"] == "sptycho web page"
    assert state["plan"]["params"]["md"] == {"queued_by": "sptycho web page"}
    paused = controller.pause()
    assert paused["state"] == "paused", paused
    assert beamline.RM.status(reload=True)["manager_state"] == "paused"
    resumed = controller.resume()
    assert resumed["state"] in ("running", "idle"), resumed
    _until(lambda: controller.state()["state"] == "idle", 120, "the stack did not end")
    final = _until(lambda: (s := controller.state())["last_uid"] and s, 10, "no last uid")
    assert final["last_exit"] == "success" and final["last_error"] is None
    assert _run_stop(beamline, final["last_uid"])["exit_status"] == "success"
    states = [m["state"] for m in controller.published]
    assert "paused" in states and states[-1] == "idle", states  # published by the poller


def test_a_console_item_shows_as_running_and_the_page_abort_does_not_requeue_it(
    beamline, controller
):
    from bluesky_queueserver_api import BPlan

    RM = beamline.RM  # another client: an operator at the console
    RM.item_add(BPlan("ptycho_stack", **SMALL, md={"purpose": "console"}))
    RM.item_add(BPlan("ptycho_raster", energy_ev=190.0, area_m=0.4e-6, spot_m=0.3e-6))
    RM.queue_start()
    state = _until(lambda: (s := controller.state())["state"] == "running" and s, 20, "not running")
    assert state["plan"]["user"] == "Queue Server API User"  # the console's default name
    assert state["plan"]["params"]["md"] == {"purpose": "console"}
    assert [i["name"] for i in state["queue"]] == ["ptycho_raster"]
    aborted = controller.abort()
    assert aborted["state"] == "idle" and aborted["last_exit"] == "abort", aborted
    # the queue server pushed the aborted stack back; the page's abort removed it again
    assert [i["name"] for i in RM.queue_get(reload=True)["items"]] == ["ptycho_raster"]
    assert [i["name"] for i in aborted["queue"]] == ["ptycho_raster"]
    assert _run_stop(beamline, aborted["last_uid"])["exit_status"] == "abort"


def test_the_page_runs_a_stack_through_the_queue_server(beamline, browser, tmp_path):  # noqa: F811
    port = free_port()
    web = Service(
        "web",
        [BIN / "sptycho", "web", "--tiled-uri", beamline.tiled.uri, "--port", port]
        + ["--queue-server", beamline.control],
        dict(beamline.env, SPTYCHO_API_KEY=KEY, SPTYCHO_API_TILED_API_KEY=beamline.tiled.api_key),
        tmp_path,
    )
    with web:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _health(url), 60, "the web page did not answer", [web])
        page, errors = _open(browser, url)
        page.wait_for_function("document.getElementById('scan-backend').textContent === 'queue'")
        page.fill("#scan-energies", "190,192")
        page.fill("#scan-area", "0.4")
        page.fill("#scan-spot", "0.3")
        page.fill("#scan-overlap", "0.5")
        page.fill("#scan-exposure", "0.3")
        page.fill("#operator-key", KEY)
        page.click("#scan-start")
        page.wait_for_function("document.getElementById('scan-state').dataset.state === 'running'")
        running = page.text_content("#scan-running")
        assert "ptycho_stack" in running and "sptycho web page" in running, running
        page.click("#scan-pause")
        page.wait_for_function("document.getElementById('scan-state').dataset.state === 'paused'")
        assert beamline.RM.status(reload=True)["manager_state"] == "paused"
        # an item queued from the console shows as pending on the page
        from bluesky_queueserver_api import BPlan

        beamline.RM.item_add(BPlan("ptycho_raster", energy_ev=190.0, spot_m=0.3e-6))
        page.wait_for_function(
            "document.querySelectorAll('#scan-queue li').length === 1", timeout=10_000
        )
        assert "ptycho_raster" in page.text_content("#scan-queue")
        beamline.RM.item_remove(pos="back")
        page.click("#scan-resume")
        page.wait_for_function(
            "document.getElementById('scan-state').dataset.state === 'idle'", timeout=120_000
        )
        page.wait_for_function("document.querySelectorAll('#scan-queue li').length === 0")
        history = beamline.RM.history_get(reload=True)["items"]
        result = history[-1]["result"]
        assert history[-1]["name"] == "ptycho_stack" and result["exit_status"] == "completed"
        (uid,) = result["run_uids"]
        run = beamline.tiled.client()[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run["primary"]["camera_image"].read().shape == (2 * 9, 64, 64)
        assert not errors
        page.close()


def _health(url):
    import httpx

    return httpx.get(url + "api/scan", timeout=5).json().get("backend") == "queue"


def _sptycho(*args):
    return subprocess.run(
        [str(BIN / "sptycho"), *args], capture_output=True, text=True, timeout=300
    )


def test_the_console_queues_a_scan_and_follows_it_to_tiled(beamline):
    history_before = len(beamline.RM.history_get(reload=True)["items"])
    bad = _sptycho("scan", "stack", "--queue", beamline.control, "--overlap", "1.5")
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "overlap" in lines[0], bad.stderr
    assert beamline.RM.queue_get(reload=True)["items"] == []

    done = _sptycho(
        "scan",
        "raster",
        "--queue",
        beamline.control,
        "--energy",
        "190",
        "--area",
        "0.4e-6",
        "--spot",
        "0.3e-6",
        "--overlap",
        "0.5",
        "--exposure",
        "0.05",
        "--dark",
        "1",
        "--frame-size",
        "64",
    )
    assert done.returncode == 0, done.stderr
    item_uid = done.stdout.splitlines()[0]
    run_line = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    history = beamline.RM.history_get(reload=True)["items"]
    assert len(history) == history_before + 1 and history[-1]["item_uid"] == item_uid
    assert history[-1]["user"] == "sptycho scan"
    (uid,) = history[-1]["result"]["run_uids"]
    assert run_line == [f"run {uid}"]
    run = beamline.tiled.client()[uid]
    assert run.metadata["start"]["plan_name"] == "defocused_raster"
    assert run.metadata["start"]["queued_by"] == "sptycho scan"
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run["primary"]["camera_image"].read().shape == (9, 64, 64)


def test_a_wrong_queue_address_is_one_line_and_queues_nothing(tmp_path):
    nobody = f"tcp://127.0.0.1:{free_port()}"
    for address, words in [("queue.example:60615", "use tcp://"), (nobody, "not answering")]:
        out = _sptycho("scan", "raster", "--queue", address, "--energy", "190")
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1 and words in lines[0], out.stderr
    web = _sptycho(
        "web", "--tiled-uri", "http://127.0.0.1:1", "--beamline", "X:", "--queue-server", nobody
    )
    assert web.returncode != 0 and len(web.stderr.strip().splitlines()) == 1, web.stderr
