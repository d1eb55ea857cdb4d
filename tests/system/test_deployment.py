"""The deployment of ``deploy/`` on this machine, end to end, with nothing mocked.

The simulated beamline IOC, Tiled from ``deploy/tiled/config.yml`` (PostgreSQL catalog,
Redis streaming cache), a Dask scheduler and worker, the streaming worker (``sptycho serve
--config deploy/worker.yml`` on the Dask cluster), the queue server (``start-re-manager
--config deploy/queueserver/config.yml``, startup module ``services.queue.startup``) and its
HTTP server run as the systemd units run them, each in its own process group on free ports.
A small stack queued through the queue server's 0MQ API must end as one run in Tiled with
every ptychogram reconstructed by the Dask worker. The live page (``sptycho web``, whose
scans go through the queue server's HTTP server: one RunEngine per beamline) is then driven
in Chromium: a stack started, paused and resumed from the page ends in Tiled, reconstructed,
while the page shows the running plan and its pictures.

PostgreSQL and Redis are the test's own (``private_services``): started on free ports in
folders of their own, stopped and removed at the end, so a fresh machine with only Debian's
packages installed runs it. Every process is stopped (its whole process group) and waited for.
"""

import contextlib
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from private_services import private_postgres, private_redis
from queue_server import queue_manager
from service_process import Service, env_file, wait_for
from test_live_page import _open, browser  # noqa: F401 - the module's Chromium fixture

from services.tiled_server import TiledServer, free_port
from services.worker.tiled_io import ResultStore
from simulators.ioc.testing import IOCProcess

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
PREFIX = "DEP:"

STACK = dict(
    energies=[190.0, 192.0],
    polarizations=["LH", "LV"],
    area_m=0.4e-6,
    spot_m=0.2e-6,
    overlap=0.5,  # 5 x 5 points, step 0.1 um
    exposure_s=0.01,
    n_dark=2,
    frame_size=64,
)
POINTS = 25
N_PTYCHOGRAMS = 4
WEB_KEY = "operator-key-deploy-1"


def _close_environment(RM) -> None:
    """Close the queue server's environment (devices, RE) before its process is stopped."""
    with contextlib.suppress(Exception):
        if RM.status(reload=True)["worker_environment_exists"]:
            RM.environment_close()
            RM.wait_for_idle(timeout=30)


def test_stack_queued_through_the_deployment_is_reconstructed_in_tiled(
    tmp_path,
    monkeypatch,
    browser,  # noqa: F811
):
    from bluesky_queueserver_api import BPlan
    from bluesky_queueserver_api.comm_base import RequestFailedError
    from bluesky_queueserver_api.zmq import REManagerAPI
    from dask.distributed import Client

    t0 = time.monotonic()
    logs = tmp_path / "logs"
    data_dir = tmp_path / "data"  # SPTYCHO_DATA_DIR: the camera writes <data>/frames
    frames = data_dir / "frames"
    state = tmp_path / "queueserver"  # the unit's /var/lib/sptycho/queueserver
    for d in (logs, frames, state, tmp_path / "tiled" / "data"):
        d.mkdir(parents=True)
    control, info = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    scheduler_addr = f"tcp://127.0.0.1:{free_port()}"
    http_port, http_key = free_port(), secrets.token_hex(16)
    qs_prefix = "sptycho_test"
    base = dict(os.environ, PYTHONUNBUFFERED="1")  # with conftest's loopback CA settings

    with contextlib.ExitStack() as stack:
        rds = stack.enter_context(private_redis())
        pg = stack.enter_context(private_postgres())
        catalog, tables = pg.create_database("catalog"), pg.create_database("tables")
        # deploy/tiled.env; the queue server and Tiled share the Redis server, not a database
        redis_db = 1
        monkeypatch.setenv("SPTYCHO_TILED_DB", pg.url(catalog, "postgresql+asyncpg"))
        monkeypatch.setenv("SPTYCHO_TILED_TABULAR", pg.url(tables))
        monkeypatch.setenv("SPTYCHO_TILED_DATA", str(tmp_path / "tiled" / "data"))
        monkeypatch.setenv("SPTYCHO_FRAMES", str(frames))
        monkeypatch.setenv("SPTYCHO_REDIS", rds.url(0))
        tiled = TiledServer(tmp_path / "tiled", config=DEPLOY / "tiled" / "config.yml")

        # the processes that need nothing else start first, side by side
        scheduler = Service(
            "dask-scheduler",
            [BIN / "dask", "scheduler", "--host", "127.0.0.1"]
            + ["--port", scheduler_addr.rsplit(":", 1)[1], "--no-dashboard"],
            dict(base, **env_file(DEPLOY / "dask.env")),
            logs,
        )
        dask_worker = Service(
            "dask-worker",
            [BIN / "dask", "worker", scheduler_addr, "--nworkers", "1", "--nthreads", "2"]
            + ["--no-dashboard", "--local-directory", tmp_path / "dask", "--death-timeout", "60"],
            dict(base, **env_file(DEPLOY / "dask.env")),  # as its unit runs it
            logs,
        )
        manager = queue_manager(
            (control, info),
            f"127.0.0.1:{rds.port}/{redis_db}",
            qs_prefix,
            state,
            dict(base, SPTYCHO_PREFIX=PREFIX, SPTYCHO_DATA_DIR=str(data_dir)),
            tiled,
            logs,
        )
        http = Service(
            "httpserver",
            [
                BIN / "start-bluesky-httpserver",
                "--config_path",
                DEPLOY / "httpserver" / "config.yml",
            ]
            + ["--host", "127.0.0.1", "--port", str(http_port)],
            dict(
                base,
                QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY=http_key,
                QSERVER_ZMQ_CONTROL_ADDRESS=control,
                QSERVER_ZMQ_INFO_ADDRESS=info,
            ),
            logs,
        )
        for service in (scheduler, dask_worker, manager, http):
            stack.enter_context(service)
        stack.enter_context(IOCProcess(PREFIX, args=["--pol-time", "0.2"], startup_timeout=60))
        stack.enter_context(tiled)
        worker = stack.enter_context(
            Service(
                "worker",
                [BIN / "sptycho", "serve", "--config", DEPLOY / "worker.yml"],
                dict(
                    base,
                    SPTYCHO_TILED_URI=tiled.uri,
                    SPTYCHO_TILED_API_KEY=tiled.api_key,
                    SPTYCHO_EXECUTOR="dask",
                    SPTYCHO_DASK_SCHEDULER=scheduler_addr,
                    SPTYCHO_MAX_CONCURRENT="2",
                    SPTYCHO_BACKEND="numpy",
                    SPTYCHO_ALGORITHM="AP**40",
                    SPTYCHO_LIVE_ITERATIONS="5",
                    SPTYCHO_POLL_INTERVAL_S="0.3",
                ),
                logs,
                stop_signal=signal.SIGINT,
            )
        )
        web_port = free_port()
        web = stack.enter_context(
            Service(
                "web",
                [BIN / "sptycho", "web", "--port", web_port],
                dict(
                    base,
                    SPTYCHO_API_TILED_URI=tiled.uri,
                    SPTYCHO_API_TILED_API_KEY=tiled.api_key,
                    SPTYCHO_API_KEY=WEB_KEY,
                    SPTYCHO_API_QUEUE_SERVER=f"http://127.0.0.1:{http_port}",
                    SPTYCHO_API_QUEUE_API_KEY=http_key,
                ),
                logs,
            )
        )
        everything = [scheduler, dask_worker, manager, http, worker, web]

        # the Dask cluster has its worker
        dask_client = stack.enter_context(Client(scheduler_addr, timeout=60))
        dask_client.wait_for_workers(1, timeout=60)
        # without the statistical profiler (deploy/dask.env): it can hang a worker for good
        profiling = dask_client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        assert profiling and not any(profiling.values()), profiling
        # a hung worker process is restarted after a minute (deploy/dask.env), not five
        ttl = dask_client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.worker_ttl)
        assert ttl == 60.0, ttl

        # the queue server: open the environment (devices, RE writing to Tiled)
        RM = REManagerAPI(zmq_control_addr=control, zmq_info_addr=info)
        stack.callback(RM.close)
        stack.callback(_close_environment, RM)
        wait_for(lambda: RM.status(reload=True), 60, "the RE manager did not answer", everything)
        RM.environment_open()
        wait_for(
            lambda: (
                (s := RM.status(reload=True))["worker_environment_exists"]
                and s["manager_state"] == "idle"
            ),
            90,
            "the queue server's environment did not open",
            everything,
        )
        allowed = RM.plans_allowed()["plans_allowed"]
        assert {"ptycho_stack", "ptycho_raster"} <= set(allowed)
        params = {p["name"] for p in allowed["ptycho_stack"]["parameters"]}
        assert {"energies", "polarizations", "spot_m", "overlap", "frame_size", "md"} <= params
        assert {"camera", "optics", "undulator", "shutter"} <= set(
            RM.devices_allowed()["devices_allowed"]
        )

        # the HTTP server answers for the RE manager, with its key only
        status_url = f"http://127.0.0.1:{http_port}/api/status"
        auth = {"Authorization": f"ApiKey {http_key}"}
        # (it relays the manager's status as it last read it: wait until it has the open one)
        reply = wait_for(
            lambda: (
                (r := httpx.get(status_url, headers=auth, timeout=5)).status_code == 200
                and r.json()["worker_environment_exists"]
                and r
            ),
            60,
            "the HTTP server did not answer with the environment open",
            everything,
        )
        assert reply.json()["worker_environment_exists"] is True
        assert httpx.get(status_url, timeout=5).status_code == 401
        http_plans = httpx.get(
            f"http://127.0.0.1:{http_port}/api/plans/allowed", headers=auth, timeout=10
        ).json()["plans_allowed"]
        assert "ptycho_stack" in http_plans

        # a value of the wrong type is refused when it is queued
        with pytest.raises(RequestFailedError, match="energies"):
            RM.item_add(BPlan("ptycho_stack", energies="192"))

        # queue the stack with plain JSON keyword arguments and run the queue
        RM.item_add(BPlan("ptycho_stack", **STACK, md={"purpose": "deployment test"}))
        RM.queue_start()
        history = wait_for(
            lambda: (h := RM.history_get()["items"]) and h,
            150,
            "the queued stack did not finish",
            everything,
        )
        wait_for(
            lambda: RM.status(reload=True)["manager_state"] == "idle",
            30,
            "the queue did not stop",
            everything,
        )
        result = history[0]["result"]
        assert result["exit_status"] == "completed", result
        (uid,) = result["run_uids"]
        t_scan = time.monotonic()

        # a web page queues through the HTTP server with the same JSON (left queued, cleared)
        item = {"item_type": "plan", "name": "ptycho_raster", "kwargs": {"energy_ev": 706.0}}
        added = httpx.post(
            f"http://127.0.0.1:{http_port}/api/queue/item/add",
            json={"item": item},
            headers=auth,
            timeout=10,
        ).json()
        assert added["success"], added
        assert [i["name"] for i in RM.queue_get()["items"]] == ["ptycho_raster"]
        RM.queue_clear()

        # the streaming worker reconstructed every ptychogram on the Dask worker
        client = tiled.client()
        store = ResultStore(client, uid)
        statuses = wait_for(
            lambda: (
                (st := store.statuses())
                and len(st) == N_PTYCHOGRAMS
                and all(md.get("status") == "done" for md in st.values())
                and st
            ),
            300,  # ~50 s on an idle 2-core machine; much more when it is shared
            "the reconstructions were not all done",
            everything,
        )
        t_done = time.monotonic()

        run = client[uid]
        start = run.metadata["start"]
        assert start["plan_name"] == "spectro_stack"
        assert start["purpose"] == "deployment test"
        assert start["n_ptychograms"] == N_PTYCHOGRAMS
        assert start["geometry"]["grid"] == [5, 5]
        assert run.metadata["stop"]["exit_status"] == "success"
        images = run["primary"]["camera_image"].read()
        assert images.shape == (N_PTYCHOGRAMS * POINTS, 64, 64)
        assert run["dark"]["camera_image"].read().shape == (2, 64, 64)
        table = run["primary"].read()
        ptychogram = np.asarray(table["ptychogram"])
        assert np.array_equal(ptychogram, np.repeat(np.arange(N_PTYCHOGRAMS), POINTS))

        expected = [(e, p) for e in STACK["energies"] for p in STACK["polarizations"]]
        dask_group = dask_worker.proc.pid
        for k in range(N_PTYCHOGRAMS):
            md = statuses[k]
            assert (md["energy_ev"], md["polarization"]) == pytest.approx(expected[k])
            assert md["frames_used"] == POINTS and md["frames_total"] == POINTS
            assert md["backend"] == "numpy" and md["iterations"] >= 40
            # the task ran in the Dask worker's processes, not in the streaming worker
            pid = int(md["history"][-1]["worker"].rsplit(":", 1)[1])
            assert pid != worker.proc.pid and os.getpgid(pid) == dask_group
            node = run["recon"][f"p{k:04d}"]
            obj = node["object"].read()
            rows = ptychogram == k
            pos = np.stack([table["sample_fy"][rows], table["sample_fx"][rows]], axis=1) * 1e-6
            # the object holds every frame of the scan (plus a margin of a few pixels)
            span = np.ptp(pos, axis=0) / md["pixel_size_m"] + 64
            assert obj.dtype == np.complex64 and obj.ndim == 2
            assert np.all(span <= obj.shape) and np.all(np.asarray(obj.shape) <= span + 24)
            assert np.all(np.isfinite(obj)) and np.abs(obj).max() > 0
            llk = node["llk"].read()
            assert llk[-1] < llk[0]
            assert node["probe"].read().shape == (1, 64, 64)

        t_page = time.monotonic()
        _stack_from_the_page(browser, f"http://127.0.0.1:{web_port}/", RM, client, everything)
        print(
            f"deployment up and scanned in {t_scan - t0:.1f} s, "
            f"reconstructed {t_done - t_scan:.1f} s after the scan, "
            f"page stack scanned and reconstructed in {time.monotonic() - t_page:.1f} s"
        )


def _stack_from_the_page(chromium, url, RM, client, services) -> None:
    """Start a stack from the page (through the HTTP server), pause, resume; the page shows
    the plan and its reconstructions, and Tiled ends with every ptychogram reconstructed."""
    wait_for(
        lambda: httpx.get(url + "api/scan", timeout=5).json().get("state") == "idle",
        60,
        "the page did not reach the queue server",
        services,
    )
    page, errors = _open(chromium, url)
    page.wait_for_function("document.getElementById('scan-backend').textContent === 'queue'")
    for field, value in [
        ("#scan-energies", "190,192"),
        ("#scan-pols", "LH"),
        ("#scan-area", "0.4"),
        ("#scan-spot", "0.2"),
        ("#scan-overlap", "0.5"),
        ("#scan-exposure", "0.2"),  # 2 x 25 points of 0.2 s: long enough to pause
        ("#scan-frame", "64"),
        ("#operator-key", WEB_KEY),
    ]:
        page.fill(field, value)
    runs_before = len(client)
    page.click("#scan-start")
    page.wait_for_function("document.getElementById('scan-state').dataset.state === 'running'")
    running = page.text_content("#scan-running")
    assert "ptycho_stack" in running and "by sptycho web page" in running, running
    page.click("#scan-pause")
    page.wait_for_function("document.getElementById('scan-state').dataset.state === 'paused'")
    assert RM.status(reload=True)["manager_state"] == "paused"
    page.click("#scan-resume")
    page.wait_for_function(
        "document.getElementById('scan-state').dataset.state === 'idle'", timeout=120_000
    )
    item = RM.history_get(reload=True)["items"][-1]
    assert item["name"] == "ptycho_stack" and item["kwargs"]["energies"] == [190.0, 192.0]
    assert item["result"]["exit_status"] == "completed", item["result"]
    (uid,) = item["result"]["run_uids"]
    assert len(client) == runs_before + 1
    # the page follows the new run: its reconstruction pictures and status arrive live
    page.wait_for_function(
        "document.getElementById('img-amplitude').src.startsWith('blob:')", timeout=120_000
    )
    statuses = wait_for(
        lambda: (
            (st := ResultStore(client, uid).statuses())
            and len(st) == 2
            and all(md.get("status") == "done" for md in st.values())
            and st
        ),
        240,
        "the page's stack was not all reconstructed",
        services,
    )
    page.wait_for_function(
        "document.getElementById('result-status').textContent.startsWith('done')",
        timeout=60_000,
    )
    run = client[uid]
    assert run.metadata["start"]["queued_by"] == "sptycho web page"
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run["primary"]["camera_image"].read().shape == (2 * POINTS, 64, 64)
    assert all(md["frames_used"] == POINTS for md in statuses.values())
    assert not errors
    page.close()


def test_queue_plans_are_json_callable_and_refuse_bad_values_before_any_message():
    """What the queue server reads of ``services.queue.plans``, without processes."""
    from bluesky_queueserver.manager.profile_ops import (
        existing_plans_and_devices_from_nspace,
        validate_plan,
    )
    from pydantic import ValidationError

    from services.queue.plans import make_queue_plans

    plans = make_queue_plans(beamline=None)
    existing, _, _, _ = existing_plans_and_devices_from_nspace(nspace=dict(plans))
    params = {p["name"]: p for p in existing["ptycho_stack"]["parameters"]}
    assert list(params)[:2] == ["energies", "polarizations"]
    assert params["energies"]["annotation"]["type"] == "list[float]"
    assert params["energies"]["default"] == "[192.0]"
    assert params["spot_m"]["description"].startswith("Spot diameter")
    assert params["frame_size"]["default"] == "256" and "md" in params
    assert {"energy_ev", "polarization"} <= {
        p["name"] for p in existing["ptycho_raster"]["parameters"]
    }
    for name in ("ptycho_raster", "ptycho_stack"):  # fly mode is a queue parameter too
        by_name = {q["name"]: q for q in existing[name]["parameters"]}
        assert by_name["mode"]["default"] == "'fly'" and by_name["motion"]["default"] == "'step'"

    def check(kwargs):
        item = {"name": "ptycho_stack", "kwargs": kwargs}
        return validate_plan(item, allowed_plans=existing, allowed_devices={})

    ok, msg = check({"energies": [706, 708], "polarizations": ["CL", "CR"], "md": {"a": 1}})
    assert ok, msg
    ok, msg = check({"polarizations": ["XX"]})
    assert not ok and "polarizations" in msg
    ok, msg = check({"spot": 1e-6})
    assert not ok and "unexpected keyword argument 'spot'" in msg
    # values of the right type but impossible: refused by the model at the first message
    with pytest.raises(ValidationError, match="overlap"):
        next(plans["ptycho_stack"](energies=[706.0], overlap=1.5))
    with pytest.raises(ValidationError, match="larger than the scanned area"):
        next(plans["ptycho_raster"](spot_m=5e-6, area_m=1e-6))
