"""What the routes get injected: the app's shared objects, read from ``app.state``.

:func:`services.api.app.create_app` puts the settings, the Tiled catalog access, the
picture cache, the answers kept per run (:mod:`services.api.run_views`), the scan
controller, the hub and (once the lifespan runs) the watcher on ``app.state``; the
routers (:mod:`services.api.routes`) ask for them with FastAPI's ``Depends`` through the
``Annotated`` aliases below, so no route captures them from a closure and a test may swap
any of them with ``app.dependency_overrides``.

Every dependency takes an :class:`~starlette.requests.HTTPConnection`, so that it serves
HTTP routes and the WebSocket alike.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import InitVar, dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException
from starlette.requests import HTTPConnection

from services.api.control import ScanControl
from services.api.images import PictureCache
from services.api.live import Hub, Watcher
from services.api.run_views import RunViews
from services.api.settings import ApiSettings


@dataclass(eq=False)
class CatalogAccess:
    """The Tiled catalog as the routes read it: one client per thread, and where results are.

    Requests are served from a thread pool, so each thread gets its own client. Routes
    are given this object and call :meth:`client` in the thread that runs them (their
    dependencies are resolved elsewhere, in the event loop).

    Parameters
    ----------
    uri, api_key : the Tiled server
    results_key : container, inside each run, that holds its reconstructions
    timeout_s : read and write timeout of the clients' requests
    first : a client for the calling thread (tests)
    """

    uri: str
    api_key: str | None
    results_key: str = "recon"
    timeout_s: float = 30.0
    first: InitVar[Any] = None
    local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self, first: Any) -> None:
        if first is not None:
            self.local.client = first

    def client(self) -> Any:
        """This thread's client of the catalog root (made at the first call)."""
        client = getattr(self.local, "client", None)
        if client is None:
            from services.worker.tiled_io import connect

            client = connect(self.uri, self.api_key, self.timeout_s)
            self.local.client = client
        return client


async def get_settings(conn: HTTPConnection) -> ApiSettings:
    return conn.app.state.settings


async def get_catalog(conn: HTTPConnection) -> CatalogAccess:
    return conn.app.state.catalog


async def get_pictures(conn: HTTPConnection) -> PictureCache:
    return conn.app.state.pictures


async def get_views(conn: HTTPConnection) -> RunViews:
    return conn.app.state.views


async def get_controller(conn: HTTPConnection) -> ScanControl | None:
    return conn.app.state.controller


async def get_hub(conn: HTTPConnection) -> Hub:
    return conn.app.state.hub


async def get_watcher(conn: HTTPConnection) -> Watcher | None:
    return conn.app.state.watcher


Settings = Annotated[ApiSettings, Depends(get_settings)]
Tiled = Annotated[CatalogAccess, Depends(get_catalog)]
Pictures = Annotated[PictureCache, Depends(get_pictures)]
Views = Annotated[RunViews, Depends(get_views)]
Controller = Annotated[ScanControl | None, Depends(get_controller)]
LiveHub = Annotated[Hub, Depends(get_hub)]
LiveWatcher = Annotated[Watcher | None, Depends(get_watcher)]


def is_operator(settings: ApiSettings, x_api_key: str | None) -> bool:
    """Whether ``x_api_key`` is the operators' key (compared in constant time)."""
    return bool(
        settings.key
        and x_api_key
        and secrets.compare_digest(x_api_key.encode(), settings.key.encode())
    )


async def require_operator(settings: Settings, x_api_key: str | None = Header(None)) -> None:
    """Let operators through: 403 without an operator key set or with a wrong key, 401
    without a key."""
    if settings.key is None:
        raise HTTPException(403, "scans cannot be run from this page: no operator key is set")
    if not x_api_key:
        raise HTTPException(401, "operator key required to run scans (viewers may only read)")
    if not is_operator(settings, x_api_key):
        raise HTTPException(403, "wrong operator key")


def attached(controller: ScanControl | None) -> ScanControl:
    """The scan controller; 409 when no beamline is attached to this server.

    Called inside the routes (not a dependency), so that a refused body still answers
    422 before this 409.
    """
    if controller is None:
        raise HTTPException(409, "no beamline attached to this server: scans cannot run")
    return controller
