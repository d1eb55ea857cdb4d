"""Unit tests of the streaming worker's pure parts: grouping, darks, bad frames, restart
planning and configuration."""

import numpy as np
import pytest

from services.worker.config import load_settings
from services.worker.grouping import (
    check_frames,
    counts_per_photon_for,
    group_ptychograms,
    saturation_counts,
    select_dark_series,
    zone_plate_for,
)
from services.worker.service import plan_work


def _table():
    # 2 ptychograms x 4 points, x fast, stage in um
    return {
        "ptychogram": [0, 0, 0, 0, 1, 1, 1, 1],
        "sample_fx": [-0.1, 0.1, -0.1, 0.1] * 2,
        "sample_fy": [-0.1, -0.1, 0.1, 0.1] * 2,
        "optics_energy": [190.01, 189.99, 190.0, 190.0, 192.0, 192.0, 192.0, 192.0],
        "polarization_readback": ["LH"] * 4 + ["LV"] * 4,
        "time": np.arange(8.0) + 100,
    }


def test_events_group_into_ptychograms_with_positions_in_metres():
    groups = group_ptychograms(_table())
    assert list(groups) == [0, 1]
    g0, g1 = groups[0], groups[1]
    assert g0.rows.tolist() == [0, 1, 2, 3] and g1.rows.tolist() == [4, 5, 6, 7]
    assert g0.energy_ev == pytest.approx(190.0) and g1.polarization == "LV"
    assert g0.positions_m[1] == pytest.approx([-0.1e-6, 0.1e-6])  # (y, x)
    assert g1.first_time == 104.0


def test_partial_ptychogram_groups_what_arrived():
    t = {k: v[:6] for k, v in _table().items()}
    groups = group_ptychograms(t)
    assert len(groups[1].rows) == 2


def test_latest_dark_series_before_the_ptychogram():
    primary = np.array([10, 11, 12, 30, 31, 32], float)  # two ptychograms
    dark = np.array([1, 2, 3, 20, 21], float)  # series before each
    assert select_dark_series(dark, primary, 10).tolist() == [0, 1, 2]
    assert select_dark_series(dark, primary, 30).tolist() == [3, 4]
    # dark once: the only series serves every ptychogram
    assert select_dark_series(dark[:3], primary, 30).tolist() == [0, 1, 2]
    # dark taken after the frames (none before): the first series
    assert select_dark_series(np.array([40.0, 41.0]), primary, 10).tolist() == [0, 1]
    assert select_dark_series(np.zeros(0), primary, 10).size == 0


def test_nan_and_saturated_pixels_are_masked_and_reported():
    frames = np.full((4, 8, 8), 100, np.uint32)
    frames[1, 2, 3] = 65535
    f = frames.astype(np.float32)
    f[2, 5, 5] = np.nan
    f[3, 0, 0] = np.inf
    check = check_frames(f, saturation=65535, first_row=10, index=3)
    assert check.nan_frames == 2 and check.saturated_frames == 1
    assert check.nan_pixels == 2 and check.saturated_pixels == 1
    assert check.bad.sum() == 3 and check.bad[2, 3] and check.bad[5, 5]
    assert np.isnan(check.frames[1, 2, 3]) and np.isnan(check.frames[2, 5, 5])
    assert np.isfinite(check.frames[0]).all()
    assert len(check.messages) == 2
    assert "ptychogram 3" in check.messages[0] and "rows 12, 13" in check.messages[0]
    assert "rows 11" in check.messages[1] and "1 pixel(s)" in check.messages[1]
    clean = check_frames(frames[:1], saturation=65535)
    assert clean.messages == [] and not clean.bad.any()


def test_saturation_follows_binning_and_gain_defaults():
    assert saturation_counts({"binning": 4}) == 65535 * 16
    assert saturation_counts({}, 1000.0) == 1000.0
    assert counts_per_photon_for({}, 5.0) == (5.0, None)
    assert counts_per_photon_for({"geometry": {"counts_per_photon": 7.0}}) == (7.0, None)
    value, note = counts_per_photon_for({})
    assert value == 1.0 and "unknown" in note


def test_zone_plate_defocus_gives_the_run_spot():
    from recon.probe import ZonePlate

    g = {
        "spot_m": 0.3e-6,
        "zone_plate": {
            "outer_diameter": 240e-6,
            "outermost_zone_width": 50e-9,
            "central_stop_diameter": 72e-6,
        },
    }
    zp = zone_plate_for(g, 192.0)
    spot = ZonePlate(240e-6, 50e-9, 72e-6).spot_size_m(zp["defocus"], 192.0)
    assert spot == pytest.approx(0.3e-6, rel=1e-9)
    assert zone_plate_for({}, 192.0) is None


def test_restart_skips_done_and_failed_and_resumes_running():
    statuses = {0: {"status": "done"}, 1: {"status": "running"}, 2: {"status": "failed"}}
    assert plan_work([0, 1, 2, 3], statuses, in_flight=set()) == [1, 3]
    assert plan_work([0, 1, 2, 3], statuses, in_flight={3}) == [1]
    redone = set()
    assert plan_work([0, 1, 2, 3], statuses, set(), redo=True, redone=redone) == [0, 1, 2, 3]
    redone.update({0, 2})
    assert plan_work([0, 1, 2, 3], statuses, set(), redo=True, redone=redone) == [1, 3]


def test_config_from_file_then_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "worker.yml"
    cfg.write_text("worker:\n  algorithm: 'DM**50,AP**50'\n  max_concurrent: 3\n")
    monkeypatch.setenv("SPTYCHO_TILED_URI", "http://tiled:8000")
    monkeypatch.setenv("SPTYCHO_MAX_CONCURRENT", "2")
    s = load_settings(cfg)
    assert s.algorithm == "DM**50,AP**50" and s.live_step_algorithm == "DM"
    assert s.tiled_uri == "http://tiled:8000"
    assert s.max_concurrent == 2  # the environment wins over the file
    assert load_settings(cfg, max_concurrent=5).max_concurrent == 5
    toml = tmp_path / "worker.toml"
    toml.write_text('algorithm = "AP**20"\npoll_interval_s = 1.5\n')
    monkeypatch.delenv("SPTYCHO_MAX_CONCURRENT")
    t = load_settings(toml)
    assert t.algorithm == "AP**20" and t.poll_interval_s == 1.5 and t.max_concurrent == 1


def test_config_refuses_bad_values(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("algorithm: 'XX**3'\n")
    with pytest.raises(ValueError):
        load_settings(bad)
    bad.write_text("max_concurrent: 0\n")
    with pytest.raises(ValueError):
        load_settings(bad)
    bad.write_text("dask_worker_ttl_s: 1\n")  # a busy worker could be taken for a hung one
    with pytest.raises(ValueError, match="dask_worker_ttl_s"):
        load_settings(bad)
    bad.write_text("no_such_key: 1\n")
    with pytest.raises(ValueError):
        load_settings(bad)
    with pytest.raises(ValueError, match="no such config file"):
        load_settings(tmp_path / "missing.yml")


def test_deploy_file_loads():
    from pathlib import Path

    s = load_settings(Path(__file__).resolve().parents[2] / "deploy" / "worker.yml")
    assert s.algorithm == "auto" and s.executor == "local" and s.max_concurrent == 1
    assert s.dask_worker_ttl_s == 60.0


def test_continuous_blur_is_read_from_the_runs_acquisition_metadata():
    from services.worker.grouping import continuous_blur_m

    zp = {"outer_diameter": 240e-6, "outermost_zone_width": 50e-9}
    moving = {"acquisition": {"mode": "fly", "motion": "continuous", "blur_m": 9.7e-8}}
    assert continuous_blur_m({**moving, "zone_plate": zp}) == 9.7e-8
    assert continuous_blur_m(moving) == 0.0  # no zone plate: no model probe to blur
    still = {"acquisition": {"mode": "fly", "motion": "step", "blur_m": 0.0}, "zone_plate": zp}
    assert continuous_blur_m(still) == 0.0
    assert continuous_blur_m({"zone_plate": zp}) == 0.0  # runs from before fly mode
    bad = {"acquisition": {"motion": "continuous", "blur_m": "n/a"}, "zone_plate": zp}
    assert continuous_blur_m(bad) == 0.0


def test_dask_local_cluster_runs_tasks_without_the_statistical_profiler():
    """The profiler's sys._current_frames() can deadlock a CPython 3.11 worker process for
    good (python/cpython#106883): the local cluster's worker processes run without it."""
    import operator

    from services.worker.executor import DaskExecutor

    executor = DaskExecutor(None, max_concurrent=1, processes=True)
    try:
        profiling = executor.client.run(
            lambda dask_worker: "profile" in dask_worker.periodic_callbacks
        )
        assert len(profiling) == 1 and not any(profiling.values()), profiling
        assert executor.submit(operator.add, 2, 3).result(timeout=60) == 5
    finally:
        executor.shutdown()
