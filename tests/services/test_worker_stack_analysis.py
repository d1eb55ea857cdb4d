"""The stack analysis hook against a real (embedded) Tiled server: results written as the
worker writes them give an aligned OD stack and an XLD map next to them, and the worker
runs the hook by itself once a run's reconstructions are done."""

import threading
import time

import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter

from recon import spectro
from recon.operators import fourier_shift
from services.tiled_server import TiledServer
from services.worker import Worker, load_settings
from services.worker.replay import raw_dark, replay
from services.worker.stack_analysis import analyze_run, done_results
from services.worker.tiled_io import ResultStore
from simulators.dataset import simulate_ptychogram
from simulators.samples import make_sample

PX = 10e-9
SHAPE = (128, 128)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    with TiledServer(tmp_path_factory.mktemp("tiled")) as server:
        yield server


def _fake_run(client, energies, pols):
    """A run with only a start document (as TiledWriter makes it), for results to go in."""
    from event_model import compose_run

    bundle = compose_run(metadata={"plan_name": "test", "geometry": {}})
    writer = TiledWriter(client)
    writer("start", bundle.start_doc)
    return bundle.start_doc["uid"]


def test_analyze_run_writes_aligned_od_and_xld(tiled):
    client = tiled.client()
    sample = make_sample("bn-bamboo", seed=1, area_m=1.2e-6)
    label = sample.orientation_label(PX, SHAPE)
    energies = [192.0, 192.0, 188.0]
    pols = ["LH", "LV", "LH"]
    truth = np.array(
        [sample.transmission(e, p, PX, SHAPE) for e, p in zip(energies, pols, strict=True)]
    )
    rng = np.random.default_rng(3)
    drift = rng.uniform(-2.5, 2.5, size=(3, 2))
    drift[1] = 0  # the middle image is the reference
    objs = fourier_shift(truth, drift[:, 0], drift[:, 1])
    uid = _fake_run(client, energies, pols)
    store = ResultStore(client, uid)
    for i, (obj, e, p) in enumerate(zip(objs, energies, pols, strict=True)):
        store.begin(i, {"energy_ev": e, "polarization": p})
        arrays = {"object": obj, "object_amplitude": np.abs(obj).astype(np.float32)}
        store.write(i, arrays, {"status": "done", "pixel_size_m": PX})
    assert [i for i, _ in done_results(client, uid)] == [0, 1, 2]
    res = analyze_run(client, uid)
    assert res is not None
    node = client[uid]["recon"]["stack"]
    assert node.metadata["status"] == "done"
    assert node.metadata["indices"] == [0, 1, 2]
    assert node.metadata["xld_energies"] == [192.0]
    assert "xmcd" not in node
    od = node["od"].read()
    assert od.shape == (3, *SHAPE) and od.dtype == np.float32
    assert np.abs(node["shifts"].read() + drift).max() < 0.2
    np.testing.assert_allclose(node["energies"].read(), energies)
    xld = node["xld"].read()[0]
    true = spectro.xld(-np.log10(np.abs(truth[1]) ** 2), -np.log10(np.abs(truth[0]) ** 2))
    r = np.corrcoef(xld[8:-8, 8:-8].ravel(), true[8:-8, 8:-8].ravel())[0, 1]
    assert r >= 0.8
    assert xld[label == 1].mean() > 0 > xld[label == 2].mean()
    # statuses of the ptychograms are not confused by the stack container
    assert sorted(ResultStore(client, uid).statuses()) == [0, 1, 2]
    # a second analysis overwrites in place
    assert analyze_run(client, uid) is not None
    assert client[uid]["recon"]["stack"]["od"].read().shape == (3, *SHAPE)


def test_too_few_results_do_nothing(tiled):
    client = tiled.client()
    uid = _fake_run(client, [], [])
    assert analyze_run(client, uid) is None
    assert "recon" not in client[uid]


def test_worker_writes_the_stack_after_reconstructions(tiled):
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    kw.update(exposure_s=0.1, frame_size=64, seed=3)
    ptychograms = [simulate_ptychogram(polarization=p, **kw) for p in ("LH", "LV")]
    for p in ptychograms:
        p.frames = p.frames.astype(np.float32)
    client = tiled.client()
    settings = load_settings(
        tiled_uri=tiled.uri,
        tiled_api_key=tiled.api_key,
        backend="numpy",
        algorithm="AP**20",
        poll_interval_s=0.2,
        refresh_frames=9,
        live_iterations=2,
    )
    worker = Worker(settings)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        uid = replay(TiledWriter(client, batch_size=50), ptychograms, raw_dark(ptychograms[0]))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            recon = client[uid]["recon"] if "recon" in client[uid] else None
            if recon is not None and "stack" in recon and "xld" in recon["stack"]:
                break
            time.sleep(0.3)
    finally:
        worker.stop()
        thread.join(30)
    node = client[uid]["recon"]["stack"]
    assert node.metadata["indices"] == [0, 1]
    assert node.metadata["polarizations"] == ["LH", "LV"]
    od = node["od"].read()
    assert od.ndim == 3 and od.shape[0] == 2 and np.isfinite(od).all()
    xld = node["xld"].read()
    assert xld.shape == (1, *od.shape[1:]) and np.isfinite(xld).all()
    assert np.abs(node["shifts"].read()).max() < 3
