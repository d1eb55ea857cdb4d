"""The worker loop: find runs and ptychograms with work to do, hand them to the executor.

Every ``poll_interval_s`` the worker lists the newest runs of the catalog, and for each run
that is not finished reads which ptychograms have frames (the primary stream's
``ptychogram`` column) and which already have a result (``<run>/recon/pNNNN``). A
ptychogram is started when it has frames, no task is on it, and its result is not ``done``
(or ``failed``) -- so a worker started after a crash resumes from what Tiled holds: the
ptychogram it was on (status ``running``) starts again, finished ones are never redone
unless ``redo`` is set. Runs seen finished (stopped, every ptychogram done) are remembered
and skipped.

Between polls the worker waits on a :class:`services.tiled_stream.ChangeFeed`: where Tiled
streams (a streaming cache), it follows the catalog root (new runs, stop documents) and the
primary stream of each run it is not done with (new frames), and a task that finishes wakes
it too; it still polls every ``safety_poll_s``. Against the embedded SQLite Tiled it polls
every ``poll_interval_s``.

When Tiled does not answer (a restart, a network cut), :meth:`Worker.run_forever` logs one
line, polls again with growing waits (up to ``tiled_retry_max_s``) and logs one more line
when Tiled is back; running tasks wait the same way (:mod:`services.worker.task`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from services.polling import poll_until_stopped
from services.tiled_stream import ChangeFeed, run_nodes
from services.worker.config import WorkerSettings
from services.worker.executor import make_executor
from services.worker.stack_analysis import analyze_run_safely
from services.worker.task import TaskOutcome, reconstruct_ptychogram
from services.worker.tiled_io import Backoff, ResultStore, RunReader, connect, run_keys

log = logging.getLogger("sptycho.worker")

FINAL_STATUSES = ("done", "failed")


def plan_work(
    present: list[int],
    statuses: dict[int, dict[str, Any]],
    in_flight: set[int],
    redo: bool = False,
    redone: set[int] | None = None,
) -> list[int]:
    """Ptychograms of one run to start now, in order.

    Parameters
    ----------
    present : ptychogram indices that have at least one frame
    statuses : {index: result metadata} from Tiled
    in_flight : indices with a task queued or running
    redo : start again results that are done (each once: ``redone`` remembers them)
    redone : indices already redone by this worker (updated by the caller)
    """
    redone = redone if redone is not None else set()
    out = []
    for k in sorted(present):
        if k in in_flight:
            continue
        status = (statuses.get(k) or {}).get("status")
        if status in FINAL_STATUSES and not (redo and k not in redone):
            continue
        out.append(k)
    return out


class Worker:
    """The streaming reconstruction service.

    Parameters
    ----------
    settings : worker settings
    client : tiled client of the catalog root for discovery (default: a new one); tasks
        open their own to ``settings.tiled_uri``
    processes : Dask local cluster with worker processes (False: threads, for tests)
    on_outcome : called with each finished task's :class:`TaskOutcome`
    analyze_stacks : when a run has no task left in flight after one finished, write its
        stack analysis (aligned OD, XLD, XMCD) next to the results

    Examples
    --------
    >>> worker = Worker(load_settings("deploy/worker.yml"))   # doctest: +SKIP
    >>> worker.run_forever()                                   # Ctrl-C stops it
    """

    def __init__(
        self,
        settings: WorkerSettings,
        client: Any = None,
        *,
        processes: bool = True,
        on_outcome: Callable[[TaskOutcome], None] | None = None,
        analyze_stacks: bool = True,
    ) -> None:
        if not settings.tiled_uri:
            raise ValueError("no Tiled server: set tiled_uri (SPTYCHO_TILED_URI)")
        if client is None:
            client = connect(settings.tiled_uri, settings.tiled_api_key, settings.tiled_timeout_s)
        self.settings = settings
        self.client = client
        self.executor = make_executor(settings, processes=processes)
        self.on_outcome = on_outcome
        self.analyze_stacks = analyze_stacks
        self.in_flight: dict[tuple[str, int], Any] = {}
        self.finished_runs: set[str] = set()
        self.redone: dict[str, set[int]] = {}
        self.outcomes: list[TaskOutcome] = []
        self._readers: dict[str, RunReader] = {}  # of the runs not finished
        self._stop = threading.Event()
        self._first_poll = True
        self.feed = ChangeFeed(client, False, settings.poll_interval_s, settings.safety_poll_s)

    # ---------------------------------------------------------------- discovery
    def candidate_runs(self) -> list[str]:
        """Uids of the runs to look at: the newest ``catch_up_runs`` at the first poll (and
        every run started since), afterwards the ones not known to be finished."""
        keys = run_keys(self.client)
        if self._first_poll:
            window = max(1, self.settings.catch_up_runs)
            self.finished_runs.update(keys[:-window])  # older runs: not this worker's job
            keys = keys[-window:]
        return [k for k in keys if k not in self.finished_runs]

    def _run_work(self, uid: str) -> list[int]:
        if uid not in self._readers:
            self._readers[uid] = RunReader(self.client, uid)
        reader = self._readers[uid]
        if not reader.geometry.get("points_per_ptychogram"):
            self.finished_runs.add(uid)  # not a ptychography run
            return []
        stopped = reader.stopped()
        table = reader.table(columns=("ptychogram",))
        present = [int(k) for k in np.unique(np.asarray(table["ptychogram"], dtype=np.int64))]
        statuses = ResultStore(self.client, uid, self.settings.results_key).statuses()
        flying = {k for (u, k) in self.in_flight if u == uid}
        redone = self.redone.setdefault(uid, set())
        todo = plan_work(present, statuses, flying, self.settings.redo, redone)
        if stopped and not todo and not flying:
            self.finished_runs.add(uid)
            self._readers.pop(uid, None)
        return todo

    # ---------------------------------------------------------------- dispatch
    def _collect(self) -> None:
        for key, future in list(self.in_flight.items()):
            if not future.done():
                continue
            del self.in_flight[key]
            try:
                outcome = future.result()
            except Exception as err:  # noqa: BLE001 - the task itself failed to report
                outcome = TaskOutcome(key[0], key[1], "failed", messages=[str(err)])
            self.outcomes.append(outcome)
            log.info(
                "run %s ptychogram %d: %s (%d frames, %d left out for low I0, %.1f s)",
                outcome.uid[:8],
                outcome.index,
                outcome.status,
                outcome.frames_used,
                outcome.frames_rejected,
                outcome.seconds,
            )
            if self.on_outcome is not None:
                self.on_outcome(outcome)
            if (
                self.analyze_stacks
                and outcome.status == "done"
                and not any(u == outcome.uid for u, _ in self.in_flight)
            ):
                analyze_run_safely(self.client, outcome.uid, self.settings.results_key)

    def poll_once(self) -> int:
        """One round: collect finished tasks, start new ones; returns how many started."""
        self._collect()
        started = 0
        candidates = self.candidate_runs()
        for uid in candidates:
            if len(self.in_flight) >= self.settings.max_concurrent:
                break
            try:
                todo = self._run_work(uid)
            except KeyError:  # the run is being created: next round
                continue
            for k in todo:
                if len(self.in_flight) >= self.settings.max_concurrent:
                    break
                if self.settings.redo:
                    self.redone.setdefault(uid, set()).add(k)
                future = self.executor.submit(reconstruct_ptychogram, self._task_settings(), uid, k)
                future.add_done_callback(self._task_done)
                self.in_flight[(uid, k)] = future
                started += 1
        self._first_poll = False
        self.feed.follow(self._followed(candidates))
        return started

    def _followed(self, uids: list[str]) -> dict[str, Any]:
        """The nodes to follow: each unfinished run and its primary stream, and the event
        table once this worker has seen it (before that, the stream says when it is made)."""
        nodes: dict[str, Any] = {}
        for uid in uids:
            if uid in self.finished_runs:
                continue
            nodes.update(run_nodes(uid, table=False))
            reader = self._readers.get(uid)
            if reader is not None and reader.has_table():
                nodes.update(run_nodes(uid))
        return nodes

    def _task_done(self, future: Any) -> None:
        self.feed.wake()  # collect it and start what waits, now

    def _task_settings(self) -> WorkerSettings:
        """The tasks' settings: they wait on Tiled the way the worker found it works."""
        if self.settings.tiled_streaming != "auto":
            return self.settings
        return self.settings.model_copy(update={"tiled_streaming": self.feed.mode})

    # ---------------------------------------------------------------- lifetime
    def run_forever(self, until: Callable[[], bool] | None = None) -> None:
        """Poll until :meth:`stop` (or Ctrl-C, or ``until()`` returning True).

        A failing poll (Tiled unreachable, or anything else) never ends the loop: it is
        logged once per streak of failures and tried again after a wait that doubles from
        ``poll_interval_s`` to ``tiled_retry_max_s``.
        """
        s = self.settings
        backoff = Backoff("worker", s.poll_interval_s, s.tiled_retry_max_s)
        try:
            self.feed.open(self.client, "worker", s.tiled_streaming, log)
            if self._stop.is_set():
                return
            poll_until_stopped(
                self.poll_once, self._stop, s.poll_interval_s, backoff, until, self.feed
            )
        finally:
            self.close()

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return (running tasks stop at their next step)."""
        self._stop.set()
        self.feed.wake()

    def close(self) -> None:
        self.feed.close()
        self.executor.shutdown(wait=True)
        self._collect()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Poll until nothing is in flight and nothing new starts; True if it got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.poll_once()
            if not self.in_flight and not started:
                return True
            time.sleep(self.settings.poll_interval_s)
        return False
