"""The live page in a real browser (Debian's headless Chromium driven by Playwright) during
a live simulated scan: caproto IOC, embedded Tiled, worker and web app of the demo.

Set ``SPTYCHO_SCREENSHOT`` to a path to keep the screenshot (the README's picture).
"""

import io
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from services.demo import Beamtime, BeamtimeSettings

pytestmark = pytest.mark.system

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "operator-key-live-1"
WORKER = {
    "algorithm": "AP**30",
    "backend": "numpy",
    "refresh_frames": 6,
    "live_iterations": 5,
    "min_frames": 6,
    "poll_interval_s": 0.2,
}


@pytest.fixture(scope="module")
def beamtime(tmp_path_factory):
    settings = BeamtimeSettings(
        data_dir=tmp_path_factory.mktemp("live"), prefix="LIVE:", port=0, key=KEY, worker=WORKER
    )
    with Beamtime(settings) as bt:
        yield bt


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "needs Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    page.wait_for_function("document.getElementById('connection').textContent === 'live'")
    return page, errors


def _fill_stack(page):
    page.fill("#scan-energies", "188,190,192")
    page.fill("#scan-pols", "LH")
    page.fill("#scan-area", "1.0")
    page.fill("#scan-spot", "1.0")
    page.fill("#scan-overlap", "0.85")
    page.fill("#scan-exposure", "0.5")  # slow enough for live results on 2 busy cores
    page.fill("#scan-frame", "64")


def test_a_viewer_without_the_key_cannot_start_a_scan(beamtime, browser):
    page, errors = _open(browser, beamtime.url)
    _fill_stack(page)
    page.click("#scan-start")
    page.wait_for_function("document.getElementById('scan-message').textContent.includes('401')")
    assert "operator key required" in page.text_content("#scan-message")
    page.fill("#operator-key", "not-the-key-0")
    page.click("#scan-start")
    page.wait_for_function("document.getElementById('scan-message').textContent.includes('403')")
    assert beamtime.controller.state()["state"] == "idle"
    assert len(list(beamtime.session.client.keys())) == 0  # nothing was started
    assert not errors
    page.close()


def _pause_and_resume(page, beamtime):
    """Pause the scan from the page, check the in-process RunEngine paused, resume it."""
    page.click("#scan-pause")
    # a fly scan pauses at its next checkpoint: the end of its line (seconds under load)
    page.wait_for_function(
        "document.getElementById('scan-state').dataset.state === 'paused'", timeout=120_000
    )
    assert beamtime.controller.state()["state"] == "paused"
    assert beamtime.session.RE.state == "paused"
    page.click("#scan-resume")
    page.wait_for_function(
        "['running', 'idle'].includes(document.getElementById('scan-state').dataset.state)",
        timeout=120_000,
    )


def test_live_scan_updates_the_page_and_a_click_plots_a_spectrum(beamtime, browser):
    page, errors = _open(browser, beamtime.url)
    viewer, viewer_errors = _open(browser, beamtime.url)  # a second, read-only page
    _fill_stack(page)
    page.fill("#operator-key", KEY)
    page.click("#scan-start")
    page.wait_for_function("document.getElementById('scan-state').dataset.state === 'running'")

    # images change while the scan runs (live partial reconstructions); after the first
    # one the scan is paused and resumed from the page, and the images go on changing
    seen_running: set[str] = set()
    before_pause: set[str] = set()
    progress_seen: set[str] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = page.get_attribute("#scan-state", "data-state")
        stamp = page.get_attribute("#img-amplitude", "data-updated") or ""
        progress_seen.add(viewer.text_content("#progress-text") or "")
        if state == "running" and stamp:
            seen_running.add(stamp)
            if not before_pause:
                before_pause = set(seen_running)
                _pause_and_resume(page, beamtime)
        if state == "idle":
            break
        time.sleep(0.2)
    assert before_pause, "no live result appeared before the scan ended"
    after = seen_running - before_pause
    assert len(after) >= 1, "the amplitude did not change after the scan was resumed"
    assert len(progress_seen) >= 3  # the viewer's progress bar moved too

    uid = list(beamtime.session.client.keys())[-1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        p = beamtime.progress(uid)
        if p["done"] == p["total"] == 3 and p["stack"] == "done":
            break
        time.sleep(0.5)
    assert p["done"] == 3 and p["stack"] == "done", p
    assert all(r["status"] == "done" for r in p["results"])
    # nothing lost or repeated across the pause: every planned frame landed once
    assert p["frames"] == p["frames_total"] == 3 * p["results"][0]["frames_total"], p
    assert all(r["frames_used"] == r["frames_total"] for r in p["results"]), p["results"]

    # the page catches up with the end: every thumbnail of the stack, the last result done
    page.wait_for_function("document.querySelectorAll('#thumbs img').length === 3", timeout=30_000)
    page.wait_for_function(
        "document.getElementById('result-status').textContent.startsWith('done')", timeout=30_000
    )
    # the pictures shown are those of the selected ptychogram as last written
    index = page.input_value("#ptychogram")
    last = beamtime.progress(uid)["results"][int(index)]
    page.wait_for_function(
        "([i, u]) => { const d = document.getElementById('img-amplitude').dataset;"
        " return d.index === i && Number(d.updated) === u; }",
        arg=[index, last["updated"]],
        timeout=30_000,
    )
    # a click on the amplitude plots a spectrum
    page.wait_for_function(
        "document.getElementById('img-amplitude').src.startsWith('blob:')", timeout=30_000
    )
    box = page.locator("#img-amplitude").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    page.wait_for_function("Number(document.getElementById('plot-spectrum').dataset.points) >= 2")
    assert page.locator("#plot-spectrum .scatterlayer .trace").count() >= 1

    png = page.screenshot(full_page=True)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # not blank
    target = os.environ.get("SPTYCHO_SCREENSHOT")
    if target:
        with open(target, "wb") as f:
            f.write(png)
    assert not errors and not viewer_errors
    viewer.close()
    page.close()
