"""Frames recorded without beam stay out of the reconstruction: the worker judges each frame
by the I0 recorded with it (``beam_i0``), against a real embedded Tiled and the real worker."""

import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter

from services.tiled_server import TiledServer
from services.worker import Worker, load_settings
from services.worker.grouping import group_ptychograms, low_i0_frames
from services.worker.replay import raw_dark, replay
from services.worker.tiled_io import ResultStore
from simulators.dataset import simulate_ptychogram

FLUX = 2.0e8  # photons/s with beam
NO_BEAM = (2, 6)  # frames with I0 = 0 and dark-level data
WEAK = 4  # a frame at 0.4 x the flux (beam coming back): left out too
DIM = 7  # a frame at 0.6 x the flux: above half the median, kept


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    with TiledServer(tmp_path_factory.mktemp("tiled")) as server:
        yield server


@pytest.fixture(scope="module")
def run(tiled):
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=64, seed=3, **kw)
    frames = p.frames.astype(np.float32)
    dark = raw_dark(p, 1)[0].astype(np.float32)
    rng = np.random.default_rng(1)
    i0 = FLUX * (1.0 + 0.02 * rng.standard_normal(p.n_frames))
    for k in NO_BEAM:
        frames[k] = dark + rng.poisson(2.0, dark.shape)  # shutter open, beam gone
        i0[k] = 0.0
    i0[WEAK] = 0.4 * FLUX
    frames[WEAK] = dark + 0.4 * (frames[WEAK] - dark)
    i0[DIM] = 0.6 * FLUX
    p.frames = frames
    writer = TiledWriter(tiled.client(), batch_size=50)
    uid = replay(writer, [p], raw_dark(p), i0=[i0])
    return uid, p.n_frames


def _settings(tiled, **kw):
    base = dict(
        tiled_uri=tiled.uri,
        tiled_api_key=tiled.api_key,
        backend="numpy",
        algorithm="AP**20",
        poll_interval_s=0.2,
    )
    return load_settings(**{**base, **kw})


def _reconstruct(settings):
    worker = Worker(settings, analyze_stacks=False)
    try:
        assert worker.wait_idle(120)
    finally:
        worker.close()
    return worker.outcomes


def test_i0_column_is_read_with_the_events(tiled, run):
    uid, n = run
    from services.worker.tiled_io import RunReader

    table = RunReader(tiled.client(), uid).table(optional=("beam_i0",))
    group = group_ptychograms(table)[0]
    assert group.i0 is not None and len(group.i0) == n
    assert group.i0[list(NO_BEAM)].tolist() == [0.0, 0.0]
    assert group.i0[WEAK] == pytest.approx(0.4 * FLUX)


def test_frames_without_beam_are_left_out_and_counted(tiled, run):
    uid, n = run
    outcomes = _reconstruct(_settings(tiled))
    assert [o.status for o in outcomes] == ["done"]
    md = ResultStore(tiled.client(), uid).statuses()[0]
    assert md["status"] == "done"
    assert md["frames_total"] == n == 9
    assert md["frames_rejected_low_i0"] == 3
    assert md["frames_used"] == n - 3 == outcomes[0].frames_used
    assert outcomes[0].frames_rejected == 3
    # half the median of the frames with beam (the zeros do not drag the median down)
    assert md["i0_threshold"] == pytest.approx(0.5 * FLUX, rel=0.05)
    note = [m for m in md["messages"] if "low I0" in m]
    assert len(note) == 1 and "3 frame(s)" in note[0] and "rows 2, 4, 6" in note[0]
    # the same run with the check turned off uses every frame
    redo = _reconstruct(_settings(tiled, redo=True, min_i0_fraction=0.0))
    assert redo[0].frames_used == 9 and redo[0].frames_rejected == 0
    md = ResultStore(tiled.client(), uid).statuses()[0]
    assert md["frames_used"] == 9 and md["frames_rejected_low_i0"] == 0
    assert not any("low I0" in m for m in md["messages"])


def test_an_absolute_floor_and_a_run_without_any_beam(tiled):
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=64, seed=4, **kw)
    p.frames = p.frames.astype(np.float32)
    i0 = np.full(p.n_frames, 5e3)  # a monitor reading only dark current: no beam at all
    uid = replay(TiledWriter(tiled.client(), batch_size=50), [p], raw_dark(p), i0=[i0])
    outcomes = _reconstruct(_settings(tiled, min_i0=1e4))
    mine = [o for o in outcomes if o.uid == uid]
    assert [o.status for o in mine] == ["failed"]
    md = ResultStore(tiled.client(), uid).statuses()[0]
    assert md["status"] == "failed"
    assert any("all 9 frame(s)" in m and "without beam" in m for m in md["messages"])


def test_low_i0_rule():
    i0 = np.array([1.0e8, 0.0, 1.1e8, 4.9e7, 5.1e7, np.nan, -3.0, 0.9e8])
    check = low_i0_frames(i0, fraction=0.5)
    assert check.median == pytest.approx(0.9e8)  # of the five values > 0
    assert check.threshold == pytest.approx(4.5e7)
    assert check.low.tolist() == [False, True, False, False, False, True, True, False]
    assert low_i0_frames(i0, 0.5, minimum=5.0e7).low.tolist() == [
        False,
        True,
        False,
        True,
        False,
        True,
        True,
        False,
    ]
    off = low_i0_frames(i0, fraction=0.0, minimum=0.0)
    assert not off.low.any()
    # judged against the whole ptychogram so far, not just the new frames
    new = low_i0_frames(np.array([3e7]), 0.5, reference=np.array([1e8, 1e8, 3e7]))
    assert new.low.tolist() == [True] and new.threshold == pytest.approx(5e7)
