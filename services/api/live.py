"""Live updates: a watcher thread that asks Tiled what changed, and a hub that pushes it.

:class:`Watcher` looks at the newest runs and turns differences into messages. Where Tiled
streams (a streaming cache), it looks when Tiled pushes a change on the catalog root (new
runs, stop documents) or on a followed run (its stream, frames and ``recon`` results), and
every ``safety_poll_s`` besides; the embedded SQLite Tiled has no streaming cache, so there
it looks every ``poll_interval_s`` (:class:`services.tiled_stream.ChangeFeed`):

==========  ==================================================================
``type``    fields
==========  ==================================================================
``runs``    ``runs``: the run list changed (a run started or ended)
``frames``  ``uid``, ``frames`` landed, ``total`` expected
``result``  ``uid``, ``index``, ``status``, ``iterations``, ``llk_last``,
            ``frames_used``, ``updated``: a reconstruction was (re)written
``stack``   ``uid``, ``updated``: the stack analysis was (re)written
``scan``    the scan controller's state (see :mod:`services.api.control`)
==========  ==================================================================

:class:`Hub` fans each message out to every WebSocket subscriber through its own bounded
queue; a subscriber too slow to keep up loses its oldest messages, never blocks the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.api.catalog import frames_landed, run_summary
from services.polling import poll_until_stopped
from services.tiled_stream import ChangeFeed, run_nodes
from services.worker.stack_analysis import STACK_KEY
from services.worker.tiled_io import Backoff, run_keys

log = logging.getLogger("sptycho.api")

#: what of a run's snapshot, when it differs, means the run changed
_CHANGES = ("summary", "frames", "results", "stack")


class Hub:
    """Broadcast of JSON messages to the app's WebSocket subscribers.

    Create it in the app's event loop (:meth:`bind`); :meth:`publish` may be called from any
    thread.
    """

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self.subscribers: set[asyncio.Queue] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.published = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    def _deliver(self, text: str) -> None:
        for queue in list(self.subscribers):
            if queue.full():
                queue.get_nowait()  # drop the oldest: a slow page must not stall the rest
            queue.put_nowait(text)

    def publish(self, message: dict[str, Any]) -> None:
        """Send ``message`` (JSON-able) to every subscriber; safe from any thread."""
        self.published += 1
        text = json.dumps({**message, "sent": time.time()})
        if self.loop is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._deliver(text)
        else:
            self.loop.call_soon_threadsafe(self._deliver, text)


@dataclass(eq=False)
class Watcher:
    """Poll Tiled in a thread and publish what changed (see the module docstring).

    While Tiled does not answer, the watcher logs one line, polls again with growing waits
    (up to ``max_wait_s``) and logs one more line when Tiled is back.

    Parameters
    ----------
    client : tiled client of the catalog root (this thread's own); None: made by ``connect``
    hub : where messages go
    poll_interval_s : seconds between polls
    watch_runs : how many of the newest runs are followed
    results_key : the runs' reconstruction container
    max_wait_s : longest wait between polls while Tiled is unreachable
    connect : makes the client when there is none (called in the watcher's thread, and
        again after a failure to connect)
    streaming : ``auto`` (follow Tiled's subscriptions when it streams, else poll),
        ``streaming`` or ``polling``
    safety_poll_s : seconds between polls while following subscriptions
    on_change : called with a run's uid when the run changed, before its messages are
        published (:meth:`services.api.run_views.RunViews.changed`)

    Attributes
    ----------
    state : uid -> the last snapshot of each followed run
    polls : how many polls succeeded
    feed : what the watcher waits on between polls
    """

    client: Any
    hub: Hub
    poll_interval_s: float = 0.5
    watch_runs: int = 3
    results_key: str = "recon"
    max_wait_s: float = 10.0
    connect: Callable[[], Any] | None = None
    streaming: str = "auto"
    safety_poll_s: float = 5.0
    on_change: Callable[[str], None] | None = None
    feed: ChangeFeed = field(init=False, repr=False)
    state: dict[str, Any] = field(default_factory=dict, init=False)
    polls: int = field(default=0, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.client is None and self.connect is None:
            raise ValueError("Watcher needs a client or a way to connect")
        self.feed = ChangeFeed(None, False, self.poll_interval_s, self.safety_poll_s)
        self._feed_open = False

    # ------------------------------------------------------------------ snapshot
    def _run_state(self, uid: str) -> dict[str, Any]:
        run = self.client[uid]
        summary = run_summary(uid, run)
        results: dict[int, dict[str, Any]] = {}
        stack = None
        frames = frames_landed(run)
        # where Tiled streams: what to follow (what exists, and where the rest will appear)
        follow = run_nodes(uid, table=False, images=frames > 0)
        try:
            recon = run[self.results_key]
        except KeyError:
            recon = None
        if recon is not None:
            follow[f"{uid}/{self.results_key}"] = "container"
            for name, node in recon.items():
                md = node.metadata
                if name == STACK_KEY:
                    stack = md.get("updated")
                elif name.startswith("p") and name[1:].isdigit():
                    results[int(name[1:])] = {
                        "status": md.get("status"),
                        "iterations": md.get("iterations"),
                        "llk_last": md.get("llk_last"),
                        "frames_used": md.get("frames_used"),
                        "energy_ev": md.get("energy_ev"),
                        "polarization": md.get("polarization"),
                        "updated": md.get("updated"),
                    }
        return {
            "summary": summary,
            "frames": frames,
            "results": results,
            "stack": stack,
            "follow": follow,
        }

    def poll_once(self) -> list[dict[str, Any]]:
        """One look at Tiled; returns (and publishes) the messages of what changed."""
        if self.client is None and self.connect is not None:
            self.client = self.connect()
        if not self._feed_open:
            self.feed.open(self.client, "live watcher", self.streaming, log)
            self._feed_open = True
        keys = run_keys(self.client)[-self.watch_runs :]
        messages: list[dict[str, Any]] = []
        new_state: dict[str, Any] = {}
        for uid in keys:
            try:
                now = self._run_state(uid)
            except KeyError:
                continue
            new_state[uid] = now
            before = self.state.get(uid)
            if self.on_change is not None and (
                before is None or any(before[k] != now[k] for k in _CHANGES)
            ):
                self.on_change(uid)
            total = now["summary"]["points_total"]
            if before is None or before["frames"] != now["frames"]:
                messages.append(
                    {"type": "frames", "uid": uid, "frames": now["frames"], "total": total}
                )
            for index, res in now["results"].items():
                old = (before or {}).get("results", {}).get(index)
                if old != res:
                    messages.append({"type": "result", "uid": uid, "index": index, **res})
            if now["stack"] is not None and (before or {}).get("stack") != now["stack"]:
                messages.append({"type": "stack", "uid": uid, "updated": now["stack"]})
        summaries = [s["summary"] for s in new_state.values()]
        if summaries != [s["summary"] for s in self.state.values()]:
            messages.insert(0, {"type": "runs", "runs": summaries[::-1]})
        self.state = new_state
        self.polls += 1
        nodes: dict = {}
        for snapshot in new_state.values():
            nodes.update(snapshot["follow"])
        self.feed.follow(nodes)
        for message in messages:
            self.hub.publish(message)
        return messages

    # ------------------------------------------------------------------ lifetime
    def _loop(self) -> None:
        backoff = Backoff("live watcher", self.poll_interval_s, self.max_wait_s, log)
        try:
            poll_until_stopped(
                self.poll_once, self._stop, self.poll_interval_s, backoff, feed=self.feed
            )
        finally:
            self.feed.close()

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._loop, name="sptycho-api-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.feed.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self.feed.close()  # polled by hand (poll_once): its subscriptions end here
