"""A bluesky queue server with the project's startup module, for the tests that drive it.

``start-re-manager`` runs as ``deploy/systemd/sptycho-queueserver.service`` runs it (the
deployment's ``config.yml``, startup module :mod:`services.queue.startup`), on free ports,
against a private Redis (the queue server keeps its queue there), an embedded Tiled server
and a simulated caproto IOC. Its environment is opened before the block starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from private_services import private_redis
from service_process import Service, wait_for

from services.tiled_server import TiledServer, free_port
from simulators.ioc.testing import IOCProcess

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


@dataclass
class QueueBeamline:
    """What :func:`queue_beamline` started.

    Attributes
    ----------
    control : the RE manager's 0MQ control address
    tiled : the Tiled server the runs land in
    manager : its process (:class:`service_process.Service`)
    RM : a 0MQ ``REManagerAPI`` of the test itself
    logs : the processes' log folder
    env : environment for further processes (loopback CA settings)
    """

    control: str
    tiled: TiledServer
    manager: Service
    RM: Any
    logs: Path
    env: dict[str, str]


def close_environment(RM: Any) -> None:
    """Close the queue server's environment (devices, RE) before its process is stopped."""
    with contextlib.suppress(Exception):
        if RM.status(reload=True)["worker_environment_exists"]:
            RM.environment_close()
            RM.wait_for_idle(timeout=30)


def queue_manager(
    zmq: tuple[str, str],
    redis_addr: str,
    redis_prefix: str,
    state: Path,
    env: dict[str, str],
    tiled: TiledServer,
    logs: Path,
) -> Service:
    """``start-re-manager`` as the systemd unit runs it (not started yet: a context manager).

    Parameters
    ----------
    zmq : its 0MQ control and info addresses
    redis_addr, redis_prefix : where it keeps its queue (``host:port/db``) and under what
    state : its folder (the list of existing plans and devices)
    env : its environment, with ``SPTYCHO_PREFIX`` and ``SPTYCHO_DATA_DIR``
    tiled : the Tiled server its runs go to
    logs : the log folder
    """
    control, info = zmq
    return Service(
        "queueserver",
        [BIN / "start-re-manager", "--config", DEPLOY / "queueserver" / "config.yml"]
        + ["--zmq-control-addr", control, "--zmq-info-addr", info]
        + ["--redis-addr", redis_addr, "--redis-name-prefix", redis_prefix]
        + ["--existing-plans-devices", state / "existing_plans_and_devices.yaml"]
        + ["--user-group-permissions", DEPLOY / "queueserver" / "user_group_permissions.yaml"],
        dict(
            env,
            SPTYCHO_TILED_URI=tiled.uri,
            SPTYCHO_TILED_API_KEY=tiled.api_key,
            SPTYCHO_CONNECT_TIMEOUT="30",
        ),
        logs,
        stop_signal=signal.SIGINT,
    )


@contextlib.contextmanager
def queue_beamline(folder: Path, prefix: str) -> Iterator[QueueBeamline]:
    """Start Redis, Tiled, the IOC and the queue server (environment open); stop them all."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    logs, data_dir, state = folder / "logs", folder / "data", folder / "queueserver"
    for d in (logs, data_dir / "frames", state):
        d.mkdir(parents=True)
    control, info = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    base = dict(os.environ, PYTHONUNBUFFERED="1")
    with contextlib.ExitStack() as stack:
        rds = stack.enter_context(private_redis())
        tiled = TiledServer(folder / "tiled", readable=[data_dir / "frames"])
        stack.enter_context(tiled)
        manager = queue_manager(
            (control, info),
            f"127.0.0.1:{rds.port}/0",
            "sptycho_q",
            state,
            dict(base, SPTYCHO_PREFIX=prefix, SPTYCHO_DATA_DIR=str(data_dir)),
            tiled,
            logs,
        )
        stack.enter_context(manager)
        stack.enter_context(IOCProcess(prefix, args=["--pol-time", "0.2"], startup_timeout=60))
        RM = REManagerAPI(zmq_control_addr=control, zmq_info_addr=info)
        stack.callback(RM.close)
        stack.callback(close_environment, RM)
        wait_for(lambda: RM.status(reload=True), 60, "the RE manager did not answer", [manager])
        RM.environment_open()
        wait_for(
            lambda: (
                (s := RM.status(reload=True))["worker_environment_exists"]
                and s["manager_state"] == "idle"
            ),
            90,
            "the queue server's environment did not open",
            [manager],
        )
        yield QueueBeamline(control, tiled, manager, RM, logs, base)
