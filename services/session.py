"""A beamline session: devices, a RunEngine whose documents reach Tiled, and the Tiled client.

Used by ``sptycho scan``, ``sptycho console``, ``sptycho web`` and the demo. With no Tiled
URI the session starts the embedded Tiled server (:class:`services.tiled_server.TiledServer`)
in ``<data_dir>/tiled``, watches it and restarts it if it dies; the camera writes its HDF5
files to ``<data_dir>/frames`` and every document is kept in ``<data_dir>/journal`` before it
is delivered (:mod:`services.delivery`). A remote Tiled that does not answer when the
session starts does not stop a scan: its documents wait on local disk.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger("sptycho.session")


@dataclass
class Session:
    """What a console or a scan command works with.

    ``client`` is None while a remote Tiled has not answered yet.
    """

    beamline: Any
    RE: Any
    client: Any
    tiled_uri: str
    server: Any | None = None
    delivery: Any | None = None


class TiledUnusable(ValueError):
    """The Tiled URI is malformed or the server refuses the key (not a passing outage)."""


def check_tiled_uri(uri: str) -> None:
    """Refuse a URI that cannot be a Tiled server (one line)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TiledUnusable(f"Tiled URI {uri!r} is not an http(s)://host[:port] address")
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as err:
        raise TiledUnusable(f"Tiled URI {uri!r}: {err}") from None


def connect_tiled(uri: str, api_key: str | None, *, timeout_s: float = 10.0) -> Any:
    """A writable tiled client, with request timeouts.

    Raises
    ------
    TiledUnusable
        When the URI is malformed or the server refuses the key.
    httpx.TransportError
        When the server does not answer (the caller may wait for it).
    """
    import httpx
    from tiled.client import from_uri

    check_tiled_uri(uri)
    try:
        return from_uri(uri, api_key=api_key, timeout=httpx.Timeout(timeout_s))
    except httpx.HTTPStatusError as err:
        code = err.response.status_code
        if code in (401, 403):
            raise TiledUnusable(f"Tiled at {uri} refuses the API key (HTTP {code})") from None
        if code < 500:
            message = f"Tiled at {uri} answers HTTP {code}: is it a Tiled server?"
            raise TiledUnusable(message) from None
        raise


class EmbeddedTiledWatch:
    """Restart the embedded Tiled server (same port, same catalog) whenever it dies."""

    def __init__(self, server: Any, period_s: float = 1.0) -> None:
        self.server = server
        self.period_s = period_s
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tiled-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            proc = self.server.process
            if proc is not None and proc.poll() is not None:
                log.warning("the embedded Tiled server died (exit %s): restarting", proc.returncode)
                try:
                    self.server.start()
                    self.restarts += 1
                except RuntimeError as err:
                    log.error("the embedded Tiled server did not restart: %s", err)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


@contextlib.contextmanager
def open_session(
    prefix: str = "SIM:",
    *,
    tiled_uri: str | None = None,
    api_key: str | None = None,
    data_dir: str | Path = "sptycho-data",
    progress: Callable[[int, int], None] | None = None,
    connect_timeout: float = 10.0,
    context_managers: list | None = None,
    guard: Any | None = None,
    echo: Callable[[str], None] | None = None,
    drain_timeout_s: float = 600.0,
) -> Iterator[Session]:
    """Connect to the beamline IOC and to Tiled (embedded when ``tiled_uri`` is None).

    Parameters
    ----------
    guard : :class:`plans.guards.BeamGuard` of the suspenders (defaults when None)
    echo : prints notices and delivery warnings (the console)
    drain_timeout_s : at the end, how long to wait for documents Tiled has not taken yet
        (they stay in the journal and the next session delivers them)

    Raises
    ------
    TimeoutError
        When the beamline PVs do not connect (the message names them).
    TiledUnusable
        When the Tiled URI is malformed or the key is refused.
    RuntimeError
        When the embedded Tiled server does not start.
    """
    import httpx

    from devices.beamline import make_beamline
    from services.acquisition import make_run_engine
    from services.delivery import TiledDelivery
    from services.dose_ledger import DoseLedger
    from services.journal import DocumentJournal
    from services.tiled_server import TiledServer

    data_dir = Path(data_dir).resolve()
    frames = data_dir / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    server = None
    with contextlib.ExitStack() as stack:
        if tiled_uri is None:
            server = stack.enter_context(TiledServer(data_dir / "tiled", readable=[frames]))
            watch = EmbeddedTiledWatch(server)
            stack.callback(watch.stop)
            tiled_uri = server.uri
            api_key = server.api_key
        client = None
        try:
            client = connect_tiled(tiled_uri, api_key)
        except httpx.TransportError as err:
            line = f"Tiled at {tiled_uri} does not answer ({err}); documents are kept in "
            (echo or log.warning)(line + f"{data_dir / 'journal'} until it does")

        def connect() -> Any:
            return connect_tiled(tiled_uri, api_key)

        journal = DocumentJournal(data_dir / "journal")
        delivery = TiledDelivery(connect, journal)
        delivery.deliver_pending()

        def drain() -> None:
            if not delivery.close(drain_timeout_s):
                left = delivery.status()["waiting"]
                (echo or log.warning)(
                    f"Tiled did not take {left} documents within {drain_timeout_s:g} s: they "
                    f"are kept in {journal.directory} and the next session delivers them"
                )

        stack.callback(drain)
        bl = make_beamline(prefix, data_dir=str(frames), timeout=connect_timeout)
        stack.callback(bl.disconnect)  # before an IOC started around the session stops
        RE = make_run_engine(
            delivery=delivery,
            beamline=bl,
            guard=guard,
            progress=progress,
            context_managers=context_managers,
            echo=echo,
            dose_ledger=DoseLedger(client, connect=connect),
        )
        yield Session(
            beamline=bl,
            RE=RE,
            client=client,
            tiled_uri=tiled_uri,
            server=server,
            delivery=delivery,
        )
