"""The web app is built from one router per concern whose routes get what they share
through FastAPI dependencies: swapping a dependency of the app changes what every route
of that concern sees (no Tiled server needed: the catalog is swapped too)."""

import pytest
from fastapi.testclient import TestClient

from services.api import deps
from services.api.app import create_app
from services.api.routes import ROUTERS, dose, live, page, pictures, runs, scan, stack
from services.api.settings import ApiSettings

KEY = "operator-secret-2"

# the public API (method, path) -> the router module that serves it
API = {
    ("GET", "/"): page,
    ("GET", "/static/vendor/plotly.min.js"): page,
    ("GET", "/api/health"): page,
    ("GET", "/api/runs"): runs,
    ("GET", "/api/runs/{uid}"): runs,
    ("GET", "/api/runs/{uid}/positions/{index}"): runs,
    ("GET", "/api/runs/{uid}/results/{index}"): runs,
    ("GET", "/api/runs/{uid}/results/{index}/{kind}.png"): pictures,
    ("GET", "/api/runs/{uid}/stack"): stack,
    ("GET", "/api/runs/{uid}/stack/{name}/{index}.png"): stack,
    ("GET", "/api/runs/{uid}/spectrum"): stack,
    ("GET", "/api/scan"): scan,
    ("POST", "/api/scan"): scan,
    ("POST", "/api/scan/{action}"): scan,
    ("GET", "/api/dose"): dose,
    ("GET", "/api/dose/{sample}"): dose,
    ("WS", "/ws"): live,
}
PREFIXES = {page: "", runs: "/api/runs", pictures: "/api/runs", stack: "/api/runs"}
PREFIXES |= {scan: "/api/scan", dose: "/api/dose", live: ""}


class _NoRuns:
    """A catalog in which nothing is found."""

    results_key = "recon"

    def client(self):
        raise KeyError("the injected catalog has no runs")


class _Controller:
    def state(self):
        return {"state": "injected"}

    def pause(self):
        return {"state": "paused by the injected controller"}

    resume = abort = state


class _Watcher:
    state = {"u1": {"summary": {"uid": "u1"}}, "u2": {"summary": {"uid": "u2"}}}


def _app(**settings):
    return create_app(ApiSettings(tiled_uri="http://tiled.invalid", **settings))


def _served(router) -> set[tuple[str, str]]:
    return {(m, r.path) for r in router.routes for m in (getattr(r, "methods", None) or {"WS"})}


@pytest.mark.parametrize("module", list(PREFIXES), ids=lambda m: m.__name__.split(".")[-1])
def test_each_concern_has_its_router_and_prefix(module):
    assert module.router in ROUTERS
    assert module.router.prefix == PREFIXES[module]
    assert _served(module.router) == {route for route, m in API.items() if m is module}


def test_the_app_serves_the_routers_routes_and_no_others():
    assert len(ROUTERS) == len(PREFIXES)
    documented = {(m.upper(), path) for path, ops in _app().openapi()["paths"].items() for m in ops}
    hidden = {("GET", "/"), ("GET", "/static/vendor/plotly.min.js"), ("WS", "/ws")}
    assert documented == set(API) - hidden


def test_every_catalog_route_reads_the_injected_catalog():
    app = _app()
    app.dependency_overrides[deps.get_catalog] = _NoRuns
    paths = [path for (method, path), m in API.items() if m in (runs, pictures, stack)]
    concrete = {"{uid}": "r1", "{index}": "0", "{kind}": "amplitude", "{name}": "od"}
    query = {"x0": 0.1, "y0": 0.1, "x1": 0.9, "y1": 0.9}
    client = TestClient(app)
    for path in paths:
        for name, value in concrete.items():
            path = path.replace(name, value)
        r = client.get(path, params=query if path.endswith("spectrum") else None)
        assert r.status_code == 404, path
        assert r.json()["detail"] == "the injected catalog has no runs", path


def test_scan_health_and_live_read_the_injected_controller():
    app = _app(key=KEY)
    app.dependency_overrides[deps.get_controller] = _Controller
    app.dependency_overrides[deps.get_watcher] = _Watcher
    client = TestClient(app)
    assert client.get("/api/scan").json() == {"state": "injected"}
    assert client.post("/api/scan/pause").status_code == 401  # the operator check still holds
    paused = client.post("/api/scan/pause", headers={"X-API-Key": KEY})
    assert paused.json() == {"state": "paused by the injected controller"}
    health = client.get("/api/health").json()
    assert health["beamline"] and health["operator_actions"]
    with client.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
    assert hello["scan"] == {"state": "injected"}
    assert [r["uid"] for r in hello["runs"]] == ["u2", "u1"]  # newest first


class _Rewriting:
    """A catalog whose Tiled answers 404 (a result node read while the worker rewrites it)
    or 400 (a request Tiled refuses: a bug, not to be hidden)."""

    results_key = "recon"
    status = 404

    def client(self):
        import httpx

        request = httpx.Request("GET", "http://tiled.invalid/api/v1/array/full/r1/recon/p0000")
        response = httpx.Response(self.status, request=request)
        raise httpx.HTTPStatusError("Tiled said no", request=request, response=response)


def test_a_node_missing_in_tiled_is_404_and_a_refused_request_is_not_hidden():
    app = _app()
    app.dependency_overrides[deps.get_catalog] = _Rewriting
    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/api/runs/r1/results/0")
    assert r.status_code == 404 and r.json()["detail"].startswith("not in Tiled (yet)")

    class _Broken(_Rewriting):
        status = 400

    app.dependency_overrides[deps.get_catalog] = _Broken
    assert client.get("/api/runs/r1/results/0").status_code == 500
