"""The whole system on one machine: simulated beamline IOC, embedded Tiled, worker, web app.

:class:`Beamtime` starts, in this order, the caproto IOC of the simulated beamline (a
subprocess, Channel Access on loopback), a session (devices, embedded Tiled server,
RunEngine writing to it), the streaming worker (a thread), the scan controller and the web
app (uvicorn in a thread). ``sptycho demo`` uses it to run a stack; the browser test uses it
to drive the page during a live scan. Everything stops in reverse order on :meth:`close`.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class BeamtimeSettings:
    """What the demo beamline runs with.

    Attributes
    ----------
    data_dir : frames, the embedded Tiled catalog and exports go here
    prefix : PV prefix of the simulated beamline
    sample : sample in the simulated beam
    host, port : where the web app listens (port 0: a free one)
    key : the operators' key of the web app (random when None)
    worker : :class:`services.worker.config.WorkerSettings` overrides
    ioc_args : extra options of ``python -m simulators.ioc``
    """

    data_dir: Path = Path("sptycho-demo")
    prefix: str = "DEMO:"
    sample: str = "bn-bamboo"
    host: str = "127.0.0.1"
    port: int = 8000
    key: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    ioc_args: list[str] = field(default_factory=lambda: ["--pol-time", "0.3"])


class Beamtime:
    """The running system (see the module docstring); a context manager.

    Attributes (after :meth:`start`)
    ---------------------------------
    url : the live page
    key : the operators' key
    session : :class:`services.session.Session` (beamline, RE, Tiled client)
    worker : :class:`services.worker.service.Worker`
    controller : :class:`services.api.control.ScanController`
    """

    def __init__(self, settings: BeamtimeSettings | None = None) -> None:
        self.settings = settings or BeamtimeSettings()
        self.key = self.settings.key or secrets.token_urlsafe(12)
        self.url = ""
        self.session: Any = None
        self.worker: Any = None
        self.controller: Any = None
        self.server: Any = None
        self._stack = contextlib.ExitStack()

    def start(self, say: Any = None) -> Beamtime:
        """Start everything; ``say(text)`` reports each step.

        Raises
        ------
        RuntimeError
            When a part does not start (the message names it); what started is stopped.
        """
        say = say or (lambda text: None)
        try:
            self._start(say)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, say: Any) -> None:
        import uvicorn

        from services.api.app import create_app
        from services.api.control import ScanController
        from services.api.settings import ApiSettings
        from services.session import open_session
        from services.worker.config import load_settings
        from services.worker.service import Worker
        from simulators.ioc.testing import IOCProcess  # the demo simulates on purpose

        s = self.settings
        data_dir = Path(s.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        say(f"starting the simulated beamline IOC ({s.prefix}, sample {s.sample})")
        args = ["--sample", s.sample, *s.ioc_args]
        self._stack.enter_context(IOCProcess(s.prefix, args=args))
        say("starting the embedded Tiled server and connecting the devices")
        self.session = self._stack.enter_context(
            open_session(s.prefix, data_dir=data_dir, context_managers=[], connect_timeout=30)
        )
        server = self.session.server
        say(f"tiled: {server.uri}")
        worker_settings = load_settings(
            None,
            **{
                "tiled_uri": server.uri,
                "tiled_api_key": server.api_key,
                **s.worker,
            },
        )
        self.worker = Worker(worker_settings)
        thread = threading.Thread(target=self.worker.run_forever, name="sptycho-worker")
        thread.start()
        self._stack.callback(thread.join, 60)
        self._stack.callback(self.worker.stop)
        self.controller = ScanController(self.session.beamline, self.session.RE)
        self._stack.callback(self.controller.close)
        port = s.port or free_port()
        api = ApiSettings(
            tiled_uri=server.uri, tiled_api_key=server.api_key, key=self.key, host=s.host, port=port
        )
        app = create_app(api, controller=self.controller)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=s.host, port=port, log_level="warning", lifespan="on")
        )
        web = threading.Thread(target=self.server.run, name="sptycho-web", daemon=True)
        web.start()
        self._stack.callback(web.join, 10)
        self._stack.callback(setattr, self.server, "should_exit", True)
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not web.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web app did not start on {s.host}:{port}")
            time.sleep(0.05)
        self.url = f"http://{s.host}:{port}/"

    def close(self) -> None:
        """Stop the web app, the scan, the worker, Tiled and the IOC (in that order)."""
        self._stack.close()

    def __enter__(self) -> Beamtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ progress
    def progress(self, uid: str) -> dict[str, Any]:
        """Frames landed, reconstructions finished, and the stack analysis of run ``uid``.

        ``stack`` is ``done`` only once the analysis holds every finished reconstruction
        (``partial`` before), ``None`` when there is none yet.
        """
        from services.api.catalog import run_detail

        d = run_detail(self.session.client, uid, self.worker.settings.results_key)
        done = sum(r.get("status") in ("done", "failed") for r in d["results"])
        succeeded = sum(r.get("status") == "done" for r in d["results"])
        stack = d["stack"] or {}
        stack_state = stack.get("status")
        if stack_state == "done" and len(stack.get("indices") or []) < succeeded:
            stack_state = "partial"  # analysed before the last results: a newer one comes
        return {
            "frames": d["frames"],
            "frames_total": d["points_total"],
            "done": done,
            "total": d["n_ptychograms"],
            "state": d["state"],
            "stack": stack_state,
            "results": d["results"],
        }
