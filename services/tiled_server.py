"""Embedded Tiled server: a SQLite catalog and local files, started as a subprocess.

When no Tiled server is configured, the project starts its own on 127.0.0.1: catalog in
``<directory>/catalog.db``, array data in ``<directory>/data``, tabular data (event tables)
in ``<directory>/tabular.db``, and the camera's HDF5 files readable in place
(``readable``). For production use a config file such as ``deploy/tiled/config.yml``
(PostgreSQL catalog, Redis streaming cache) with ``tiled serve config``.

Both SQLite files are put in write-ahead-log mode (``PRAGMA journal_mode=WAL``, which the
file keeps) before the server starts, and the catalog's connections wait up to
``CATALOG_BUSY_TIMEOUT_S`` for a write lock. In SQLite's default rollback-journal mode a
reader waits for (and, past its busy timeout, fails against) every writer: under a
RunEngine appending rows and frames while the worker and the page read, reads of the event
table answered ``500 database is locked`` (the tabular database's ADBC connections have no
busy timeout at all) and the server dropped those connections, so one read could spend its
client's whole retry budget. Tiled does try to switch the catalog to WAL at
``catalog init``, but it issues the pragma inside a transaction, where SQLite ignores it.
In WAL mode readers never wait for writers; only concurrent writers of one file still
serialize.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

#: How long the catalog's SQLite connections wait for another writer's lock (s).
CATALOG_BUSY_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tiled_executable() -> str:
    here = Path(sys.executable).parent / "tiled"
    return str(here) if here.exists() else (shutil.which("tiled") or "tiled")


def journal_mode(path: str | Path) -> str:
    """The SQLite journal mode of the database file ``path`` (``wal``, ``delete``, ...)."""
    with contextlib.closing(sqlite3.connect(path, timeout=CATALOG_BUSY_TIMEOUT_S)) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()


def use_wal(path: str | Path) -> str:
    """Put the SQLite database ``path`` (created when missing) in write-ahead-log mode.

    The mode is stored in the file, so every later connection (the server's aiosqlite and
    ADBC ones included) uses it. Must run outside any transaction, which is why it is done
    here and not left to ``tiled catalog init``.

    Returns
    -------
    The journal mode now in effect (``"wal"``).

    Raises
    ------
    RuntimeError
        If SQLite refuses (the file is on a file system without shared memory, say).
    """
    with contextlib.closing(sqlite3.connect(path, timeout=CATALOG_BUSY_TIMEOUT_S)) as db:
        db.isolation_level = None  # autocommit: the pragma is ignored inside a transaction
        mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
    if mode != "wal":
        raise RuntimeError(f"SQLite refused write-ahead-log mode for {path} (mode {mode})")
    return mode


class TiledServer:
    """A Tiled server process serving a writable catalog.

    Parameters
    ----------
    directory : where the catalog, data and log live (created)
    readable : directories the server may read external files from (camera HDF5 files)
    port : TCP port on 127.0.0.1 (a free one when None)
    api_key : single-user API key (random when None)
    config : a Tiled service config file; when given it replaces the embedded catalog
    streaming_cache : URI of a streaming cache (``redis://127.0.0.1:6379/0`` or ``memory``)
        for the embedded catalog: with one, Tiled pushes changes to websocket subscribers
        (:mod:`services.tiled_stream`); without one (the default) clients poll

    Examples
    --------
    >>> with TiledServer("/tmp/tiled") as server:         # doctest: +SKIP
    ...     client = server.client()
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        readable: list[str | Path] | None = None,
        port: int | None = None,
        api_key: str | None = None,
        config: str | Path | None = None,
        streaming_cache: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.readable = [Path(p) for p in (readable or [])]
        self.port = port or free_port()
        self.api_key = api_key or secrets.token_hex(16)
        self.config = Path(config) if config else None
        self.streaming_cache = streaming_cache
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def catalog_uri(self) -> str:
        """SQLAlchemy URI of the embedded catalog database."""
        return f"sqlite:///{self.directory / 'catalog.db'}"

    def prepare(self) -> None:
        """Create the directories, initialize the catalog once, and put the catalog and the
        tabular database in write-ahead-log mode (see the module docstring).

        Raises
        ------
        RuntimeError
            If ``tiled catalog init`` fails or SQLite refuses WAL mode.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        for r in self.readable:
            r.mkdir(parents=True, exist_ok=True)
        if self.config:
            return
        if not (self.directory / "catalog.db").exists():
            init = [_tiled_executable(), "catalog", "init", self.catalog_uri]
            done = subprocess.run(init, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
                raise RuntimeError(f"tiled catalog init failed: {tail[0]}")
        use_wal(self.directory / "catalog.db")
        use_wal(self.directory / "tabular.db")

    def streaming_config(self) -> Path:
        """Write the Tiled config file of the embedded catalog with a streaming cache.

        ``tiled serve catalog --cache`` fails in tiled 0.2.20 (a name it imports only for
        ``--temp``), so a catalog with a streaming cache is served from a config file.
        """
        d = self.directory
        config = {
            "authentication": {"allow_anonymous_access": False},
            "trees": [
                {
                    "path": "/",
                    "tree": "catalog",
                    "args": {
                        "uri": f"{self.catalog_uri}?timeout={CATALOG_BUSY_TIMEOUT_S:g}",
                        "writable_storage": [str(d / "data"), f"sqlite:///{d / 'tabular.db'}"],
                        "readable_storage": [str(r) for r in self.readable],
                    },
                }
            ],
            "streaming_cache": {"uri": self.streaming_cache},
        }
        path = d / "tiled-streaming.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def command(self) -> list[str]:
        """The ``tiled serve`` command line."""
        exe = _tiled_executable()
        config = self.config
        if config is None and self.streaming_cache:
            config = self.streaming_config()
        if config:
            return [
                exe,
                "serve",
                "config",
                str(config),
                "--port",
                str(self.port),
                "--host",
                "127.0.0.1",
            ]
        d = self.directory
        cmd = [
            exe,
            "serve",
            "catalog",
            f"{self.catalog_uri}?timeout={CATALOG_BUSY_TIMEOUT_S:g}",
            "-w",
            str(d / "data"),
            "-w",
            f"sqlite:///{d / 'tabular.db'}",
            "--api-key",
            self.api_key,
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
            "--log-timestamps",
        ]
        for r in self.readable:
            cmd += ["-r", str(r)]
        return cmd

    def start(self, timeout: float = 60.0) -> TiledServer:
        """Start the server and wait until it answers; raise RuntimeError if it does not.

        A stopped server may be started again: same port, same directory, same data.
        """
        self.prepare()
        log = open(self.directory / "tiled.log", "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, TILED_SINGLE_USER_API_KEY=self.api_key)
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self._log = log
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.directory / "tiled.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"tiled server exited ({self.process.returncode}): {tail}")
            try:
                r = httpx.get(f"{self.uri}/api/v1/", timeout=1.0)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tiled server did not answer on {self.uri} within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server process (and wait for it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()

    def client(self) -> Any:
        """A tiled client with write access."""
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key)

    def __enter__(self) -> TiledServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
