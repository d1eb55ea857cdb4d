"""A spectro-ptychography stack against the caproto IOC, recorded live in a real Tiled server."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from private_services import private_postgres, private_redis

from devices.beamline import make_beamline
from plans.ptycho import spectro_stack
from services.acquisition import make_run_engine
from services.tiled_server import TiledServer
from simulators.ioc.testing import IOCProcess

pytestmark = pytest.mark.system

STACK = dict(
    energies=[190.0, 192.0, 194.0],
    polarizations=["LH", "LV"],
    area_m=0.4e-6,
    spot_m=0.2e-6,
    overlap=0.5,  # 5 x 5 points
    exposure_s=0.01,
    n_dark=5,
    frame_size=64,
    mode="step",  # fly mode has tests/system/test_fly_scan.py
)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    frames = tmp_path_factory.mktemp("data") / "frames"
    frames.mkdir()
    return frames


@pytest.fixture(scope="module")
def ioc():
    with IOCProcess("STK:", args=["--pol-time", "0.2"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def tiled(tmp_path_factory, frames_dir):
    with TiledServer(tmp_path_factory.mktemp("tiled"), readable=[frames_dir]) as server:
        yield server


@pytest.fixture(scope="module")
def bl(ioc, frames_dir):
    return make_beamline("STK:", data_dir=str(frames_dir), timeout=30)


def test_stack_lands_in_tiled(bl, tiled):
    client = tiled.client()
    done = []
    RE = make_run_engine(client, progress=lambda d, t: done.append((d, t)), context_managers=[])
    (uid,) = RE(spectro_stack(bl, STACK))
    assert done[-1] == (150, 150)
    run = client[uid]
    start = run.metadata["start"]
    g = start["geometry"]
    assert g["energies"] == [190.0, 192.0, 194.0] and g["polarizations"] == ["LH", "LV"]
    assert g["grid"] == [5, 5] and g["step_m"] == pytest.approx(0.1e-6)
    assert g["frame_size"] == 64 and g["dark_frames"] == 5
    assert start["n_ptychograms"] == 6
    primary = run["primary"]
    images = primary["camera_image"].read()
    assert images.shape == (150, 64, 64)
    assert images.dtype in (np.uint16, np.uint32)
    table = primary.read()
    energies = np.asarray(table["optics_energy"])
    pols = np.asarray(table["polarization_readback"])
    assert np.allclose(np.unique(energies), [190.0, 192.0, 194.0], atol=0.05)
    assert list(pols[:25]) == ["LH"] * 25 and list(pols[25:50]) == ["LV"] * 25
    assert np.array_equal(np.asarray(table["ptychogram"]), np.repeat(np.arange(6), 25))
    assert np.array_equal(np.asarray(table["point"]), np.tile(np.arange(25), 6))
    fx = np.asarray(table["sample_fx"])
    assert fx[:5] == pytest.approx([-0.2, -0.1, 0.0, 0.1, 0.2], abs=0.01)
    dark = run["dark"]["camera_image"].read()
    assert dark.shape == (5, 64, 64)
    # dark frames: offset only; bright frames: more counts
    assert float(np.mean(images[:25])) > float(np.mean(dark)) * 1.05
    assert bl.shutter.status.get() == "Closed"


def test_aborted_scan_closes_the_shutter_and_keeps_the_data(bl, tiled):
    client = tiled.client()
    RE = make_run_engine(client, context_managers=[])
    seen = []

    def abort_after_some_points(name, doc):
        if name == "event":
            seen.append(doc)
            if len(seen) == 12:
                threading.Thread(target=RE.abort, args=("test abort",), daemon=True).start()

    RE.subscribe(abort_after_some_points)
    t0 = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - bluesky raises FailedStatus/RunEngineInterrupted
        RE(spectro_stack(bl, dict(STACK, energies=[192.0], polarizations=["LH"], n_dark=0)))
    assert time.monotonic() - t0 < 60
    assert bl.shutter.status.get() == "Closed"
    run = client.values().last()
    assert run.metadata["stop"]["exit_status"] == "abort"
    n = len(run["primary"]["camera_image"].read())
    assert 10 <= n < 25


def test_pause_and_resume_completes_the_scan(bl, tiled):
    from bluesky.utils import RunEngineInterrupted

    client = tiled.client()
    RE = make_run_engine(client, context_managers=[])
    seen = []

    def pause_once(name, doc):
        if name == "event":
            seen.append(doc)
            if len(seen) == 8:
                threading.Thread(target=RE.request_pause, daemon=True).start()

    RE.subscribe(pause_once)
    with pytest.raises(RunEngineInterrupted):
        RE(spectro_stack(bl, dict(STACK, energies=[192.0], polarizations=["LH"], n_dark=0)))
    assert RE.state == "paused"
    uids = RE.resume()
    assert RE.state == "idle"
    run = client[uids[0]]
    assert run.metadata["stop"]["exit_status"] == "success"
    table = run["primary"].read()
    # every point of the raster is there (a re-taken point after the pause may repeat)
    assert set(np.asarray(table["point"]).tolist()) == set(range(25))
    assert bl.shutter.status.get() == "Closed"


def test_scan_command_from_the_console(tiled, frames_dir, ioc):
    sptycho = str(Path(sys.executable).parent / "sptycho")
    out = subprocess.run(
        [
            sptycho,
            "scan",
            "raster",
            "--prefix",
            "STK:",
            "--tiled-uri",
            tiled.uri,
            "--api-key",
            tiled.api_key,
            "--data-dir",
            str(frames_dir.parent),
            "--energy",
            "706",
            "--polarization",
            "CR",
            "--spot",
            "0.2e-6",
            "--overlap",
            "0.5",
            "--area",
            "0.4e-6",
            "--exposure",
            "0.01",
            "--frame-size",
            "64",
            "--dark",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    uid = out.stdout.split("run ")[1].split()[0]
    run = tiled.client()[uid]
    assert run.metadata["start"]["plan_name"] == "defocused_raster"
    assert run["primary"]["camera_image"].read().shape == (25, 64, 64)
    assert run["dark"]["camera_image"].read().shape == (2, 64, 64)
    table = run["primary"].read()
    assert set(np.asarray(table["polarization_readback"])) == {"CR"}


def test_scan_command_refuses_bad_parameters_before_connecting():
    sptycho = str(Path(sys.executable).parent / "sptycho")
    out = subprocess.run(
        [sptycho, "scan", "stack", "--energies", "192,5000", "--prefix", "NONE:"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error:")
    assert "outside 100-2000" in out.stderr


@pytest.fixture
def postgres_redis_tiled(tmp_path, frames_dir, monkeypatch):
    """Tiled from deploy/tiled/config.yml: PostgreSQL catalog, Redis streaming cache (the
    test's own servers, on private ports)."""
    root = Path(__file__).resolve().parents[2]
    with private_postgres() as pg, private_redis() as rds:
        catalog, tables = pg.create_database("catalog"), pg.create_database("tables")
        monkeypatch.setenv("SPTYCHO_TILED_DB", pg.url(catalog, "postgresql+asyncpg"))
        monkeypatch.setenv("SPTYCHO_TILED_TABULAR", pg.url(tables))
        monkeypatch.setenv("SPTYCHO_TILED_DATA", str(tmp_path / "data"))
        monkeypatch.setenv("SPTYCHO_FRAMES", str(frames_dir))
        monkeypatch.setenv("SPTYCHO_REDIS", rds.url(0))
        (tmp_path / "data").mkdir()
        with TiledServer(tmp_path, config=root / "deploy" / "tiled" / "config.yml") as server:
            yield server


def test_stack_with_postgresql_and_redis(bl, postgres_redis_tiled):
    client = postgres_redis_tiled.client()
    RE = make_run_engine(client, context_managers=[])
    small = dict(STACK, energies=[192.0], n_dark=2)
    (uid,) = RE(spectro_stack(bl, small))
    run = client[uid]
    assert run["primary"]["camera_image"].read().shape == (50, 64, 64)
    assert run["dark"]["camera_image"].read().shape == (2, 64, 64)
    assert run.metadata["start"]["geometry"]["polarizations"] == ["LH", "LV"]
