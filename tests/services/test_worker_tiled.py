"""The worker against a real (embedded) Tiled server, fed by replayed documents: results
land next to the run, bad frames are masked and reported, a restarted worker skips what is
done, and the Dask executor runs the same task."""

import threading
import time

import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter

from services.tiled_server import TiledServer
from services.worker import Worker, load_settings
from services.worker.replay import raw_dark, replay
from services.worker.tiled_io import ResultStore
from simulators.dataset import simulate_ptychogram


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    with TiledServer(tmp_path_factory.mktemp("tiled")) as server:
        yield server


@pytest.fixture(scope="module")
def ptychograms():
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    kw.update(exposure_s=0.1, frame_size=64, seed=3)
    a = simulate_ptychogram(polarization="LH", **kw)
    b = simulate_ptychogram(polarization="LV", **kw)
    frames = b.frames.astype(np.float32)
    frames[4, 10, 12] = np.nan  # a broken frame, masked and reported
    b.frames = frames
    a.frames = a.frames.astype(np.float32)  # one dtype for the replayed stream
    return [a, b]


def _settings(tiled, **kw):
    base = dict(
        tiled_uri=tiled.uri,
        tiled_api_key=tiled.api_key,
        backend="numpy",
        algorithm="AP**20",
        poll_interval_s=0.2,
        refresh_frames=3,
        live_iterations=2,
    )
    return load_settings(**{**base, **kw})


def _wait_done(client, uid, n, timeout=90):
    store = ResultStore(client, uid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = store.statuses()
        if len(st) == n and all(md.get("status") in ("done", "failed") for md in st.values()):
            return st
        time.sleep(0.2)
    raise AssertionError(f"not done in {timeout} s: {store.statuses()}")


def test_results_next_to_the_run_and_restart_skips_done(tiled, ptychograms):
    client = tiled.client()
    worker = Worker(_settings(tiled))
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        uid = replay(TiledWriter(client, batch_size=1), ptychograms, raw_dark(ptychograms[0]))
        st = _wait_done(client, uid, 2)
    finally:
        worker.stop()
        thread.join(30)
    assert [st[k]["status"] for k in (0, 1)] == ["done", "done"]
    assert st[0]["polarization"] == "LH" and st[1]["polarization"] == "LV"
    assert st[0]["frames_used"] == st[0]["frames_total"] == 9
    assert st[0]["energy_ev"] == pytest.approx(192.0)
    assert st[0]["iterations"] >= 20 and st[0]["completions"] == 1 and st[0]["starts"] == 1
    assert not any("NaN" in m for m in st[0]["messages"])
    assert any("1 frame(s) with NaN/inf pixels" in m for m in st[1]["messages"])
    node = client[uid]["recon"]["p0001"]
    obj = node["object"].read()
    assert obj.dtype == np.complex64 and np.isfinite(obj).all()
    assert node["object_phase"].read().shape == obj.shape
    assert node["probe"].read().shape == (1, 64, 64)
    assert len(node["llk"].read()) == st[1]["iterations"]
    # a worker started afterwards finds nothing to do ...
    again = Worker(_settings(tiled))
    assert again.poll_once() == 0
    assert again.wait_idle(5)
    again.close()
    # ... unless asked to redo, and then each ptychogram once
    redo = Worker(_settings(tiled, redo=True))
    assert redo.poll_once() == 1  # max_concurrent = 1
    assert redo.wait_idle(60)
    redo.close()
    st = ResultStore(client, uid).statuses()
    assert [st[k]["completions"] for k in (0, 1)] == [2, 2]
    assert [st[k]["starts"] for k in (0, 1)] == [2, 2]


def test_dask_executor_runs_the_same_task(tiled, ptychograms):
    import dask.distributed  # noqa: F401 - in the dev group: this test must run in CI

    client = tiled.client()
    uid = replay(TiledWriter(client, batch_size=50), ptychograms[:1], raw_dark(ptychograms[0]))
    worker = Worker(_settings(tiled, executor="dask"), processes=False)
    try:
        assert worker.executor.kind == "dask"
        assert worker.wait_idle(90)
    finally:
        worker.close()
    st = ResultStore(client, uid).statuses()
    assert st[0]["status"] == "done" and st[0]["frames_used"] == 9


def test_dask_asked_for_without_it_is_one_clear_error(monkeypatch, tiled):
    import builtins

    real = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.startswith("dask.distributed") or name.startswith("distributed"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ValueError, match="pip install distributed"):
        Worker(_settings(tiled, executor="dask"))


def test_results_grow_in_place_and_only_a_shrinking_array_is_written_again(tiled):
    """A growing object or LLK is patched in place; deleting it would let a page that reads
    it meanwhile leave Tiled unable to create it again under its name."""
    from services.worker.tiled_io import connect, put_array

    client = connect(tiled.uri, tiled.api_key, 30)
    requests = []
    client.context.http_client.event_hooks["request"].append(
        lambda request: requests.append(request.method)
    )
    node = client.create_container(f"grow-{time.monotonic_ns()}")
    rng = np.random.default_rng(3)
    small = (rng.normal(size=(30, 40)) + 1j).astype(np.complex64)
    put_array(node, "object", small)
    for shape in [(30, 40), (34, 40), (40, 47)]:  # same, one side larger, both larger
        value = (rng.normal(size=shape) + 1j).astype(np.complex64)
        put_array(node, "object", value)
        stored = node["object"]
        assert tuple(stored.shape) == shape
        np.testing.assert_array_equal(stored.read(), value)
    assert "DELETE" not in requests

    smaller = rng.normal(size=(20, 20)).astype(np.complex64)
    put_array(node, "object", smaller)  # shrinks: deleted and written again
    assert requests.count("DELETE") == 1
    np.testing.assert_array_equal(node["object"].read(), smaller)
    as_float = rng.normal(size=(20, 20))
    put_array(node, "object", as_float)  # another dtype: written again
    assert requests.count("DELETE") == 2
    assert node["object"].read().dtype == np.float64
