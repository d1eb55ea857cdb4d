"""The streaming worker on a live stack: IOC + plan + Tiled + worker (a subprocess that is
killed mid-stack and started again)."""

import signal
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from system_helpers import lit_phase_correlation, start_worker, stop_worker

from devices.beamline import make_beamline
from plans.ptycho import spectro_stack
from services.tiled_server import TiledServer
from services.worker.tiled_io import ResultStore
from simulators.ioc.testing import IOCProcess

pytestmark = pytest.mark.system

STACK = dict(
    energies=[190.0, 192.0],
    polarizations=["LH", "LV"],
    area_m=0.6e-6,
    spot_m=0.3e-6,
    overlap=0.667,  # 7 x 7 points, step 0.1 um
    exposure_s=0.01,
    n_dark=3,
    frame_size=64,
    mode="step",  # slow enough to kill the worker mid-ptychogram; fly: test_fly_scan.py
)
POINTS = 49


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    frames = tmp_path_factory.mktemp("wdata") / "frames"
    frames.mkdir()
    return frames


@pytest.fixture(scope="module")
def ioc():
    with IOCProcess("WRK:", args=["--pol-time", "0.2"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def tiled(tmp_path_factory, frames_dir):
    with TiledServer(tmp_path_factory.mktemp("wtiled"), readable=[frames_dir]) as server:
        yield server


def test_worker_follows_the_stack_survives_a_kill_and_reconstructs(ioc, tiled, frames_dir):
    client = tiled.client()
    bl = make_beamline("WRK:", data_dir=str(frames_dir), timeout=30)
    RE = RunEngine({}, context_managers=[])
    RE.subscribe(TiledWriter(client, batch_size=1))  # frames land in Tiled as taken
    uids = []
    RE.subscribe(lambda name, doc: uids.append(doc["uid"]) if name == "start" else None)
    log = open(frames_dir.parent / "worker.log", "ab")  # noqa: SIM115 - closed below
    worker = start_worker(tiled, log)
    seen = []  # (index, status, frames_used) as a viewer polling Tiled sees them
    stop_watch = threading.Event()

    def watch():
        while not stop_watch.is_set():
            if uids:
                try:
                    for k, md in ResultStore(client, uids[0]).statuses().items():
                        seen.append((k, md.get("status"), md.get("frames_used")))
                except Exception:  # noqa: BLE001 - the run is being created
                    pass
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    acquisition = threading.Thread(target=lambda: RE(spectro_stack(bl, STACK)))
    t0 = time.monotonic()
    acquisition.start()
    try:
        # kill the worker (SIGKILL: no clean-up) once ptychogram 1 has a live result
        while time.monotonic() - t0 < 150:
            if any(k == 1 and s == "running" and (f or 0) > 0 for k, s, f in seen):
                break
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_at = max((f or 0 for k, s, f in seen if k == 1), default=0)
        worker = start_worker(tiled, log)
        acquisition.join(180)
        assert not acquisition.is_alive()
        uid = uids[0]
        store = ResultStore(client, uid)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            st = store.statuses()
            if len(st) == 4 and all(md.get("status") == "done" for md in st.values()):
                break
            time.sleep(0.5)
    finally:
        stop_watch.set()
        stop_worker(worker, log)
    statuses = store.statuses()
    assert sorted(statuses) == [0, 1, 2, 3]
    assert all(md["status"] == "done" for md in statuses.values()), statuses
    # nothing done twice; the killed ptychogram was started again, once
    assert [statuses[k]["completions"] for k in range(4)] == [1, 1, 1, 1]
    assert statuses[1]["starts"] == 2 and 0 < killed_at < POINTS
    assert statuses[0]["starts"] == 1 and statuses[3]["starts"] == 1
    # live partial results were visible before ptychograms completed
    partial = [(k, f) for k, s, f in seen if s == "running" and f and f < POINTS]
    assert {k for k, _ in partial} >= {0, 1}
    run = client[uid]
    table = run["primary"].read()
    for k in range(4):
        md = statuses[k]
        assert md["frames_used"] == POINTS and md["frames_total"] == POINTS
        assert md["iterations"] >= 60 and md["backend"] == "numpy"
        node = run["recon"][f"p{k:04d}"]
        obj = node["object"].read()
        assert obj.dtype == np.complex64
        assert node["object_phase"].read().shape == obj.shape
        assert node["llk"].read()[-1] < 0.2 * node["llk"].read()[0]
        rows = np.asarray(table["ptychogram"]) == k
        pos = np.stack([table["sample_fy"][rows], table["sample_fx"][rows]], axis=1) * 1e-6
        assert np.abs(node["probe_amplitude"].read()).max() > 0
        corr = lit_phase_correlation(obj, md, pos, STACK["spot_m"], 64)
        assert corr >= 0.9, (k, corr)
