"""A process of a deployment under test, in its own session, stopped with its whole group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


class Service:
    """One process of the deployment, in its own session (so its children can be stopped).

    Parameters
    ----------
    name : short name (log file ``<name>.log`` in ``log_dir``)
    cmd : command line
    env : its environment
    log_dir : where its output goes
    stop_signal : what its systemd unit stops it with (``KillSignal=``)
    """

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        log_dir: Path,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.log_path.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of its output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self) -> None:
        """Fail the test with its output if it has exited."""
        if self.proc is not None and not self.alive():
            pytest.fail(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Signal its process group, wait; SIGKILL what is left of the group."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # the leader if it hung, and any orphaned child
        self.proc.wait(10)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def env_file(path: Path) -> dict[str, str]:
    """The variables of a systemd ``EnvironmentFile`` (``KEY=value`` lines, ``#`` comments),
    so that a test runs a service with the environment its unit gives it."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, services: list[Service]
) -> object:
    """Poll ``condition`` until it returns something true; fail naming ``what`` otherwise.

    The services are checked at every poll: one that exits fails the test with its output.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in services:
            s.check()
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - not up yet
            value = None
        if value:
            return value
        time.sleep(0.3)
    logs = "\n".join(f"--- {s.name}\n{s.log(4000)}" for s in services)
    pytest.fail(f"{what} within {timeout:g} s\n{logs}")
