"""One polling loop for the services that poll Tiled: it keeps going while Tiled is away.

The worker (:meth:`services.worker.Worker.run_forever`) and the web API's live watcher
(:class:`services.api.live.Watcher`) both call their ``poll_once`` until they are told to
stop; a poll that fails never ends the loop, it only makes the next wait longer
(:class:`services.worker.tiled_io.Backoff` logs one line when Tiled goes away, one when it
is back).

Between polls that succeed they wait on a :class:`services.tiled_stream.ChangeFeed` when
given one: it returns as soon as Tiled streams a change (or after its safety interval), so
the same ``poll_once`` serves a streaming Tiled and the polled embedded one. Waits after a
failure are backoff waits on ``stop`` whatever the feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: services.worker imports this module
    from services.tiled_stream import ChangeFeed
    from services.worker.tiled_io import Backoff


def poll_until_stopped(
    poll: Callable[[], Any],
    stop: threading.Event,
    interval_s: float,
    backoff: Backoff,
    until: Callable[[], bool] | None = None,
    feed: ChangeFeed | None = None,
) -> None:
    """Call ``poll`` every ``interval_s`` until ``stop`` is set (or ``until()`` is True).

    Parameters
    ----------
    poll : one look at what changed; whatever it raises is caught and backed off from
    stop : set from any thread to end the loop (also ends the wait between polls)
    interval_s : wait between polls that succeed (s)
    backoff : the waits after failed polls, and their log lines
    until : checked before each poll; True ends the loop
    feed : after a poll that succeeds, wait on it instead (it returns when Tiled reports a
        change, or after its own interval); whoever sets ``stop`` should wake it
    """
    while not stop.is_set() and not (until and until()):
        try:
            poll()
            backoff.succeeded()
        except Exception as err:  # noqa: BLE001 - Tiled away or hiccup: try again
            stop.wait(backoff.failed(err))
            continue
        if feed is None:
            stop.wait(interval_s)
        else:
            feed.wait()
