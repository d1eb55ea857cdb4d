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
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from services.api import catalog
from services.api.control import ControllerBusy, ScanController, ScanRequest
from services.api.images import Picture, render
from services.api.limits import BodyLimit
from services.api.live import Hub, Watcher
from services.api.settings import ApiSettings
from services.validation import one_line
from services.worker.tiled_io import first_line, is_transient

STATIC = Path(__file__).parent / "static"


def plotly_bundle() -> Path:
    """The Plotly.js bundle shipped inside the ``plotly`` Python package (served locally)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly.min.js not found in {path.parent}: reinstall plotly")
    return path


class Clients:
    """One tiled client per thread (requests are served from a thread pool).

    Parameters
    ----------
    uri, api_key : the Tiled server
    first : a client for the calling thread (tests)
    timeout_s : read and write timeout of the clients' requests
    """

    def __init__(
        self, uri: str, api_key: str | None, first: Any | None = None, timeout_s: float = 30.0
    ) -> None:
        self.uri = uri
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.local = threading.local()
        if first is not None:
            self.local.client = first

    def get(self) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            from services.worker.tiled_io import connect

            client = connect(self.uri, self.api_key, self.timeout_s)
            self.local.client = client
        return client


class PictureCache:
    """The last rendered pictures, keyed by what they show and when it was written."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.items: OrderedDict[tuple, Picture] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> Picture | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key: tuple, picture: Picture) -> None:
        with self.lock:
            self.items[key] = picture
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def _png(picture: Picture) -> Response:
    return Response(
        picture.png,
        media_type="image/png",
        headers={
            "X-Image-Box": ",".join(f"{v:.5f}" for v in picture.box),
            "Cache-Control": "no-store",
            "Access-Control-Expose-Headers": "X-Image-Box",
        },
    )


def create_app(
    settings: ApiSettings | None = None,
    *,
    controller: ScanController | None = None,
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
    hub = Hub()
    clients = Clients(settings.tiled_uri, settings.tiled_api_key, client, settings.tiled_timeout_s)
    pictures = PictureCache()
    watcher_holder: dict[str, Watcher] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from services.worker.tiled_io import connect

        hub.bind(asyncio.get_running_loop())
        # the first picture imports and sets up Matplotlib (seconds on a busy machine): now
        await asyncio.to_thread(render, np.zeros((8, 8)), pixel_size_m=1e-8)
        uri, tiled_key, timeout = (
            settings.tiled_uri,
            settings.tiled_api_key,
            settings.tiled_timeout_s,
        )
        watcher = Watcher(
            None,
            hub,
            settings.poll_interval_s,
            settings.watch_runs,
            settings.results_key,
            connect=lambda: connect(uri, tiled_key, timeout),
        )
        watcher_holder["w"] = watcher
        app.state.watcher = watcher
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()

    app = FastAPI(
        title="sptycho live view",
        summary="Runs, live reconstructions, stacks and scans of a ptychography beamline",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.hub = hub
    app.state.controller = controller
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
    key = settings.results_key

    @app.exception_handler(KeyError)
    async def not_found(request: Request, err: KeyError) -> JSONResponse:
        return JSONResponse({"detail": str(err.args[0]) if err.args else "not found"}, 404)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err).splitlines()[0]}, 422)

    @app.exception_handler(httpx.HTTPError)
    async def tiled_failed(request: Request, err: httpx.HTTPError) -> JSONResponse:
        if not is_transient(err):
            raise err
        return JSONResponse({"detail": f"Tiled did not answer: {first_line(err)}"}, 503)

    def is_operator(x_api_key: str | None) -> bool:
        return bool(
            settings.key
            and x_api_key
            and secrets.compare_digest(x_api_key.encode(), settings.key.encode())
        )

    def operator(x_api_key: str | None = Header(None)) -> None:
        if settings.key is None:
            raise HTTPException(403, "scans cannot be run from this page: no operator key is set")
        if not x_api_key:
            raise HTTPException(401, "operator key required to run scans (viewers may only read)")
        if not is_operator(x_api_key):
            raise HTTPException(403, "wrong operator key")

    def scans() -> ScanController:
        if controller is None:
            raise HTTPException(409, "no beamline attached to this server: scans cannot run")
        return controller

    # ------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    bundle = plotly_bundle()

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(bundle, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ REST
    @app.get("/api/health")
    def health(x_api_key: str | None = Header(None)) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "ok",
            "beamline": controller is not None,
            "operator_actions": controller is not None and settings.key is not None,
        }
        if is_operator(x_api_key):  # where the data live is for operators only
            out["tiled_uri"] = settings.tiled_uri
        return out

    @app.get("/api/runs")
    def runs(limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return catalog.list_runs(clients.get(), limit)

    @app.get("/api/runs/{uid}")
    def run(uid: str) -> dict[str, Any]:
        return catalog.run_detail(clients.get(), uid, key)

    @app.get("/api/runs/{uid}/positions/{index}")
    def positions(uid: str, index: int) -> dict[str, Any]:
        return catalog.positions(clients.get(), uid, index)

    @app.get("/api/runs/{uid}/results/{index}")
    def result(uid: str, index: int) -> dict[str, Any]:
        c = clients.get()
        md = dict(catalog.result_node(c, uid, index, key).metadata)
        md.pop("history", None)
        return catalog._jsonable({"index": index, **md, "llk": catalog.llk(c, uid, index, key)})

    @app.get("/api/runs/{uid}/results/{index}/{kind}.png")
    def result_png(uid: str, index: int, kind: str, thumb: bool = False) -> Response:
        c = clients.get()
        node = catalog.result_node(c, uid, index, key)
        stamp = node.metadata.get("updated")
        cache_key = ("result", uid, index, kind, thumb, stamp)
        picture = pictures.get(cache_key)
        if picture is None:
            image, pixel, md = catalog.result_image(c, uid, index, kind, key)
            what = f"{md.get('energy_ev', 0):.1f} eV {md.get('polarization', '')}"
            styles = {
                "amplitude": ("gray", "|O|"),
                "phase": ("twilight_shifted", "phase (rad)"),
                "probe": ("magma", "|P|"),
            }
            cmap, label = styles[kind]
            title = what if thumb else f"{kind}, {what}, it {md.get('iterations', 0)}"
            picture = render(
                image, pixel_size_m=pixel, title=title, cmap=cmap, label=label, thumbnail=thumb
            )
            pictures.put(cache_key, picture)
        return _png(picture)

    @app.get("/api/runs/{uid}/stack")
    def stack(uid: str) -> dict[str, Any]:
        node = catalog.stack_node(clients.get(), uid, key)
        md = dict(node.metadata)
        md["energies"] = [float(e) for e in node["energies"].read()] if "energies" in node else []
        md["maps"] = {name: int(node[name].shape[0]) for name in ("xld", "xmcd") if name in node}
        return catalog._jsonable(md)

    @app.get("/api/runs/{uid}/stack/{name}/{index}.png")
    def stack_png(uid: str, name: str, index: int, thumb: bool = False) -> Response:
        c = clients.get()
        stamp = catalog.stack_node(c, uid, key).metadata.get("updated")
        cache_key = ("stack", uid, name, index, thumb, stamp)
        picture = pictures.get(cache_key)
        if picture is None:
            image, pixel, energy, tag = catalog.stack_map(c, uid, name, index, key)
            symmetric = name in ("xld", "xmcd")
            cmap = {"od": "viridis", "phase": "twilight_shifted"}.get(name, "RdBu_r")
            label = {"od": "OD", "phase": "phase (rad)", "xld": "ΔOD", "xmcd": "asymmetry"}[name]
            picture = render(
                image,
                pixel_size_m=pixel,
                title=f"{name.upper()} {energy:.1f} eV {tag}",
                cmap=cmap,
                label=label,
                symmetric=symmetric,
                thumbnail=thumb,
            )
            pictures.put(cache_key, picture)
        return _png(picture)

    @app.get("/api/runs/{uid}/spectrum")
    def spectrum(
        uid: str,
        x0: float = Query(..., ge=0, le=1),
        y0: float = Query(..., ge=0, le=1),
        x1: float = Query(..., ge=0, le=1),
        y1: float = Query(..., ge=0, le=1),
    ) -> dict[str, Any]:
        return catalog.spectrum(clients.get(), uid, (x0, y0, x1, y1), key)

    # ------------------------------------------------------------------ scans
    @app.get("/api/scan")
    def scan_state() -> dict[str, Any]:
        if controller is None:
            return {"state": "unavailable"}
        return controller.state()

    @app.post("/api/scan", dependencies=[Depends(operator)])
    def scan_start(request: ScanRequest) -> dict[str, Any]:
        ctl = scans()
        try:
            return ctl.start(request)
        except ValidationError as err:
            raise HTTPException(422, one_line(err)) from None
        except ControllerBusy as err:
            raise HTTPException(409, str(err)) from None

    @app.post("/api/scan/{action}", dependencies=[Depends(operator)])
    def scan_action(action: str) -> dict[str, Any]:
        ctl = scans()
        actions = {"pause": ctl.pause, "resume": ctl.resume, "abort": ctl.abort}
        if action not in actions:
            raise HTTPException(404, f"no scan action {action!r}: use pause, resume or abort")
        try:
            return actions[action]()
        except ControllerBusy as err:
            raise HTTPException(409, str(err)) from None

    # ------------------------------------------------------------------ live
    @app.websocket("/ws")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        queue = hub.subscribe()
        try:
            watcher = watcher_holder.get("w")
            runs_now = [s["summary"] for s in (watcher.state if watcher else {}).values()][::-1]
            hello = {
                "type": "hello",
                "runs": runs_now,
                "scan": controller.state() if controller else {"state": "unavailable"},
            }
            await websocket.send_text(json.dumps(hello))

            async def forward() -> None:
                while True:
                    await websocket.send_text(await queue.get())

            async def until_closed() -> None:  # notice a closed page at once, not at the next
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass

            tasks = {asyncio.create_task(forward()), asyncio.create_task(until_closed())}
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                task.exception()  # retrieved: a closed socket is the normal end
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            hub.unsubscribe(queue)

    return app
