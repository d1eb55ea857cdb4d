"""Run the simulated beamline IOC in a subprocess on loopback, for tests and benchmarks.

Channel Access clients (pyepics) read ``EPICS_CA_*`` once, when their context starts, so a
test process uses one CA port for all its IOCs: :func:`configure_client` picks a free port
the first time and stores it in the environment (``SPTYCHO_TEST_CA_PORT``); later calls
return the same port. Run IOCs one after another on that port, each with its own prefix
(PV objects are cached by name), and call :func:`configure_client` before the first PV is
created (a ``conftest.py`` at import time is a good place).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
PORT_VARIABLE = "SPTYCHO_TEST_CA_PORT"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise OSError("no free port for both TCP and UDP on 127.0.0.1")


def ca_environment(port: int) -> dict[str, str]:
    """Channel Access variables that keep a client or server on loopback at ``port``."""
    return {
        "EPICS_CA_ADDR_LIST": "127.0.0.1",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.255.255.255",
    }


def configure_client() -> int:
    """Set this process's CA environment to loopback on one free port; return the port."""
    if PORT_VARIABLE in os.environ:
        port = int(os.environ[PORT_VARIABLE])
    else:
        port = free_port()
        os.environ[PORT_VARIABLE] = str(port)
    os.environ.update(ca_environment(port))
    return port


class IOCProcess:
    """The beamline IOC (``python -m simulators.ioc``) in a subprocess.

    Parameters
    ----------
    prefix : PV prefix
    port : CA port (:func:`configure_client`'s port when None)
    args : extra command-line options (``["--pol-time", "0.2"]``)
    startup_timeout : seconds to wait for the IOC's ready line

    Examples
    --------
    >>> with IOCProcess("T1:", args=["--sample", "siemens-star"]) as ioc:  # doctest: +SKIP
    ...     bl = make_beamline("T1:")
    """

    def __init__(
        self,
        prefix: str = "SIM:",
        *,
        port: int | None = None,
        args: list[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.prefix = prefix
        self.port = port or configure_client()
        self.args = list(args or [])
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.log: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()

    def start(self) -> IOCProcess:
        """Start the IOC and wait until it serves its PVs.

        Raises
        ------
        RuntimeError
            If the IOC exits or is not ready within ``startup_timeout``; with its last output.
        """
        env = dict(os.environ)
        env.update(ca_environment(self.port))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "simulators.ioc", "--prefix", self.prefix]
        cmd += ["--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log)
                raise RuntimeError(f"IOC {self.prefix} did not start on port {self.port}:\n{tail}")
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())
            if "IOC ready" in line:
                self._ready.set()

    def stop(self) -> None:
        """Terminate the IOC (kill it if it does not exit within 5 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> IOCProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
