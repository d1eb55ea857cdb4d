"""One polling loop for the services that poll Tiled: it keeps going while Tiled is away.

The worker (:meth:`services.worker.Worker.run_forever`) and the web API's live watcher
(:class:`services.api.live.Watcher`) both call their ``poll_once`` until they are told to
stop; a poll that fails never ends the loop, it only makes the next wait longer
(:class:`services.worker.tiled_io.Backoff` logs one line when Tiled goes away, one when it
is back).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: services.worker imports this module
    from services.worker.tiled_io import Backoff


def poll_until_stopped(
    poll: Callable[[], Any],
    stop: threading.Event,
    interval_s: float,
    backoff: Backoff,
    until: Callable[[], bool] | None = None,
) -> None:
    """Call ``poll`` every ``interval_s`` until ``stop`` is set (or ``until()`` is True).

    Parameters
    ----------
    poll : one look at what changed; whatever it raises is caught and backed off from
    stop : set from any thread to end the loop (also ends the wait between polls)
    interval_s : wait between polls that succeed (s)
    backoff : the waits after failed polls, and their log lines
    until : checked before each poll; True ends the loop
    """
    while not stop.is_set() and not (until and until()):
        wait = interval_s
        try:
            poll()
            backoff.succeeded()
        except Exception as err:  # noqa: BLE001 - Tiled away or hiccup: try again
            wait = backoff.failed(err)
        stop.wait(wait)
