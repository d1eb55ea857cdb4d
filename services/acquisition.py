"""The acquisition side: a RunEngine whose documents go to Tiled as they are produced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bluesky import RunEngine


class PointProgress:
    """Bluesky callback that reports ``(done, total)`` primary events of the current run."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report
        self.total = 0
        self.done = 0
        self._primary: str | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            g = doc.get("geometry", {})
            self.total = int(g.get("points_per_ptychogram", 0)) * int(doc.get("n_ptychograms", 1))
            self.done = 0
            self._primary = None
        elif name == "descriptor" and doc.get("name") == "primary":
            self._primary = doc["uid"]
        elif name == "event" and doc.get("descriptor") == self._primary:
            self.done += 1
            self.report(self.done, self.total)


def make_run_engine(
    tiled_client: Any | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    context_managers: list | None = None,
    batch_size: int = 10,
) -> RunEngine:
    """A RunEngine that writes every document to Tiled (when a client is given).

    Parameters
    ----------
    tiled_client : a writable ``tiled.client`` container (the catalog root)
    progress : called with ``(done, total)`` after each point
    context_managers : RunEngine context managers; the default installs bluesky's SIGINT
        handling (Ctrl-C pauses; a second Ctrl-C aborts), pass ``[]`` in threads
    batch_size : events the Tiled writer groups into one write. The writer runs in the
        RunEngine's thread, so each write adds to the scan: 1 makes every frame visible at
        once but costs ~0.1 s per point with the embedded server on 2 cores; 10 keeps the
        live latency to about ten points for ~0.01 s per point

    Returns
    -------
    RunEngine
    """
    kwargs = {} if context_managers is None else {"context_managers": context_managers}
    RE = RunEngine({}, **kwargs)
    if tiled_client is not None:
        from bluesky_tiled_plugins import TiledWriter

        RE.subscribe(TiledWriter(tiled_client, batch_size=batch_size))
    if progress is not None:
        RE.subscribe(PointProgress(progress))
    return RE
