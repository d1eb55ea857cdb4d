"""Beamline faults injected mid-scan: what lands in Tiled is complete, once, and clean.

Every test runs ``sptycho scan raster`` as a user would (a subprocess) against the caproto
IOC over Channel Access and a real Tiled server, injects a fault through the IOC's fault
PVs (or stops Tiled) while the scan runs, and then judges the run from what Tiled holds:
every planned point in the primary stream exactly once, no primary frame at dark level, a
stop document that says success, exit status 0 and no traceback on the console.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import epics
import numpy as np
import pytest

from services.tiled_server import TiledServer, free_port
from simulators.ioc.testing import IOCProcess

pytestmark = pytest.mark.system

PREFIX = "FLT:"
#: 7 x 7 points of 64 px frames, 20 ms exposures, 5 dark frames
SCAN = [
    "--area", "0.6e-6", "--spot", "0.2e-6", "--overlap", "0.5", "--exposure", "0.02",
    "--frame-size", "64", "--dark", "5", "--energy", "192", "--mode", "step",
]  # fmt: skip
POINTS = 49
SCAN_BIN = str(Path(sys.executable).parent / "sptycho")


@pytest.fixture(scope="module")
def ioc():
    with IOCProcess(PREFIX, args=["--pol-time", "0.2"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def tiled(data_dir):
    frames = data_dir / "frames"
    frames.mkdir(exist_ok=True)
    with TiledServer(data_dir / "tiled", readable=[frames], port=free_port()) as server:
        yield server


def caput(name: str, value) -> None:
    assert epics.caput(f"{PREFIX}{name}", value, wait=True, timeout=5) == 1


@pytest.fixture(autouse=True)
def clear_faults(ioc):
    yield
    caput("fault:beam_dump", 0)
    caput("fault:drop_frames", 0)
    caput("fault:camera_timeout", 0)
    caput("fault:motor_stall", "")


class Scan:
    """``sptycho scan raster`` in a subprocess; ``events()`` counts what Tiled has."""

    def __init__(self, tiled: TiledServer, data_dir: Path, *extra: str, env: dict | None = None):
        self.tiled = tiled
        self.before = set(tiled.client().keys())
        cmd = [SCAN_BIN, "scan", "raster", *SCAN, "--prefix", PREFIX, "--data-dir", str(data_dir)]
        cmd += ["--tiled-uri", tiled.uri, "--api-key", tiled.api_key, *extra]
        environ = dict(os.environ, SPTYCHO_BEAM_SETTLE_S="0.5", **(env or {}))
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environ,
        )

    def run_uid(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                new = set(self.tiled.client().keys()) - self.before
            except Exception:  # noqa: BLE001 - Tiled may be down on purpose
                new = set()
            if new:
                return new.pop()
            time.sleep(0.2)
        raise AssertionError("no run appeared in Tiled")

    def wait_events(self, n: int, timeout: float = 120.0) -> None:
        """Wait until ``n`` primary frames are in Tiled."""
        uid = self.run_uid()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.tiled.client()[uid]
            if "primary" in run and "camera_image" in run["primary"]:
                if run["primary"]["camera_image"].shape[0] >= n:
                    return
            time.sleep(0.1)
        raise AssertionError(f"fewer than {n} frames reached Tiled")

    def finish(self, timeout: float = 400.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def assert_complete_and_clean(client, uid: str, points: int = POINTS) -> dict:
    """Every point once, in order, no dark-level frame, stop says success."""
    run = client[uid]
    stop = run.metadata["stop"]
    assert stop["exit_status"] == "success", stop
    table = run["primary"].read()
    assert list(np.asarray(table["point"])) == list(range(points))
    images = np.asarray(run["primary"]["camera_image"].read(), dtype=np.float64)
    assert images.shape[0] == points
    dark = np.asarray(run["dark"]["camera_image"].read(), dtype=np.float64)
    dark_level = float(dark.mean())
    means = images.mean(axis=(1, 2))
    bright = float(np.median(means))
    assert bright > dark_level * 1.2  # the sample is lit
    # a frame without beam sits at the dark level; every kept frame is well above it
    assert means.min() > dark_level + 0.5 * (bright - dark_level), (means.min(), dark_level)
    assert np.all(np.asarray(table["beam_i0"]) > 1e4)
    return {"table": table, "stop": stop, "means": means, "dark": dark_level}


def assert_quiet(err: str) -> None:
    assert "Traceback" not in err, err[-3000:]


def test_clean_scan_reference(ioc, tiled, data_dir):
    scan = Scan(tiled, data_dir)
    code, out, err = scan.finish()
    assert code == 0, err[-2000:]
    assert_quiet(err)
    assert "caRepeater" not in err
    uid = scan.run_uid()
    assert_complete_and_clean(tiled.client(), uid)
    assert uid in out


def test_beam_dump_suspends_and_retakes(ioc, tiled, data_dir):
    scan = Scan(tiled, data_dir)
    scan.wait_events(12)
    caput("fault:beam_dump", 1)
    time.sleep(3.0)
    caput("fault:beam_dump", 0)
    code, out, err = scan.finish()
    assert code == 0, err[-2000:]
    assert_quiet(err)
    assert "suspended: beam lost (ring 0.0 mA)" in err or "suspended: beam lost (I0 0" in err
    assert_complete_and_clean(tiled.client(), scan.run_uid())


@pytest.mark.parametrize(
    ("fault", "value", "words"),
    [
        ("fault:drop_frames", 2, "dropped the frame; retrying"),  # two dropped frames
        ("fault:camera_timeout", 1, "camera: no frame within"),  # one stuck frame
    ],
)
def test_camera_faults_are_retaken(ioc, tiled, data_dir, fault, value, words):
    scan = Scan(tiled, data_dir)
    scan.wait_events(10)
    caput(fault, value)
    code, out, err = scan.finish()
    assert code == 0, err[-2000:]
    assert_quiet(err)
    assert words in err
    assert_complete_and_clean(tiled.client(), scan.run_uid())


def test_beam_lost_for_good_ends_the_scan_with_the_data_kept(ioc, tiled, data_dir):
    scan = Scan(tiled, data_dir, env={"SPTYCHO_BEAM_TIMEOUT_S": "3"})
    scan.wait_events(10)
    caput("fault:beam_dump", 1)
    code, out, err = scan.finish()
    caput("fault:beam_dump", 0)
    assert code == 1
    assert_quiet(err)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "beam lost (ring 0.0 mA) for more than 3 s" in lines[0], err
    run = tiled.client()[scan.run_uid()]
    stop = run.metadata["stop"]
    assert stop["exit_status"] == "fail"
    assert "beam lost" in stop["reason"] and "Traceback" not in stop["reason"]
    points = np.asarray(run["primary"].read()["point"])
    assert 10 <= len(points) < POINTS and list(points) == list(range(len(points)))
    images = np.asarray(run["primary"]["camera_image"].read(), dtype=np.float64)
    dark = float(np.asarray(run["dark"]["camera_image"].read(), dtype=np.float64).mean())
    assert images.shape[0] == len(points)
    assert images.mean(axis=(1, 2)).min() > dark * 1.2  # nothing taken without beam kept


def test_tiled_down_for_minutes_the_scan_runs_and_completes_there(ioc, tiled, data_dir):
    """Tiled stops after some frames and comes back 100 s later, after the scan ended."""
    scan = Scan(tiled, data_dir, "--exposure", "0.5")
    scan.wait_events(5)
    tiled.stop()
    t_down = time.monotonic()
    # the scan goes on without Tiled: it finishes while the server is down
    try:
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline and scan.proc.poll() is None:
            time.sleep(1.0)
        journal = data_dir / "journal"
        assert any(journal.glob("*.jsonl"))
        time.sleep(max(0.0, 100 - (time.monotonic() - t_down)))
    finally:
        tiled.start()
    code, out, err = scan.finish()
    assert code == 0, err[-2000:]
    assert_quiet(err)
    assert "does not answer" in err
    assert_complete_and_clean(tiled.client(), scan.run_uid())


def test_scan_started_while_tiled_is_down_still_runs(ioc, tiled, data_dir):
    before = set(tiled.client().keys())
    tiled.stop()
    try:
        scan = Scan.__new__(Scan)
        scan.tiled, scan.before = tiled, before
        cmd = [SCAN_BIN, "scan", "raster", *SCAN, "--prefix", PREFIX]
        cmd += ["--data-dir", str(data_dir), "--tiled-uri", tiled.uri, "--api-key", tiled.api_key]
        scan.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

        def restart_later() -> None:
            time.sleep(25)
            tiled.start()

        restarter = threading.Thread(target=restart_later)
        restarter.start()
        code, out, err = scan.finish()
        restarter.join()
    finally:
        if tiled.process is None:
            tiled.start()
    assert code == 0, err[-2000:]
    assert_quiet(err)
    assert_complete_and_clean(tiled.client(), scan.run_uid())


def test_bad_tiled_key_and_uri_are_one_line(ioc, tiled, data_dir):
    for extra, words in (
        (["--tiled-uri", tiled.uri, "--api-key", "wrong"], "refuses the API key"),
        (["--tiled-uri", "localhost:8000"], "not an http(s)://host[:port] address"),
    ):
        proc = subprocess.run(
            [SCAN_BIN, "scan", "raster", *SCAN, "--prefix", PREFIX, "--data-dir", str(data_dir),
             *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.strip().splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
