"""Streaming instead of polling: the worker and the live watcher follow Tiled's websocket
subscriptions when Tiled has a streaming cache (a private Redis here), and poll the embedded
SQLite Tiled, which has none.

The streaming tests set the polling intervals far beyond their waits (60 s between polls,
600 s between safety polls): whatever arrives arrived because Tiled pushed a change.
"""

import asyncio
import json
import logging
import threading
import time

import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter
from private_services import private_redis

from services.api.live import Hub, Watcher
from services.tiled_server import TiledServer
from services.tiled_stream import open_feed
from services.worker import Worker, load_settings
from services.worker.replay import raw_dark, replay
from services.worker.tiled_io import ResultStore
from simulators.dataset import simulate_ptychogram

pytestmark = [
    pytest.mark.system,
    # tiled 0.2.20's websocket client, not this project
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
]

HUGE_POLL_S = 60.0
HUGE_SAFETY_S = 600.0


@pytest.fixture(scope="module")
def redis_url():
    with private_redis() as redis:
        yield redis.url()


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, redis_url):
    """An embedded Tiled whose catalog streams changes through the private Redis."""
    directory = tmp_path_factory.mktemp("streamed")
    with TiledServer(directory / "tiled", streaming_cache=redis_url) as server:
        yield server


@pytest.fixture(scope="module")
def polled(tmp_path_factory):
    """The embedded default: SQLite, no streaming cache."""
    with TiledServer(tmp_path_factory.mktemp("polled") / "tiled") as server:
        yield server


@pytest.fixture(scope="module")
def ptychogram():
    kw = dict(sample="bn-bamboo", energy_ev=192.0, spot_m=1e-6, overlap=0.5, area_m=1e-6)
    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=32, seed=3, **kw)
    p.frames = p.frames.astype(np.float32)
    return p


def _settings(server, **kw):
    base = dict(
        tiled_uri=server.uri,
        tiled_api_key=server.api_key,
        backend="numpy",
        algorithm="AP**10",
        refresh_frames=3,
        live_iterations=2,
    )
    return load_settings(**{**base, **kw})


def _acquire(server, p, frame_delay_s=0.05, on_frame=None):
    writer = TiledWriter(server.client(), batch_size=1)
    return replay(writer, [p], raw_dark(p), frame_delay_s=frame_delay_s, on_frame=on_frame)


def _wait(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _done(client, uid):
    md = ResultStore(client, uid).statuses().get(0) or {}
    return md if md.get("status") in ("done", "failed") else None


class Page:
    """A hub bound to a real event loop in a thread, with one subscriber (a page)."""

    def __init__(self):
        self.hub = Hub()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub.bind(self.loop)
        self.queue = asyncio.run_coroutine_threadsafe(self._subscribe(), self.loop).result(5)

    async def _subscribe(self):
        return self.hub.subscribe()

    def next_message(self, match, timeout):
        """The first message for which ``match(message)`` is true (AssertionError if none)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = asyncio.run_coroutine_threadsafe(self.queue.get(), self.loop).result(left)
            except TimeoutError:
                break
            message = json.loads(text)
            if match(message):
                return message
        raise AssertionError(f"no matching message within {timeout} s")

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_feed_knows_which_server_streams(streamed, polled, caplog):
    with caplog.at_level(logging.INFO, logger="sptycho.stream"):
        assert open_feed(streamed.client(), "probe").streaming
        assert not open_feed(polled.client(), "probe").streaming
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("probe:")]
    assert len(lines) == 2, lines
    assert "following websocket subscriptions" in lines[0]
    assert "no streaming cache: polling every 0.5 s" in lines[1]


def test_streaming_worker_finishes_a_run_without_polling(streamed, ptychogram, caplog):
    settings = _settings(streamed, poll_interval_s=HUGE_POLL_S, safety_poll_s=HUGE_SAFETY_S)
    worker = Worker(settings, processes=False, analyze_stacks=False)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    with caplog.at_level(logging.INFO, logger="sptycho.worker"):
        thread.start()
        try:
            _wait(lambda: worker.feed.streaming and worker.feed.following, 30, "subscribed")
            polls_before = worker.feed.wakes
            uid = _acquire(streamed, ptychogram)  # a run the worker learns of by subscription
            client = streamed.client()
            done = _wait(lambda: _done(client, uid), 45, "final result")
        finally:
            worker.stop()
            thread.join(60)
    assert not thread.is_alive()
    assert done["status"] == "done", done["messages"]
    assert done["frames_used"] == done["frames_total"] == ptychogram.n_frames
    # it got there by being woken by Tiled (the 60 s and 600 s timers never ran out)
    assert worker.feed.received > 0 and worker.feed.wakes > polls_before
    assert any("Tiled streams changes" in r.getMessage() for r in caplog.records)


def test_streaming_watcher_publishes_frames_and_results_without_polling(streamed, ptychogram):
    page = Page()
    watcher = Watcher(
        streamed.client(),
        page.hub,
        poll_interval_s=HUGE_POLL_S,
        safety_poll_s=HUGE_SAFETY_S,
        watch_runs=3,
    ).start()
    try:
        _wait(lambda: watcher.polls >= 1 and watcher.feed.following, 30, "subscribed")
        assert watcher.feed.streaming
        client = streamed.client()
        uid = _acquire(streamed, ptychogram, frame_delay_s=0.0)
        frames = page.next_message(
            lambda m: (
                m["type"] == "frames" and m["uid"] == uid and m["frames"] == ptychogram.n_frames
            ),
            30,
        )
        assert frames["total"] == ptychogram.n_frames
        store = ResultStore(client, uid)
        store.begin(0, {"frames_total": ptychogram.n_frames})
        stamp = time.time()
        store.node(0).update_metadata(metadata={"status": "done", "updated": stamp})
        result = page.next_message(
            lambda m: m["type"] == "result" and m["uid"] == uid and m["updated"] == stamp, 30
        )
        assert result["index"] == 0 and result["status"] == "done"
    finally:
        watcher.stop()
        page.close()
    assert watcher.feed.received > 0


def test_polling_fallback_with_the_embedded_sqlite_tiled(polled, ptychogram):
    settings = _settings(polled, poll_interval_s=0.2)
    worker = Worker(settings, processes=False, analyze_stacks=False)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    page = Page()
    watcher = Watcher(polled.client(), page.hub, poll_interval_s=0.2).start()
    thread.start()
    try:
        uid = _acquire(polled, ptychogram)
        client = polled.client()
        done = _wait(lambda: _done(client, uid), 60, "final result")
        result = page.next_message(
            lambda m: m["type"] == "result" and m["uid"] == uid and m["status"] == "done", 30
        )
    finally:
        worker.stop()
        watcher.stop()
        thread.join(60)
        page.close()
    assert not worker.feed.streaming and not watcher.feed.streaming
    assert worker.feed.received == 0 and worker.feed.following == []
    assert done["frames_used"] == done["frames_total"] == ptychogram.n_frames
    assert result["frames_used"] == ptychogram.n_frames


def test_a_tiled_restart_while_streaming_loses_nothing(tmp_path, redis_url, ptychogram):
    server = TiledServer(tmp_path / "tiled", streaming_cache=redis_url).start()
    gate = threading.Event()
    uids = []

    def hold(k, i):
        if i == 4:
            assert gate.wait(120)

    def acquire():
        writer = TiledWriter(server.client(), batch_size=1)
        uids.append(
            replay(
                lambda name, doc: (
                    (uids.append(doc["uid"]) if name == "start" else None) or writer(name, doc)
                ),
                [ptychogram],
                raw_dark(ptychogram),
                on_frame=hold,
            )
        )

    settings = _settings(server, poll_interval_s=0.5, tiled_retry_max_s=1.0)
    worker = Worker(settings, processes=False, analyze_stacks=False)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    acquisition = threading.Thread(target=acquire, daemon=True)
    try:
        thread.start()
        _wait(lambda: worker.feed.streaming and worker.feed.following, 30, "subscribed")
        acquisition.start()
        uid = _wait(lambda: uids and uids[0], 30, "run started")
        client = server.client()
        _wait(
            lambda: (ResultStore(client, uid).statuses().get(0) or {}).get("frames_used", 0) >= 4,
            60,
            "a live result",
        )
        server.stop()
        time.sleep(3)
        server.start()  # same port, directory and Redis
        gate.set()
        acquisition.join(120)
        assert not acquisition.is_alive()
        client = server.client()
        done = _wait(lambda: _done(client, uid), 90, "final result")
        # following the restarted server again (tiled's client or the next poll reconnects)
        _wait(lambda: "" in worker.feed.following, 30, "root followed again")
    finally:
        gate.set()
        worker.stop()
        thread.join(60)
        server.stop()
    assert done["status"] == "done", done["messages"]
    assert done["frames_used"] == done["frames_total"] == ptychogram.n_frames
    assert done["starts"] == 1 and done["completions"] == 1
