"""A beamline session: devices, a RunEngine writing to Tiled, and the Tiled client.

Used by ``sptycho scan``, ``sptycho console`` and the demo. With no Tiled URI the session
starts the embedded Tiled server (:class:`services.tiled_server.TiledServer`) in
``<data_dir>/tiled`` and the camera writes its HDF5 files to ``<data_dir>/frames``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Session:
    """What a console or a scan command works with."""

    beamline: Any
    RE: Any
    client: Any
    tiled_uri: str
    server: Any | None = None


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
) -> Iterator[Session]:
    """Connect to the beamline IOC and to Tiled (embedded when ``tiled_uri`` is None).

    Raises
    ------
    TimeoutError
        When the beamline PVs do not connect (the message names them).
    RuntimeError
        When the embedded Tiled server does not start.
    """
    from devices.beamline import make_beamline
    from services.acquisition import make_run_engine
    from services.tiled_server import TiledServer

    data_dir = Path(data_dir).resolve()
    frames = data_dir / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    server = None
    with contextlib.ExitStack() as stack:
        if tiled_uri is None:
            server = stack.enter_context(TiledServer(data_dir / "tiled", readable=[frames]))
            client = server.client()
            tiled_uri = server.uri
        else:
            from tiled.client import from_uri

            client = from_uri(tiled_uri, api_key=api_key)
        bl = make_beamline(prefix, data_dir=str(frames), timeout=connect_timeout)
        RE = make_run_engine(client, progress=progress, context_managers=context_managers)
        yield Session(beamline=bl, RE=RE, client=client, tiled_uri=tiled_uri, server=server)
