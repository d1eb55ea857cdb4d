"""The page's dose fields and panel in a headless browser, against the demo's real system.

An operator names the sample (``BN-3``: the BN nanobamboo preset) and a dose budget in the
scan form and runs a small raster; the dose panel then shows the sample's map from the
ledger in Tiled with "max X Gy of budget Y Gy". With a budget below what the sample has
already received, the next start is refused with a 422 line naming the dose, and no run
is added.
"""

from __future__ import annotations

import re
import time

import pytest
from test_live_page import _open, browser  # noqa: F401 - the browser fixture

from services.demo import Beamtime, BeamtimeSettings
from services.dose_ledger import DoseLedger

pytestmark = pytest.mark.system

KEY = "operator-key-dose-1"
SAMPLE = "BN-3"


@pytest.fixture(scope="module")
def beamtime(tmp_path_factory):
    worker = {"algorithm": "AP**5", "backend": "numpy", "poll_interval_s": 0.5}
    settings = BeamtimeSettings(
        data_dir=tmp_path_factory.mktemp("dose-page"),
        prefix="DPAGE:",
        port=0,
        key=KEY,
        worker=worker,
    )
    with Beamtime(settings) as bt:
        yield bt


def _fill_raster(page, budget: str) -> None:
    page.select_option("#scan-kind", "raster")
    page.fill("#scan-energies", "192")
    page.fill("#scan-pols", "LH")
    page.fill("#scan-area", "1.0")
    page.fill("#scan-spot", "1.0")
    page.fill("#scan-overlap", "0.5")
    page.fill("#scan-exposure", "0.02")
    page.fill("#scan-frame", "32")
    page.fill("#scan-sample", SAMPLE)
    page.fill("#scan-budget", budget)
    page.fill("#operator-key", KEY)


def test_the_page_sets_the_sample_and_budget_shows_the_map_and_refuses(beamtime, browser):  # noqa: F811
    page, errors = _open(browser, beamtime.url)
    _fill_raster(page, "1e12")
    page.click("#scan-start")
    page.wait_for_function("document.getElementById('scan-message').textContent === 'scan running'")
    deadline = time.monotonic() + 120
    while beamtime.controller.state()["last_exit"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert beamtime.controller.state()["last_exit"] == "success"
    ledger = DoseLedger(beamtime.session.client)
    received = float(ledger.read(SAMPLE).values.max())
    assert received > 0

    page.fill("#dose-sample", SAMPLE)
    page.click("#dose-show")
    page.wait_for_function("document.getElementById('plot-dose').dataset.max !== ''")
    shown = float(page.get_attribute("#plot-dose", "data-max"))
    assert shown == pytest.approx(received)
    summary = page.text_content("#dose-summary")
    found = re.match(r"max (\S+) Gy of budget (\S+) Gy", summary)
    assert found, summary
    assert float(found[1]) == pytest.approx(received, rel=0.05) and float(found[2]) == 1e12
    assert page.locator("#plot-dose .heatmaplayer").count() == 1  # Plotly drew the map

    runs = len(list(beamtime.session.client.keys()))
    budget = 1.2 * received  # the next raster on the same spot goes over it
    _fill_raster(page, repr(budget))
    page.click("#scan-start")
    page.wait_for_function("document.getElementById('scan-message').textContent.includes('422')")
    message = page.text_content("#scan-message")
    assert "refused: point (" in message and f"sample '{SAMPLE}' would reach" in message
    assert f"{received:.2g} Gy already received" in message
    assert len(list(beamtime.session.client.keys())) == runs
    # the ledger lives beside the runs in Tiled, but it is not a run: not in the list
    listed = [li.get_attribute("data-uid") for li in page.locator("#runs li").all()]
    assert "dose" in beamtime.session.client and "dose" not in listed, listed
    assert not errors
    page.close()
