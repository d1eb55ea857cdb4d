"""The FastAPI app: REST for runs and pictures, a WebSocket for live updates, the page.

=====================================================  =====================================
route                                                  what
=====================================================  =====================================
``GET /``                                              the live page (assets under /static)
``GET /api/health``                                    whether scans can be run (operators:
                                                       the Tiled URI too)
``GET /api/runs``                                      newest runs, newest first
``GET /api/runs/{uid}``                                geometry, dose, progress, results
``GET /api/runs/{uid}/positions/{i}``                  planned and measured positions (µm)
``GET /api/runs/{uid}/results/{i}``                    a reconstruction's metadata and LLK
``GET /api/runs/{uid}/results/{i}/{kind}.png``         amplitude, phase or probe picture
``GET /api/runs/{uid}/stack``                          the stack analysis' metadata
``GET /api/runs/{uid}/stack/{map}/{j}.png``            od, phase, xld or xmcd map ``j``
``GET /api/runs/{uid}/spectrum?x0=&y0=&x1=&y1=``       OD spectra of a region
``GET /api/scan``                                      the scan controller's state
``POST /api/scan`` (operator)                          start a raster or a stack
``POST /api/scan/{pause,resume,abort}`` (operator)     control the running scan
``WS /ws``                                             live messages (:mod:`services.api.live`)
=====================================================  =====================================

The routes live in one router per concern (:mod:`services.api.routes`) and get what they
share through dependencies (:mod:`services.api.deps`) from ``app.state``, which
:func:`create_app` fills.

Pictures carry the image's box inside the PNG in the ``X-Image-Box`` header (left, top,
right, bottom as fractions), so a click on a picture maps to a region of the array.
Operators send the key in the ``X-API-Key`` header; everyone else may only read.

Request bodies above ``max_body_bytes`` are refused with 413 while they are read
(:mod:`services.api.limits`). Requests to Tiled time out (``tiled_timeout_s``); a Tiled that
does not answer, after the client's retries, makes the request a 503 with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from services.api.control import ScanControl
from services.api.deps import CatalogAccess
from services.api.images import PictureCache, render
from services.api.limits import BodyLimit
from services.api.live import Hub, Watcher
from services.api.routes import ROUTERS
from services.api.routes.page import STATIC, plotly_bundle
from services.api.run_views import RunViews
from services.api.settings import ApiSettings
from services.worker.tiled_io import first_line, is_transient


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Bind the hub to the server's loop, warm up Matplotlib, run the watcher meanwhile."""
    from services.worker.tiled_io import connect

    settings: ApiSettings = app.state.settings
    app.state.hub.bind(asyncio.get_running_loop())
    # the first picture imports and sets up Matplotlib (seconds on a busy machine): now
    await asyncio.to_thread(render, np.zeros((8, 8)), pixel_size_m=1e-8)
    uri, tiled_key, timeout = (
        settings.tiled_uri,
        settings.tiled_api_key,
        settings.tiled_timeout_s,
    )
    watcher = Watcher(
        None,
        app.state.hub,
        settings.poll_interval_s,
        settings.watch_runs,
        settings.results_key,
        connect=lambda: connect(uri, tiled_key, timeout),
        on_change=app.state.views.changed,
    )
    app.state.watcher = watcher
    watcher.start()
    try:
        yield
    finally:
        watcher.stop()


async def _not_found(request: Request, err: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(err.args[0]) if err.args else "not found"}, 404)


async def _bad_value(request: Request, err: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(err).splitlines()[0]}, 422)


async def _tiled_failed(request: Request, err: Exception) -> JSONResponse:
    """Tiled down or overloaded: 503; a node Tiled does not have (yet): 404, e.g. a result
    read while the worker writes its next version. Anything else is a server error."""
    response = getattr(err, "response", None)
    if getattr(response, "status_code", None) == 404:
        return JSONResponse({"detail": f"not in Tiled (yet): {first_line(err)}"}, 404)
    if not is_transient(err):
        raise err
    return JSONResponse({"detail": f"Tiled did not answer: {first_line(err)}"}, 503)


def create_app(
    settings: ApiSettings | None = None,
    *,
    controller: ScanControl | None = None,
    client: Any | None = None,
) -> FastAPI:
    """Build the app.

    Parameters
    ----------
    settings : where Tiled is, the operators' key, CORS (defaults: environment)
    controller : runs scans for operators; without one the page is read-only
    client : a tiled client to use for requests in the calling thread (tests)

    Raises
    ------
    ValueError
        If no Tiled URI is set.
    """
    settings = settings or ApiSettings()
    if not settings.tiled_uri:
        raise ValueError("no Tiled server: set SPTYCHO_API_TILED_URI or pass --tiled-uri")
    app = FastAPI(
        title="sptycho live view",
        summary="Runs, live reconstructions, stacks and scans of a ptychography beamline",
        lifespan=lifespan,
    )
    hub = Hub()
    app.state.settings = settings
    app.state.hub = hub
    app.state.controller = controller
    app.state.catalog = CatalogAccess(
        settings.tiled_uri,
        settings.tiled_api_key,
        results_key=settings.results_key,
        timeout_s=settings.tiled_timeout_s,
        first=client,
    )
    app.state.pictures = PictureCache()
    app.state.views = RunViews(max_age_s=max(2.0, 4 * settings.poll_interval_s))
    app.state.plotly_bundle = plotly_bundle()
    app.state.watcher = None  # the lifespan starts it
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
            expose_headers=["X-Image-Box"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # outermost
    if controller is not None:
        controller.on_change = lambda state: hub.publish({"type": "scan", **state})
    app.add_exception_handler(KeyError, _not_found)
    app.add_exception_handler(ValueError, _bad_value)
    app.add_exception_handler(httpx.HTTPError, _tiled_failed)
    for router in ROUTERS:  # the page's router first: its Plotly route lies under /static
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
