"""The dose a sample received, kept in Tiled, and the budget that refuses a scan before it moves.

Real parts: the caproto IOC over Channel Access, a Tiled server, the project's RunEngine
with its dose recorder. Two overlapping rasters of one sample (the second shifted by half
the area, its flux read from I0) land in the ledger; the map is judged against
:mod:`recon.dose` from what Tiled holds of the runs (measured positions, energies, I0).
Then a scan that would take the sample over its budget is refused in one line, from the
console (``sptycho scan raster`` in a subprocess), from the page's API (``POST /api/scan``:
422) and from the queue plans, with nothing moved and no run written.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from recon.dose import single_exposure_dose_gray
from services.tiled_server import TiledServer, free_port
from simulators.ioc.testing import IOCProcess

pytestmark = pytest.mark.system

PREFIX = "DOSE:"
SAMPLE = "BN-7"
SPOT = 0.4e-6
#: 6 x 6 points, 0.2 um apart, 10 ms exposures, no dark frames (the shutter stays closed)
SCAN = dict(area_m=1e-6, spot_m=SPOT, overlap=0.5, exposure_s=0.01, n_dark=0, frame_size=32)
SCAN_BIN = str(Path(sys.executable).parent / "sptycho")
KEY = "operator-dose-1"


@pytest.fixture(scope="module")
def ioc():
    with IOCProcess(PREFIX, args=["--pol-time", "0.2"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dose")


@pytest.fixture(scope="module")
def tiled(data_dir):
    frames = data_dir / "frames"
    frames.mkdir(exist_ok=True)
    with TiledServer(data_dir / "tiled", readable=[frames], port=free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def session(ioc, tiled, data_dir):
    """Devices and the project's RunEngine, its exposures going to the dose ledger."""
    from devices.beamline import make_beamline
    from services.acquisition import make_run_engine
    from services.dose_ledger import DoseLedger

    bl = make_beamline(PREFIX, data_dir=str(data_dir / "frames"), timeout=30)
    ledger = DoseLedger(tiled.client())
    RE = make_run_engine(tiled.client(), beamline=bl, context_managers=[], dose_ledger=ledger)
    yield bl, RE, ledger
    bl.disconnect()


@pytest.fixture(scope="module")
def two_scans(session):
    """Scan A at the centre with a given flux, scan B 0.5 um to the right with I0's."""
    from plans.parameters import RasterParams
    from plans.ptycho import defocused_raster

    bl, RE, ledger = session
    a = RE(defocused_raster(bl, RasterParams(sample=SAMPLE, flux_ph_s=1e8, **SCAN)))
    shifted = RasterParams(sample=SAMPLE, centre_um=(0.5, 0.0), dose_budget_gray=1e12, **SCAN)
    b = RE(defocused_raster(bl, shifted, dose_ledger=ledger))
    return a[0], b[0]


def _exposures(client, uid: str) -> tuple[np.ndarray, float]:
    """(N, 2) measured spot centres (y, x) in m and the single-exposure dose (Gy) of a run,
    from what Tiled holds (the flux: given, else the mean I0 of the frames)."""
    run = client[uid]
    args = run.metadata["start"]["plan_args"]
    table = run["primary"].read()
    pos = np.stack([np.asarray(table["sample_fy"]), np.asarray(table["sample_fx"])], axis=1)
    flux = args["flux_ph_s"] or float(np.mean(np.asarray(table["beam_i0"])))
    energy = float(np.mean(np.asarray(table["optics_energy"])))
    single = single_exposure_dose_gray(
        args["material"], args["thickness_m"], flux * args["exposure_s"], args["spot_m"], energy
    )
    return pos * 1e-6, single


def _covering(positions_m: np.ndarray, y_m: float, x_m: float) -> int:
    """How many spots cover stage point (y, x)."""
    d2 = (positions_m[:, 0] - y_m) ** 2 + (positions_m[:, 1] - x_m) ** 2
    return int(np.count_nonzero(d2 <= (SPOT / 2) ** 2 * (1 + 1e-9)))


def test_two_overlapping_scans_add_up_in_the_ledger(two_scans, tiled):
    from services.dose_ledger import LEDGER_KEY, map_from_node

    uid_a, uid_b = two_scans
    client = tiled.client()
    dose, md = map_from_node(client[LEDGER_KEY][SAMPLE])
    assert md["units"] == "Gy" and md["runs"][:2] == [uid_a, uid_b]
    assert client[uid_a].metadata["start"]["sample"] == SAMPLE
    check = client[uid_b].metadata["start"]["dose_check"]
    assert check["flux_source"] == "I0 diode at 192.0 eV"
    # the diode's current read at the plan's start, at the energy then, is the flux that the
    # frames recorded (I0 in ph/s)
    recorded = np.asarray(client[uid_b]["primary"].read()["beam_i0"])
    assert check["flux_ph_s"] == pytest.approx(float(np.mean(recorded)), rel=3e-3)
    pos_a, single_a = _exposures(client, uid_a)
    pos_b, single_b = _exposures(client, uid_b)
    assert len(pos_a) == len(pos_b) == 36
    assert single_b == pytest.approx(single_a, rel=0.05)  # I0 is about the flux given
    y, x = dose.coordinates_m()
    # every pixel of the map is the sum over both scans of the spots covering it
    seen = {"both": 0, "a only": 0, "b only": 0}
    for i in range(0, len(y), 2):
        for j in range(0, len(x), 2):
            n_a, n_b = _covering(pos_a, y[i], x[j]), _covering(pos_b, y[i], x[j])
            assert dose.values[i, j] == pytest.approx(n_a * single_a + n_b * single_b, rel=1e-9)
            if n_a and n_b:
                seen["both"] += 1
            elif n_a or n_b:
                seen["a only" if n_a else "b only"] += 1
    assert min(seen.values()) > 5, seen
    # points by name: left only in A, right only in B, the middle of the overlap in both
    assert dose.at(0.0, -0.6e-6) == pytest.approx(_covering(pos_a, 0.0, -0.6e-6) * single_a)
    assert dose.at(0.0, 1.1e-6) == pytest.approx(_covering(pos_b, 0.0, 1.1e-6) * single_b)
    middle = dose.at(0.0, 0.25e-6)
    assert middle > 0.9 * (dose.at(0.0, -0.25e-6) + dose.at(0.0, 0.75e-6))
    assert md["max_gray"] == pytest.approx(dose.values.max())


def _still(bl) -> dict:
    """What must not change when a scan is refused."""
    return {
        "fx": bl.sample.fx.position,
        "fy": bl.sample.fy.position,
        "cx": bl.sample.cx.position,
        "energy": bl.optics.energy.position,
        "shutter": bl.shutter.status.get(),
    }


def _over_budget(ledger) -> float:
    """A budget a little above what the sample has received: the next scan exceeds it."""
    return 1.05 * float(ledger.read(SAMPLE).values.max())


def _assert_refusal(line: str, budget: float) -> None:
    assert "\n" not in line.strip()
    assert line.startswith("refused: point (") and f"of sample '{SAMPLE}' would reach" in line
    assert f"(budget {budget:.2g} Gy; " in line
    received = float(line.rsplit("; ", 1)[1].split(" Gy already received")[0])
    reach = float(line.split("would reach ")[1].split(" Gy")[0])
    assert received > 0 and reach > budget


def test_queue_plans_refuse_before_any_message(two_scans, session, tiled):
    from plans.dose_check import DoseRefused
    from services.queue.plans import make_queue_plans

    bl, _, ledger = session
    budget = _over_budget(ledger)
    before, runs = _still(bl), set(tiled.client().keys())
    plans = make_queue_plans(bl, dose_ledger=ledger)
    for name, extra in (("ptycho_raster", {}), ("ptycho_stack", {"energies": [192.0, 194.0]})):
        plan = plans[name](sample=SAMPLE, dose_budget_gray=budget, **SCAN, **extra)
        with pytest.raises(DoseRefused) as err:
            next(plan)  # the first message is never produced
        _assert_refusal(str(err.value), budget)
    assert _still(bl) == before and set(tiled.client().keys()) == runs


def test_page_api_refuses_with_422(two_scans, session, tiled):
    from fastapi.testclient import TestClient

    from services.api.app import create_app
    from services.api.control import ScanController
    from services.api.settings import ApiSettings

    bl, RE, ledger = session
    budget = _over_budget(ledger)
    before, runs = _still(bl), set(tiled.client().keys())
    settings = ApiSettings(tiled_uri=tiled.uri, tiled_api_key=tiled.api_key, key=KEY)
    controller = ScanController(bl, RE)
    params = {**SCAN, "sample": SAMPLE, "dose_budget_gray": budget}
    with TestClient(create_app(settings, controller=controller)) as api:
        answer = api.post(
            "/api/scan", json={"kind": "raster", "params": params}, headers={"X-API-Key": KEY}
        )
        assert answer.status_code == 422, answer.text
        _assert_refusal(answer.json()["detail"], budget)
        assert api.get("/api/scan").json()["state"] == "idle"
        shown = api.get(f"/api/dose/{SAMPLE}").json()
        assert shown["max_gray"] == pytest.approx(ledger.read(SAMPLE).values.max())
        assert len(shown["runs"]) == 2 and np.asarray(shown["dose_gray"]).ndim == 2
        assert api.get("/api/dose").json()["samples"] == [SAMPLE]
        assert api.get("/api/dose/nobody").status_code == 404
    assert _still(bl) == before and set(tiled.client().keys()) == runs


def test_console_refuses_in_one_line(two_scans, session, tiled, tmp_path):
    bl, _, ledger = session
    budget = _over_budget(ledger)
    before, runs = _still(bl), set(tiled.client().keys())
    cmd = [SCAN_BIN, "scan", "raster", "--prefix", PREFIX, "--data-dir", str(tmp_path)]
    cmd += ["--tiled-uri", tiled.uri, "--api-key", tiled.api_key, "--sample", SAMPLE]
    cmd += ["--dose-budget", repr(budget), "--area", "1e-6", "--spot", repr(SPOT)]
    cmd += ["--overlap", "0.5", "--exposure", "0.01", "--dark", "0", "--frame-size", "32"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    _assert_refusal(lines[0].removeprefix("error: "), budget)
    assert _still(bl) == before and set(tiled.client().keys()) == runs


def test_an_aborted_scan_adds_only_what_it_exposed(two_scans, session, tiled):
    from bluesky.utils import RunEngineInterrupted

    from plans.parameters import RasterParams
    from plans.ptycho import defocused_raster
    from services.dose_ledger import LEDGER_KEY, map_from_node

    bl, RE, ledger = session
    primary, taken = [], []

    def pause_after_five(name, doc):
        if name == "descriptor" and doc["name"] == "primary":
            primary.append(doc["uid"])
        elif name == "event" and doc["descriptor"] in primary:
            taken.append(doc["seq_num"])
            if len(taken) == 5:  # asked from another thread, as an operator would
                threading.Thread(target=RE.request_pause, kwargs={"defer": False}).start()

    token = RE.subscribe(pause_after_five)
    params = RasterParams(sample=SAMPLE, mode="step", centre_um=(-4.0, 0.0), **SCAN)
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(defocused_raster(bl, params, dose_ledger=ledger))
        (uid,) = RE.abort("test: aborted after five points")
    finally:
        RE.unsubscribe(token)
    client = tiled.client()
    assert client[uid].metadata["stop"]["exit_status"] == "abort"
    dose, md = map_from_node(client[LEDGER_KEY][SAMPLE])
    assert md["runs"][-1] == uid
    pos, single = _exposures(client, uid)
    assert 5 <= len(pos) < 36
    y, x = dose.coordinates_m()
    left = [j for j in range(len(x)) if x[j] < -2.5e-6]  # away from the first two scans
    assert left
    for i in range(len(y)):
        for j in left:
            assert dose.values[i, j] == pytest.approx(_covering(pos, y[i], x[j]) * single)
    assert dose.values[:, left].max() > 0
