"""The web API in-process (FastAPI's TestClient) against a real embedded Tiled server that
holds a replayed 2-energy x LH/LV run reconstructed by the real worker."""

import io
import logging
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from fastapi.testclient import TestClient
from PIL import Image

from services.api.app import create_app
from services.api.control import ScanController
from services.api.images import nice_length, render
from services.api.settings import ApiSettings
from services.tiled_server import TiledServer
from services.worker import Worker, load_settings
from services.worker.replay import raw_dark, replay
from simulators.dataset import simulate_ptychogram

KEY = "operator-secret-1"


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    with TiledServer(tmp_path_factory.mktemp("tiled")) as server:
        yield server


@pytest.fixture(scope="module")
def run_uid(tiled):
    kw = dict(sample="bn-bamboo", spot_m=1e-6, overlap=0.5, area_m=1e-6)
    kw.update(exposure_s=0.1, frame_size=64, seed=5)
    ptychograms = [
        simulate_ptychogram(energy_ev=e, polarization=p, **kw)
        for e in (188.0, 192.0)
        for p in ("LH", "LV")
    ]
    for p in ptychograms:
        p.frames = p.frames.astype(np.float32)
    client = tiled.client()
    uid = replay(TiledWriter(client, batch_size=50), ptychograms, raw_dark(ptychograms[0]))
    settings = load_settings(
        tiled_uri=tiled.uri,
        tiled_api_key=tiled.api_key,
        backend="numpy",
        algorithm="AP**20",
        poll_interval_s=0.2,
    )
    worker = Worker(settings)
    try:
        assert worker.wait_idle(180)
    finally:
        worker.close()
    return uid


def _app(tiled, **kw):
    base = dict(tiled_uri=tiled.uri, tiled_api_key=tiled.api_key, poll_interval_s=0.2)
    return create_app(ApiSettings(**{**base, **kw.pop("settings", {})}), **kw)


@pytest.fixture(scope="module")
def api(tiled, run_uid):
    with TestClient(_app(tiled, settings={"key": KEY})) as client:
        yield client


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L"), dtype=float)


def test_runs_and_detail_show_progress_results_and_dose(api, run_uid):
    runs = api.get("/api/runs").json()
    assert runs[0]["uid"] == run_uid
    assert runs[0]["n_ptychograms"] == 4 and runs[0]["state"] == "success"
    d = api.get(f"/api/runs/{run_uid}").json()
    assert d["frames"] == d["points_total"] == 4 * 9
    assert [(r["index"], r["status"]) for r in d["results"]] == [(i, "done") for i in range(4)]
    assert {(r["energy_ev"], r["polarization"]) for r in d["results"]} == {
        (188.0, "LH"),
        (188.0, "LV"),
        (192.0, "LH"),
        (192.0, "LV"),
    }
    assert d["stack"]["status"] == "done" and d["stack"]["xld_energies"] == [188.0, 192.0]


def test_pictures_have_contrast_and_an_image_box(api, run_uid):
    for kind in ("amplitude", "phase", "probe"):
        r = api.get(f"/api/runs/{run_uid}/results/1/{kind}.png")
        pixels = _png(r)
        assert pixels.shape[0] > 300 and pixels.std() > 10, kind
        left, top, right, bottom = map(float, r.headers["x-image-box"].split(","))
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
    thumb = _png(api.get(f"/api/runs/{run_uid}/results/1/amplitude.png?thumb=1"))
    assert thumb.shape[0] < 250
    xld = _png(api.get(f"/api/runs/{run_uid}/stack/xld/1.png"))
    assert xld.std() > 10


def test_result_carries_the_convergence_curve(api, run_uid):
    r = api.get(f"/api/runs/{run_uid}/results/0").json()
    assert r["status"] == "done" and len(r["llk"]) == r["iterations"] >= 20
    assert r["llk"][-1] < r["llk"][0]


def test_measured_positions_of_one_ptychogram(api, run_uid):
    p = api.get(f"/api/runs/{run_uid}/positions/2").json()
    assert len(p["measured"]["x"]) == len(p["measured"]["y"]) == 9
    assert p["measured"]["order"] == list(range(9))
    # a 3 x 3 raster of 0.5 um steps about the centre
    assert sorted(set(np.round(p["measured"]["x"], 2))) == pytest.approx([-0.5, 0.0, 0.5])


def test_spectrum_of_a_region_from_the_stack(api, run_uid):
    s = api.get(f"/api/runs/{run_uid}/spectrum", params=dict(x0=0.3, y0=0.3, x1=0.7, y1=0.7))
    body = s.json()
    assert body["source"] == "stack"
    assert {x["polarization"] for x in body["series"]} == {"LH", "LV"}
    for series in body["series"]:
        assert series["energies"] == [188.0, 192.0]
        assert all(np.isfinite(series["od"]))
    bad = api.get(f"/api/runs/{run_uid}/spectrum", params=dict(x0=0.7, y0=0.3, x1=0.3, y1=0.7))
    assert bad.status_code == 422 and "x0 < x1" in bad.json()["detail"]


def test_missing_things_are_one_line_404s(api, run_uid):
    for path in ("/api/runs/nope", f"/api/runs/{run_uid}/results/9/amplitude.png"):
        r = api.get(path)
        assert r.status_code == 404 and "\n" not in r.json()["detail"]
    r = api.get(f"/api/runs/{run_uid}/results/0/hologram.png")
    assert r.status_code == 404 and "amplitude, phase or probe" in r.json()["detail"]


def test_page_and_its_assets_are_served_locally(api):
    page = api.get("/")
    assert page.status_code == 200 and "/static/vendor/plotly.min.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    js = api.get("/static/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert api.get("/static/app.js").status_code == 200


def test_websocket_pushes_a_rewritten_result(api, tiled, run_uid):
    client = tiled.client()
    with api.websocket_connect("/ws") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["scan"]["state"] == "unavailable"
        before = api.get(f"/api/runs/{run_uid}/results/2").json()  # kept by the app
        node = client[run_uid]["recon"]["p0002"]
        stamp = time.time()
        node.update_metadata(metadata={**dict(node.metadata), "updated": stamp})
        for _ in range(40):  # (the first look at the runs announces every result)
            m = ws.receive_json()
            if m["type"] == "result" and m["index"] == 2 and abs(m["updated"] - stamp) < 1e-3:
                break
        assert m["updated"] == pytest.approx(stamp, abs=1e-3) and m["uid"] == run_uid
        # a page that asks when the message comes gets the new result, not the kept one
        after = api.get(f"/api/runs/{run_uid}/results/2").json()
        assert before["updated"] != pytest.approx(stamp, abs=1e-3)
        assert after["updated"] == pytest.approx(stamp, abs=1e-3)
        detail = api.get(f"/api/runs/{run_uid}").json()
        assert detail["results"][2]["updated"] == pytest.approx(stamp, abs=1e-3)


def test_viewers_cannot_run_scans(tiled, run_uid):
    controller = ScanController(beamline=None, RE=RunEngine({}, context_managers=[]))
    with TestClient(_app(tiled, settings={"key": KEY}, controller=controller)) as api:
        body = {"kind": "stack", "params": {"energies": [192.0]}}
        assert api.post("/api/scan", json=body).status_code == 401
        r = api.post("/api/scan", json=body, headers={"X-API-Key": "wrong-key-123"})
        assert r.status_code == 403
        assert api.post("/api/scan/abort").status_code == 401
        # with the key, the plan's own parameter checks answer, before anything moves
        bad = {"kind": "stack", "params": {"energies": [5000.0]}}
        r = api.post("/api/scan", json=bad, headers={"X-API-Key": KEY})
        assert r.status_code == 422 and "outside 100-2000 eV" in r.json()["detail"]
        assert api.get("/api/scan").json()["state"] == "idle"
    with TestClient(_app(tiled, controller=controller)) as api:  # no key set: nobody may
        r = api.post("/api/scan", json=body, headers={"X-API-Key": KEY})
        assert r.status_code == 403 and "no operator key" in r.json()["detail"]
    with TestClient(_app(tiled, settings={"key": KEY})) as api:  # no beamline attached
        r = api.post("/api/scan", json=body, headers={"X-API-Key": KEY})
        assert r.status_code == 409


def test_cors_is_off_unless_origins_are_given(tiled, run_uid):
    origin = {"Origin": "http://elsewhere.example"}
    with TestClient(_app(tiled)) as api:
        assert "access-control-allow-origin" not in api.get("/api/runs", headers=origin).headers
    with TestClient(_app(tiled, settings={"cors_origins": [origin["Origin"]]})) as api:
        r = api.get("/api/runs", headers=origin)
        assert r.headers["access-control-allow-origin"] == origin["Origin"]


def test_settings_refuse_bad_values_and_need_tiled():
    with pytest.raises(ValueError, match="poll_interval_s"):
        ApiSettings(tiled_uri="http://x", poll_interval_s=0)
    with pytest.raises(ValueError, match="no Tiled server"):
        create_app(ApiSettings(tiled_uri=None))


@pytest.mark.parametrize(("span", "length"), [(2000.0, 200.0), (1000.0, 200.0), (700.0, 100.0)])
def test_scale_bar_is_a_round_fifth_of_the_width(span, length):
    assert nice_length(span) == length


def test_render_puts_a_scale_bar_in_the_image():
    image = np.zeros((100, 100))
    with_bar = render(image, pixel_size_m=10e-9)
    without = render(image)
    a = np.asarray(Image.open(io.BytesIO(with_bar.png)).convert("L"), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(without.png)).convert("L"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).sum() > 1000  # the white bar and its label


# ---------------------------------------------------------------- limits, errors, notices
class _CountPlan(ScanController):
    """The real controller and RunEngine on a real bluesky plan (a count of ophyd's
    simulated detector), so that scans can run without the beamline IOC."""

    def __init__(self, RE, num=400):
        super().__init__(beamline=None, RE=RE, notice_poll_s=0.1)
        self.num = num

    def build_plan(self, request):
        import bluesky.plans as bp
        from ophyd.sim import det

        return bp.count([det], num=self.num, delay=0.05)


class _Board:
    """What the session attaches as ``RE.notices``: the current one-line notice."""

    current = None


def test_big_bodies_are_refused_before_they_are_read(api):
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    t0 = time.monotonic()
    r = api.post("/api/scan", content=b" " * 60_000_000, headers=headers)
    assert r.status_code == 413 and time.monotonic() - t0 < 10
    assert r.json()["detail"] == (
        "request body too large (60000000 bytes): the limit is 1000000 bytes"
    )

    def chunked():  # no Content-Length: the bytes are counted as they come
        for _ in range(30):
            yield b" " * 100_000

    r = api.post("/api/scan", content=chunked(), headers=headers)
    assert r.status_code == 413 and "more than 1000000 bytes" in r.json()["detail"]
    # a body under the limit goes through to the app (whose checks answer)
    small = {"kind": "stack", "params": {"energies": [5000.0]}}
    assert api.post("/api/scan", json=small, headers={"X-API-Key": KEY}).status_code == 409


def test_a_chunked_body_stops_being_read_at_the_limit(tiled, run_uid):
    import asyncio

    app = _app(tiled, settings={"key": KEY, "max_body_bytes": 250_000})
    pulled, sent = [], []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 100_000, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/scan",
        "raw_path": b"/api/scan",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"transfer-encoding", b"chunked"), (b"x-api-key", KEY.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    assert len(pulled) == 3  # 300 kB > 250 kB: not one chunk more (the stream is endless)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413


def test_positions_of_a_ptychogram_out_of_range_are_404(api, run_uid):
    for index in (4, 10**30, -1):
        r = api.get(f"/api/runs/{run_uid}/positions/{index}")
        assert r.status_code == 404, (index, r.text)
        assert r.json()["detail"] == f"no ptychogram {index} in run {run_uid}: it has 4 (0..3)"
    assert api.get(f"/api/runs/{run_uid}/positions/3").status_code == 200
    r = api.get("/api/runs/nope/positions/0")
    assert r.status_code == 404 and r.json()["detail"] == "no run nope"


def test_health_shows_the_tiled_uri_to_operators_only(api, tiled):
    anonymous = api.get("/api/health").json()
    assert anonymous["status"] == "ok" and "tiled_uri" not in anonymous
    wrong = api.get("/api/health", headers={"X-API-Key": "wrong-key-123"}).json()
    assert "tiled_uri" not in wrong
    operator = api.get("/api/health", headers={"X-API-Key": KEY}).json()
    assert operator["tiled_uri"] == tiled.uri


def test_an_abort_is_one_info_line_not_a_traceback(tiled, run_uid, caplog):
    controller = _CountPlan(RunEngine({}, context_managers=[]))
    with TestClient(_app(tiled, settings={"key": KEY}, controller=controller)) as api:
        op = {"X-API-Key": KEY}
        assert api.post("/api/scan", json={"kind": "stack"}, headers=op).json()["state"] == (
            "running"
        )
        time.sleep(0.3)
        with caplog.at_level(logging.INFO):
            state = api.post("/api/scan/abort", headers=op).json()
            time.sleep(0.3)
    assert state["state"] == "idle" and state["last_exit"] == "abort"
    assert not [r for r in caplog.records if r.exc_info or r.exc_text]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    said = [r for r in caplog.records if r.name in ("bluesky", "sptycho.api")]
    aborted = [r for r in said if "abort" in r.getMessage().lower()]
    assert [(r.levelname, r.getMessage()) for r in aborted] == [
        ("INFO", "run aborted on request (exit status abort)")
    ]


def test_scan_state_carries_the_notice_and_publishes_its_changes(tiled, run_uid):
    RE = RunEngine({}, context_managers=[])
    RE.notices = _Board()
    controller = _CountPlan(RE)
    with TestClient(_app(tiled, settings={"key": KEY}, controller=controller)) as api:
        op = {"X-API-Key": KEY}
        assert api.get("/api/scan").json()["notice"] is None
        with api.websocket_connect("/ws") as ws:
            assert ws.receive_json()["type"] == "hello"
            api.post("/api/scan", json={"kind": "stack"}, headers=op)
            lost = "suspended: beam lost (ring 0.0 mA)"
            RE.notices.current = lost
            scan = _next_scan(ws, lambda m: m["notice"] == lost)
            assert scan["state"] == "running"
            assert api.get("/api/scan").json()["notice"] == lost
            paused = api.post("/api/scan/pause", headers=op).json()
            assert paused["state"] == "paused" and paused["notice"] == lost
            RE.notices.current = None  # cleared while paused: published too
            scan = _next_scan(ws, lambda m: m["notice"] is None)
            assert scan["state"] == "paused"
            api.post("/api/scan/abort", headers=op)
    del RE.notices  # a RunEngine without a notice board: no notice, no error
    assert controller.state()["notice"] is None


def test_the_page_has_a_place_for_the_notice(api):
    page = api.get("/").text
    assert 'id="scan-notice"' in page and "hidden" in page.split('id="scan-notice"')[1][:40]
    js = api.get("/static/app.js").text
    assert "state.notice" in js


def _next_scan(ws, condition, limit=40):
    for _ in range(limit):
        m = ws.receive_json()
        if m["type"] == "scan" and condition(m):
            return m
    raise AssertionError("no such scan message")


class _CheckedCountPlan(_CountPlan):
    """The real parameter checks of the requested plan (RasterParams / StackParams), then
    a count of ophyd's simulated detector instead of that plan (no beamline IOC)."""

    def build_plan(self, request):
        plan = ScanController.build_plan(self, request)  # raises on refused parameters
        plan.close()  # a generator not started: nothing moved
        self.checked = request
        return super().build_plan(request)


def test_scan_mode_and_motion_from_the_page_are_checked(tiled):
    controller = _CheckedCountPlan(RunEngine({}, context_managers=[]), num=20)
    raster = {"energy_ev": 192.0, "frame_size": 64, "n_dark": 0}
    op = {"X-API-Key": KEY}
    with TestClient(_app(tiled, settings={"key": KEY}, controller=controller)) as api:
        bad = {"kind": "raster", "params": {**raster, "mode": "step", "motion": "continuous"}}
        r = api.post("/api/scan", json=bad, headers=op)
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == (
            "motion 'continuous' needs mode 'fly' (a step scan stops at every point)"
        )
        assert api.get("/api/scan").json()["state"] == "idle"
        assert not hasattr(controller, "checked")  # refused before any plan was started
        unknown = {"kind": "raster", "params": {**raster, "mode": "sideways"}}
        r = api.post("/api/scan", json=unknown, headers=op)
        assert r.status_code == 422 and r.json()["detail"].startswith("mode: ")
        assert "\n" not in r.json()["detail"]
        good = {"kind": "raster", "params": {**raster, "mode": "fly", "motion": "continuous"}}
        r = api.post("/api/scan", json=good, headers=op)
        assert r.status_code == 200 and r.json()["state"] == "running", r.text
        assert controller.checked.params["mode"] == "fly"
        assert controller.checked.params["motion"] == "continuous"
        api.post("/api/scan/abort", headers=op)


def test_the_page_sends_mode_and_motion(tiled):
    with TestClient(_app(tiled)) as api:
        page = api.get("/").text
        js = api.get("/static/app.js").text
    for select, options in (
        ("scan-mode", ("fly", "step")),  # fly first: the default
        ("scan-motion", ("step", "continuous")),
    ):
        html = page.split(f'id="{select}"')[1].split("</select>")[0]
        assert [o.split('"')[0] for o in html.split('value="')[1:]] == list(options)
    assert 'mode: $("scan-mode").value' in js and 'motion: $("scan-motion").value' in js
