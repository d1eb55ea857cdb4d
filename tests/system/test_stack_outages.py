"""A 2 x 2 stack through a worker kill and a Tiled outage of minutes: every ptychogram
reconstructed once, none redone, none missing.

The acquisition runs the project's RunEngine (journal + delivery thread, suspenders)
against the caproto IOC; the worker is a subprocess. Mid-stack the worker is killed
(SIGKILL) and started again, then the Tiled server is stopped for 100 s while the scan and
the new worker go on, and started again on the same port and catalog.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
from system_helpers import start_worker, stop_worker

from devices.beamline import make_beamline
from plans.ptycho import spectro_stack
from services.acquisition import make_run_engine
from services.delivery import TiledDelivery
from services.journal import DocumentJournal
from services.session import connect_tiled
from services.tiled_server import TiledServer, free_port
from services.worker.tiled_io import ResultStore
from simulators.ioc.testing import IOCProcess

pytestmark = pytest.mark.system

STACK = dict(
    energies=[190.0, 192.0],
    polarizations=["LH", "LV"],
    area_m=0.6e-6,
    spot_m=0.3e-6,
    overlap=0.667,  # 7 x 7 points
    exposure_s=0.05,
    n_dark=3,
    frame_size=64,
    mode="step",  # slow enough to kill the worker mid-ptychogram; fly: test_fly_scan.py
)
POINTS = 49
OUTAGE_S = 100.0


def _statuses(tiled, uid):
    try:
        return ResultStore(tiled.client(), uid).statuses()
    except Exception:  # noqa: BLE001 - Tiled is down on purpose, or the run is being made
        return {}


def test_stack_survives_worker_kill_and_tiled_outage(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    with (
        IOCProcess("OUT:", args=["--pol-time", "0.2"]),
        TiledServer(tmp_path / "tiled", readable=[frames], port=free_port()) as tiled,
    ):
        bl = make_beamline("OUT:", data_dir=str(frames), timeout=30)
        delivery = TiledDelivery(
            lambda: connect_tiled(tiled.uri, tiled.api_key), DocumentJournal(tmp_path / "journal")
        )
        RE = make_run_engine(delivery=delivery, beamline=bl, context_managers=[])
        RE.delivery_wait_s = 300
        uids: list[str] = []
        RE.subscribe(lambda name, doc: uids.append(doc["uid"]) if name == "start" else None)
        log = open(tmp_path / "worker.log", "ab")  # noqa: SIM115 - closed below
        worker = start_worker(tiled, log, "AP**40")
        result: dict = {}
        acquisition = threading.Thread(
            target=lambda: result.update(uids=RE(spectro_stack(bl, STACK, guard=RE.guard)))
        )
        t0 = time.monotonic()
        acquisition.start()
        try:
            # 1. kill the worker while it reconstructs ptychogram 1, start a new one. "running"
            # is written when the worker takes the ptychogram on: with live refreshes while
            # its frames arrive, or straight to the final chain when the worker was still
            # busy with ptychogram 0 until they had all arrived (a loaded machine)
            while time.monotonic() - t0 < 240:
                st = _statuses(tiled, uids[0]) if uids else {}
                if st.get(1, {}).get("status") == "running":
                    break
                time.sleep(0.2)
            else:
                pytest.fail("ptychogram 1 never started")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            worker = start_worker(tiled, log, "AP**40")
            time.sleep(3.0)
            # 2. Tiled away for minutes while the scan and the new worker go on
            tiled.stop()
            time.sleep(OUTAGE_S)
            tiled.start()
            acquisition.join(400)
            assert not acquisition.is_alive()
            uid = uids[0]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                st = _statuses(tiled, uid)
                if len(st) == 4 and all(md.get("status") == "done" for md in st.values()):
                    break
                time.sleep(0.5)
            worker_alive = worker.poll() is None
        finally:
            stop_worker(worker, log)
            delivery.close(5)
        assert worker_alive, (tmp_path / "worker.log").read_text()[-3000:]
        assert result["uids"] == (uid,)
        client = tiled.client()
        run = client[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        table = run["primary"].read()
        assert np.array_equal(np.asarray(table["ptychogram"]), np.repeat(np.arange(4), POINTS))
        assert np.array_equal(np.asarray(table["point"]), np.tile(np.arange(POINTS), 4))
        assert run["primary"]["camera_image"].shape[0] == 4 * POINTS
        statuses = ResultStore(client, uid).statuses()
        assert sorted(statuses) == [0, 1, 2, 3]
        assert all(md["status"] == "done" for md in statuses.values()), statuses
        assert [statuses[k]["completions"] for k in range(4)] == [1, 1, 1, 1]  # none redone
        assert statuses[1]["starts"] == 2  # the killed one, started again once
        for k in range(4):
            assert statuses[k]["frames_used"] == POINTS
            llk = run["recon"][f"p{k:04d}"]["llk"].read()
            assert llk[-1] < 0.5 * llk[0]
