"""The worker survives a Tiled restart: the embedded server is stopped in the middle of a
ptychogram and started again on the same port and directory; the real worker (a
``python -m services.worker`` process) logs one line per outage, waits, and finishes the
reconstruction it was on once Tiled is back."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter

from services.tiled_server import TiledServer, free_port
from services.worker.replay import raw_dark, replay
from services.worker.tiled_io import ResultStore
from simulators.dataset import simulate_ptychogram

HELD_AT = 4  # the acquisition waits after this frame while Tiled is down


@pytest.fixture
def tiled(tmp_path):
    server = TiledServer(tmp_path / "tiled", port=free_port()).start()
    yield server
    server.stop()


def _worker(tiled, log):
    env = dict(
        os.environ,
        SPTYCHO_BACKEND="numpy",
        SPTYCHO_ALGORITHM="AP**20",
        SPTYCHO_POLL_INTERVAL_S="0.2",
        SPTYCHO_REFRESH_FRAMES="3",
        SPTYCHO_LIVE_ITERATIONS="2",
        SPTYCHO_TILED_TIMEOUT_S="10",
        SPTYCHO_TILED_RETRY_MAX_S="1",
        # the tiled client's own retries give up after 2 s: the worker's waits take over
        TILED_RETRY_TIMEOUT="2",
        TILED_RETRY_ATTEMPTS="3",
    )
    cmd = [sys.executable, "-m", "services.worker", "--tiled-uri", tiled.uri]
    cmd += ["--api-key", tiled.api_key]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def _result(client, uid):
    try:
        return ResultStore(client, uid).statuses().get(0)
    except KeyError:  # the run is being created
        return None


def test_worker_waits_for_a_restarted_tiled_and_finishes(tiled, tmp_path):
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=64, seed=3, **kw)
    p.frames = p.frames.astype(np.float32)
    gate = threading.Event()
    uids = []

    def hold(k, i):
        if i == HELD_AT:
            assert gate.wait(180)

    def acquire():
        writer = TiledWriter(tiled.client(), batch_size=1)
        writer_uid = replay(
            lambda name, doc: (
                (uids.append(doc["uid"]) if name == "start" else None) or writer(name, doc)
            ),
            [p],
            raw_dark(p),
            on_frame=hold,
        )
        assert writer_uid == uids[0]

    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        worker = _worker(tiled, log)
        acquisition = threading.Thread(target=acquire, daemon=True)
        try:
            acquisition.start()
            client = tiled.client()
            _wait(lambda: uids, 60, "run started")
            uid = uids[0]
            live = _wait(
                lambda: (
                    (md := _result(client, uid))
                    and md.get("status") == "running"
                    and md.get("frames_used", 0) >= 4
                    and md
                ),
                90,
                "a live result",
            )
            assert live["frames_used"] <= HELD_AT + 1
            tiled.stop()  # connection refused from now on
            time.sleep(8)
            assert worker.poll() is None, "the worker died with Tiled"
            tiled.start()  # same port, same directory
            gate.set()
            acquisition.join(120)
            assert not acquisition.is_alive()
            client = tiled.client()
            done = _wait(
                lambda: (md := _result(client, uid)) and md.get("status") == "done" and md,
                120,
                "the final result",
            )
            assert worker.poll() is None
        finally:
            gate.set()
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
    assert done["frames_used"] == done["frames_total"] == 9
    assert done["iterations"] >= 20
    # the task waited instead of failing: started once, finished once
    assert done["starts"] == 1 and done["completions"] == 1
    assert not any("Error" in m for m in done["messages"]), done["messages"]
    text = log_path.read_text(errors="replace")
    task = f"run {uid[:8]} ptychogram 0"
    assert len(re.findall(rf"{task}: Tiled unreachable", text)) == 1, text
    assert len(re.findall(r"worker: Tiled unreachable", text)) == 1, text
    assert re.search(rf"{task}: working again after \d+\.\d s", text), text
    assert re.search(r"worker: working again after \d+\.\d s", text), text
    assert "Traceback" not in text, text
