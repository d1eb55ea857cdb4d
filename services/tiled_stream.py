"""Wake-ups from Tiled: websocket subscriptions where Tiled streams, a timer where it does not.

The worker, its tasks and the web API's live watcher each look at Tiled in one ``poll_once``
and then wait. :class:`ChangeFeed` is that wait: :meth:`ChangeFeed.wait` returns as soon as
Tiled pushes a change on a followed node, or when ``timeout`` passes. The code that reads
Tiled stays the one code path; only how long it sleeps changes.

A Tiled server with a streaming cache (Redis, as ``deploy/tiled/config.yml`` configures, or
``memory``) accepts websocket subscriptions (``/api/v1/stream/single/<path>``) and sends:

* to a container's subscribers: ``container-child-created`` (a new run, a new stream, a new
  result) and ``container-child-metadata-updated`` (a run's stop document, a result's
  status);
* to a table's subscribers: ``table-data`` (event rows appended);
* to an array's subscribers: ``array-data`` or ``array-ref`` (frames written).

Rows and frames are announced just before Tiled stores them, so after such a message the
feed lets its caller look once more ``ECHO_S`` later.

The embedded default (SQLite, no streaming cache) refuses subscriptions (HTTP 500):
:func:`open_feed` tries one on the catalog root at start-up, logs one line saying which mode
is used, and returns a feed that either follows subscriptions or only keeps time. In
streaming mode the caller still looks every ``safety_poll_s`` (a missed message or a dropped
websocket never loses data); a subscription that ends is started again at the next
:meth:`ChangeFeed.follow` (tiled's client itself reconnects across a short Tiled restart and
replays what it missed from the cache).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

log = logging.getLogger("sptycho.stream")

Kind = Literal["container", "table", "array"]

#: Seconds between safety polls while Tiled streams.
SAFETY_POLL_S = 5.0
#: Shortest time between two returns of :meth:`ChangeFeed.wait` woken by messages (s): a
#: burst of messages (an event's frame, then its row) makes one poll, not several.
MIN_GAP_S = 0.03
#: Tiled announces rows and frames before it stores them (the table and array adapters
#: publish, then write), so a look right after such a message may find nothing new yet: one
#: more look follows this long after (s).
ECHO_S = 0.2
#: Messages that announce data not yet stored.
DATA_MESSAGES = ("table-data", "array-data", "array-ref")
#: A node whose subscription was refused (not there yet) is tried again after this (s).
RETRY_S = 1.0
#: How often a wait checks its ``stop`` (s).
STOP_CHECK_S = 0.2
#: How long :func:`open_feed` waits for its trial subscription (s).
PROBE_TIMEOUT_S = 5.0


class _Follow:
    """One subscription, received in its own thread; any update wakes the feed."""

    def __init__(self, feed: ChangeFeed, path: str, kind: Kind) -> None:
        from tiled.client.stream import ArraySubscription, ContainerSubscription, TableSubscription

        cls = {"container": ContainerSubscription, "table": TableSubscription}.get(
            kind, ArraySubscription
        )
        self.feed = feed
        self.path = path
        segments = [s for s in path.split("/") if s]
        self.sub = cls(feed.client.context, segments)
        for name in ("child_created", "child_metadata_updated", "new_data"):
            if hasattr(self.sub, name):
                getattr(self.sub, name).add_callback(self._on_update)
        self.started = time.monotonic()
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self.closing = False
        threading.Thread(
            target=self._run, name=f"sptycho-follow {path or '/'}", daemon=True
        ).start()
        threading.Thread(target=self._watch_connect, daemon=True).start()

    def _run(self) -> None:
        try:
            self.sub.start()  # blocks; tiled's client reconnects after short drops itself
        except Exception as err:  # noqa: BLE001 - refused (no cache, no node) or Tiled gone
            self.error = err
        finally:
            self.ended.set()
        if self.connected.is_set() and not self.closing and self.error is not None:
            self.feed.wake()  # lost after it worked: look now (a failing look backs off)

    def _watch_connect(self) -> None:
        connected = getattr(self.sub, "_connected_event", None)
        while connected is not None and not self.ended.is_set():
            if connected.wait(0.1):
                self.connected.set()
                # messages sent before the subscription was live were missed: look once
                self.feed.wake()
                return

    def _on_update(self, update: Any) -> None:
        self.feed.received += 1
        if getattr(update, "type", None) in DATA_MESSAGES:
            self.feed.echo = True
        self.feed.wake()

    def close(self) -> None:
        self.closing = True
        try:
            self.sub.disconnect(wait=False)
        except Exception:  # noqa: BLE001 - already gone
            pass


class ChangeFeed:
    """Wait for Tiled to change: by subscription (``streaming``) or by timer.

    Parameters
    ----------
    client : tiled client of the catalog root (its context opens the websockets)
    streaming : follow subscriptions (False: :meth:`follow` does nothing, waits are timers)
    poll_interval_s : wait between looks without streaming
    safety_poll_s : wait between looks while streaming (when no message comes)

    Attributes
    ----------
    received : messages received from Tiled so far
    wakes : waits that returned because of a message (or :meth:`wake`)
    """

    def __init__(
        self,
        client: Any,
        streaming: bool,
        poll_interval_s: float = 0.5,
        safety_poll_s: float = SAFETY_POLL_S,
    ) -> None:
        self.client = client
        self.streaming = streaming
        self.poll_interval_s = poll_interval_s
        self.safety_poll_s = safety_poll_s
        self.received = 0
        self.wakes = 0
        self._changed = threading.Event()
        self._follows: dict[str, _Follow] = {}
        self._lock = threading.Lock()
        self._last_wake = 0.0
        self.echo = False  # a data message came: look once more ECHO_S after the next look
        self._echo_at: float | None = None

    @property
    def interval_s(self) -> float:
        """Longest wait between two looks at Tiled."""
        return self.safety_poll_s if self.streaming else self.poll_interval_s

    @property
    def mode(self) -> str:
        return "streaming" if self.streaming else "polling"

    def follow(self, nodes: dict[str, Kind] | Iterable[tuple[str, Kind]]) -> None:
        """Keep subscriptions on exactly these nodes (and the catalog root).

        Parameters
        ----------
        nodes : {path: kind}, path relative to the catalog root (``"<uid>/primary/internal"``)
            and kind ``container``, ``table`` or ``array``. A node that does not exist yet is
            tried again at a later call (``RETRY_S`` apart); one whose subscription ended is
            started again.
        """
        if not self.streaming:
            return
        wanted = dict(nodes)
        wanted.setdefault("", "container")
        with self._lock:
            now = time.monotonic()
            for path in list(self._follows):
                follow = self._follows[path]
                refused = not follow.connected.is_set() and now - follow.started < RETRY_S
                if path not in wanted or (follow.ended.is_set() and not refused):
                    follow.close()
                    del self._follows[path]
            for path, kind in wanted.items():
                if path not in self._follows:
                    self._follows[path] = _Follow(self, path, kind)

    @property
    def following(self) -> list[str]:
        """Paths whose subscription is live now."""
        with self._lock:
            return [
                p for p, f in self._follows.items() if f.connected.is_set() and not f.ended.is_set()
            ]

    def wake(self) -> None:
        """End the current (or next) :meth:`wait` now; safe from any thread."""
        self._changed.set()

    def wait(self, timeout: float | None = None, stop: Callable[[], bool] | None = None) -> bool:
        """Wait until Tiled reports a change (or :meth:`wake`) or ``timeout`` passes.

        Parameters
        ----------
        timeout : seconds (default: :attr:`interval_s`)
        stop : checked every ``STOP_CHECK_S`` while waiting; True ends the wait

        Returns
        -------
        True when woken, False when the time ran out (or ``stop()`` turned True).
        """
        timeout = self.interval_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._echo_at is not None:  # the look after a data message, once more
            deadline, self._echo_at = min(deadline, self._echo_at), None
        woken = False
        while not woken:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop()):
                return False
            woken = self._changed.wait(left if stop is None else min(left, STOP_CHECK_S))
        gap = MIN_GAP_S - (time.monotonic() - self._last_wake)
        if gap > 0:
            time.sleep(gap)  # let the rest of a burst arrive: one look for all of it
        self._changed.clear()
        self._last_wake = time.monotonic()
        if self.echo:
            self.echo = False
            self._echo_at = self._last_wake + ECHO_S
        self.wakes += 1
        return True

    def close(self) -> None:
        """Drop every subscription."""
        with self._lock:
            for follow in self._follows.values():
                follow.close()
            self._follows.clear()
        self.wake()

    def open(
        self,
        client: Any,
        what: str,
        mode: str = "auto",
        logger: logging.Logger | None = log,
    ) -> ChangeFeed:
        """Find out whether ``client``'s server streams; log one line saying which mode.

        Parameters
        ----------
        client : tiled client of the catalog root
        what : who waits, for the log line (``"worker"``, ``"live watcher"``)
        mode : ``auto`` (streaming when the server accepts a subscription to its root),
            ``streaming`` or ``polling``
        logger : where the line goes (None: no line)

        Returns
        -------
        This feed.
        """
        self.close()
        self.client = client
        self.streaming = probe_streaming(client) if mode == "auto" else mode == "streaming"
        if logger is not None and self.streaming:
            logger.info(
                "%s: Tiled streams changes: following websocket subscriptions "
                "(safety poll every %g s)",
                what,
                self.safety_poll_s,
            )
        elif logger is not None:
            logger.info(
                "%s: Tiled has no streaming cache: polling every %g s", what, self.poll_interval_s
            )
        return self

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_nodes(
    uid: str,
    *,
    stream: bool = True,
    table: bool = True,
    images: bool = False,
    results_key: str | None = None,
) -> dict[str, Kind]:
    """The nodes of run ``uid`` to follow for its new frames (and results).

    The run (a stream or the results container created), with ``stream`` its ``primary``
    stream (its table or array created), with ``table`` the event table (rows appended),
    with ``images`` the ``camera_image`` array (frames written) and with ``results_key`` the
    results container (a result created or its metadata updated).
    """
    nodes: dict[str, Kind] = {uid: "container"}
    if stream:
        nodes[f"{uid}/primary"] = "container"
    if table:
        nodes[f"{uid}/primary/internal"] = "table"
    if images:
        nodes[f"{uid}/primary/camera_image"] = "array"
    if results_key:
        nodes[f"{uid}/{results_key}"] = "container"
    return nodes


def probe_streaming(client: Any, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the Tiled server of ``client`` accepts a subscription to its root."""
    probe = ChangeFeed(client, streaming=True)
    follow = _Follow(probe, "", "container")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if follow.connected.is_set():
                return True
            if follow.ended.is_set():
                return False
            time.sleep(0.02)
        return False
    finally:
        follow.close()


def open_feed(
    client: Any,
    what: str,
    mode: str = "auto",
    poll_interval_s: float = 0.5,
    safety_poll_s: float = SAFETY_POLL_S,
    logger: logging.Logger | None = log,
) -> ChangeFeed:
    """A :class:`ChangeFeed` for ``client``'s server (see :meth:`ChangeFeed.open`)."""
    feed = ChangeFeed(client, False, poll_interval_s, safety_poll_s)
    return feed.open(client, what, mode, logger)
