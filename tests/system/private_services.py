"""PostgreSQL and Redis servers that a test starts for itself, on private ports and folders.

A fresh machine has neither server running; ``make test`` installs Debian's ``postgresql``
and ``redis-server`` packages (as it installs Chromium), and the tests that need them start
their own here: a new cluster (``initdb``) in a temporary folder on a free loopback port, and
a Redis server with persistence off, likewise. Each is stopped and its folder removed when
the ``with`` block ends, so nothing is left behind and nothing of the machine's own servers
(if any) is touched.

PostgreSQL refuses to run as root: as root, the cluster is owned by and run as the
``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.tiled_server import free_port

INSTALL_HINT = "install Debian's postgresql and redis-server packages (`make test` does)"


def _postgres_bin(name: str) -> str:
    """Path of a PostgreSQL server program (``initdb``, ``pg_ctl``): newest Debian one first."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    path = found[-1] if found else shutil.which(name)
    if not path:
        raise RuntimeError(f"no PostgreSQL {name} on this machine: {INSTALL_HINT}")
    return path


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parents[1].name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _run_as() -> dict[str, object]:
    """Popen keywords that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError as err:
        raise RuntimeError(f"running as root and no 'postgres' user: {INSTALL_HINT}") from err
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class PrivatePostgres:
    """A running private PostgreSQL cluster (trust authentication, user ``postgres``).

    Attributes
    ----------
    port : its TCP port on 127.0.0.1
    folder : its data, socket and log folder (removed when stopped)
    """

    port: int
    folder: Path

    def url(self, database: str, driver: str = "postgresql") -> str:
        """SQLAlchemy-style URL of ``database`` (``driver`` e.g. ``postgresql+asyncpg``)."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str) -> str:
        """Run one SQL statement with ``psql`` in database ``postgres``; returns its output."""
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
            + ["-d", "postgres", "-q", "-A", "-t", "-c", statement],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        self.sql(f"create database {name}")
        return name


@contextlib.contextmanager
def private_postgres(timeout: float = 60.0) -> Iterator[PrivatePostgres]:
    """Start a new PostgreSQL cluster on a free port; stop it and remove its folder after.

    Raises
    ------
    RuntimeError : the server programs are missing, or the server did not start in time
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    as_user = _run_as()
    # not under pytest's tmp_path: its 0700 parent is closed to the postgres user
    folder = Path(tempfile.mkdtemp(prefix="sptycho-postgres-"))
    data, log = folder / "data", folder / "server.log"
    if as_user:
        os.chown(folder, as_user["user"], as_user["group"])
    port = free_port()
    try:
        subprocess.run(
            [initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=timeout,
            **as_user,
        )
        options = (
            f"-p {port} -h 127.0.0.1 -k {folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [pg_ctl, "-D", data, "-o", options, "-l", log, "-w", "-t", str(int(timeout)), "start"],
            check=True,
            capture_output=True,
            timeout=timeout + 10,
            **as_user,
        )
    except subprocess.CalledProcessError as err:
        text = (err.stderr or b"").decode(errors="replace") + _tail(log)
        _stop_postgres(pg_ctl, data, as_user)
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"private PostgreSQL did not start: {text.strip()[-1500:]}") from err
    try:
        yield PrivatePostgres(port=port, folder=folder)
    finally:
        _stop_postgres(pg_ctl, data, as_user)
        shutil.rmtree(folder, ignore_errors=True)


def _stop_postgres(pg_ctl: str, data: Path, as_user: dict[str, object]) -> None:
    """Fast shutdown; SIGKILL the postmaster if it does not go."""
    if not (data / "postmaster.pid").exists():
        return
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            [pg_ctl, "-D", data, "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True,
            timeout=40,
            **as_user,
        )
    pid_file = data / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class PrivateRedis:
    """A running private Redis server (no persistence, no password).

    Attributes
    ----------
    port : its TCP port on 127.0.0.1
    """

    port: int

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


@contextlib.contextmanager
def private_redis(timeout: float = 30.0) -> Iterator[PrivateRedis]:
    """Start ``redis-server`` on a free port, persistence off; stop it and remove its folder."""
    import redis

    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(program).exists():
        raise RuntimeError(f"no redis-server on this machine: {INSTALL_HINT}")
    folder = Path(tempfile.mkdtemp(prefix="sptycho-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        + ["--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"private Redis did not start: {_tail(folder / 'redis.log')}"
                    ) from None
                time.sleep(0.1)
        client.close()
        yield PrivateRedis(port=port)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(folder, ignore_errors=True)
