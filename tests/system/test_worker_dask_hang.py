"""A reconstruction process that hangs: the streaming worker on its local Dask cluster
(worker processes with nannies), against a real embedded Tiled. The Dask worker process that
reconstructs the ptychogram is frozen (SIGSTOP: no heartbeat, no progress, as in a deadlock)
in the middle of the scan; the cluster's scheduler notices the missing heartbeats after
``dask_worker_ttl_s``, the nanny kills the process and starts a new one, and the ptychogram
is reconstructed again there from what Tiled holds. Judged from Tiled: one final result from
every frame, started twice, finished once, by another process."""

import os
import signal
import threading

import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter
from service_process import wait_for  # tests/system

from services.tiled_server import TiledServer, free_port
from services.worker.config import WorkerSettings
from services.worker.replay import raw_dark, replay
from services.worker.service import Worker
from services.worker.tiled_io import ResultStore
from simulators.dataset import simulate_ptychogram

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

HELD_AT = 4  # the acquisition waits after this frame until the process is frozen


@pytest.fixture
def tiled(tmp_path):
    server = TiledServer(tmp_path / "tiled", port=free_port()).start()
    yield server
    server.stop()


def _result(client, uid):
    """The metadata of the run's ptychogram 0 (KeyError while the run is being made:
    ``wait_for`` asks again)."""
    return ResultStore(client, uid).statuses().get(0)


def _pid(event):
    return int(event["worker"].rsplit(":", 1)[1])


def test_a_hung_reconstruction_process_is_replaced_and_nothing_is_lost(tiled):
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=64, seed=5, **kw)
    p.frames = p.frames.astype(np.float32)
    gate = threading.Event()
    uids = []

    def hold(k, i):
        if i == HELD_AT:
            assert gate.wait(240)

    def acquire():
        writer = TiledWriter(tiled.client(), batch_size=1)
        replay(
            lambda name, doc: (
                (uids.append(doc["uid"]) if name == "start" else None) or writer(name, doc)
            ),
            [p],
            raw_dark(p),
            on_frame=hold,
        )

    settings = WorkerSettings(
        tiled_uri=tiled.uri,
        tiled_api_key=tiled.api_key,
        executor="dask",
        max_concurrent=1,
        # short for the test (Dask's floor for one worker is 5 s), long enough that a worker
        # slowed down by a loaded machine is not taken for a hung one
        dask_worker_ttl_s=15.0,
        backend="numpy",
        algorithm="AP**20",
        poll_interval_s=0.2,
        refresh_frames=3,
        live_iterations=2,
    )
    worker = Worker(settings, processes=True, analyze_stacks=False)
    loop = threading.Thread(target=worker.run_forever, daemon=True)
    acquisition = threading.Thread(target=acquire, daemon=True)
    frozen = None
    try:
        loop.start()
        acquisition.start()
        client = tiled.client()
        wait_for(lambda: uids, 60, "run started", [])
        uid = uids[0]
        live = wait_for(
            lambda: (md := _result(client, uid)) and md.get("frames_used", 0) >= 4 and md,
            120,
            "a live result",
            [],
        )
        assert live["status"] == "running"
        frozen = _pid(live["history"][-1])
        assert frozen != os.getpid()  # a Dask worker process, not this one
        os.kill(frozen, signal.SIGSTOP)
        gate.set()  # the rest of the frames land while the process is frozen
        acquisition.join(120)
        assert not acquisition.is_alive()
        done = wait_for(
            lambda: (md := _result(client, uid)) and md.get("status") == "done" and md,
            240,
            "the final result after the hung process",
            [],
        )
        replaced = _gone(frozen)  # before this test kills anything itself
    finally:
        gate.set()
        if frozen is not None and _state(frozen) == "T":  # still frozen: ours to end
            os.kill(frozen, signal.SIGKILL)
        worker.stop()
        loop.join(60)
    assert replaced, "the nanny did not end the frozen process"
    assert done["frames_used"] == done["frames_total"] == p.n_frames
    assert done["iterations"] >= 20
    # started on the frozen process, started again elsewhere, finished once, not by it
    starts = [_pid(e) for e in done["history"] if e["event"] == "start"]
    assert done["starts"] >= 2 and done["completions"] == 1
    assert frozen in starts and starts[-1] != frozen
    assert _pid(done["history"][-1]) == starts[-1]
    # nothing bad was kept: the result is the final one, finite, from the whole scan
    obj = client[uid]["recon"]["p0000"]["object"].read()
    assert np.all(np.isfinite(obj)) and np.abs(obj).max() > 0
    llk = client[uid]["recon"]["p0000"]["llk"].read()
    assert llk[-1] < llk[0]


def _state(pid):
    """The process's state letter (``T`` stopped, ``Z`` zombie, ...), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _gone(pid):
    return _state(pid) in (None, "Z", "X")
