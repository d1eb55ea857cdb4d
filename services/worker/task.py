"""One ptychogram, from its first frames to its final reconstruction in Tiled.

:func:`reconstruct_ptychogram` is the unit of work the worker hands to its executor (a
thread here, or a Dask worker elsewhere: it takes only picklable arguments and opens its own
Tiled client). It follows the ptychogram while its frames arrive: after ``min_frames`` it
starts a reconstruction, every ``refresh_frames`` new frames it adds them
(:meth:`recon.reconstruction.Reconstruction.add_frames`), runs ``live_iterations`` and
writes the partial result with ``status: running``; when all ``points_per_ptychogram``
frames are in (or the run stopped short) it runs the whole algorithm chain on all frames,
warm-started from the live result, and writes the final result with ``status: done``.
Between looks it waits for the run's event table to grow (:mod:`services.tiled_stream`).

Frames recorded without beam (I0 below the worker's thresholds, see
:func:`services.worker.grouping.low_i0_frames`) are left out; their count is written as
``frames_rejected_low_i0``. While Tiled is unreachable (a restart) the task waits with
backoff (:class:`services.worker.tiled_io.Backoff`) and goes on where it was; only an
outage longer than ``tiled_outage_s`` fails it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from recon.cxi import Ptychogram
from recon.motion import blurred_probe_modes, probe_modes_for_blur
from recon.prepare import prepare
from recon.reconstruction import Reconstruction
from services.tiled_stream import ChangeFeed, open_feed, run_nodes
from services.worker.config import WorkerSettings
from services.worker.grouping import (
    check_frames,
    continuous_blur_m,
    counts_per_photon_for,
    group_ptychograms,
    low_i0_frames,
    saturation_counts,
    select_dark_series,
    zone_plate_for,
)
from services.worker.tiled_io import Backoff, ResultStore, RunReader, connect, is_transient

T = TypeVar("T")


class TaskStopped(Exception):
    """The worker asked the task to stop while it waited for Tiled."""


@dataclass
class TaskOutcome:
    """What a task did.

    Attributes
    ----------
    uid, index : run and ptychogram
    status : ``done``, ``failed`` or ``stopped`` (the worker is shutting down)
    frames_used : frames in the final (or last) reconstruction
    frames_rejected : frames left out for too little beam (low I0)
    refreshes : live results written before the final one
    seconds : wall time of the task
    latency_s : from noticing the last frame to the final result in Tiled
    messages : notes written to the result's metadata
    """

    uid: str
    index: int
    status: str
    frames_used: int = 0
    refreshes: int = 0
    seconds: float = 0.0
    latency_s: float | None = None
    messages: list[str] = field(default_factory=list)
    frames_rejected: int = 0


def result_arrays(rec: Reconstruction) -> dict[str, np.ndarray]:
    """The arrays written to Tiled for a (partial) reconstruction."""
    obj = rec.object.astype(np.complex64)
    if obj.ndim == 3:
        obj = obj[0]
    probe = rec.probe.astype(np.complex64)
    return {
        "object": obj,
        "object_amplitude": np.abs(obj).astype(np.float32),
        "object_phase": np.angle(obj).astype(np.float32),
        "probe": probe,
        "probe_amplitude": np.sqrt(np.sum(np.abs(probe) ** 2, axis=0)).astype(np.float32),
        "llk": np.asarray(rec.llk, dtype=np.float64),
    }


class PtychogramTask:
    """State of one ptychogram's streaming reconstruction (see the module docstring)."""

    def __init__(
        self, settings: WorkerSettings, reader: RunReader, store: ResultStore, index: int
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.store = store
        self.index = index
        g = reader.geometry
        self.geometry = g
        self.total = int(g.get("points_per_ptychogram") or 0)
        self.rec: Reconstruction | None = None
        self.used = 0
        self.seen = 0
        self.rejected_rows: list[int] = []
        self.i0_threshold: float | None = None
        self.i0_median: float | None = None
        self.messages: list[str] = []
        self.dark: np.ndarray | None = None
        self.refreshes = 0
        self.saturation = saturation_counts(g, settings.saturation_counts)
        self.cpp, note = counts_per_photon_for(reader.start, settings.counts_per_photon)
        if note:
            self.messages.append(note)
        self.info: dict[str, Any] = {}

    # -------------------------------------------------------------------- data
    def _dark_for(self, first_time: float, primary_times: np.ndarray) -> np.ndarray | None:
        table = self.reader.table("dark", columns=("seq_num", "time"))
        if len(table["time"]) == 0:
            self.messages.append("no dark frames in the run: frames used without dark")
            return None
        rows = select_dark_series(table["time"], primary_times, first_time)
        frames = self.reader.frames(rows, stream="dark").astype(np.float32)
        return frames.mean(axis=0)

    def _first(self, frames: np.ndarray, bad: np.ndarray, positions_m: np.ndarray) -> None:
        frames = np.where(np.isfinite(frames), frames, 0).astype(np.float32)
        if self.dark is not None:
            frames[:, bad] = self.dark[bad]
        p = Ptychogram(
            frames=frames,
            positions_m=positions_m,
            energy_ev=self.info["energy_ev"],
            distance_m=float(self.geometry["detector_distance_m"]),
            pixel_m=float(self.geometry["detector_pixel_m"]),
            mask=bad.copy(),
            dark=self.dark,
            counts_per_photon=self.cpp,
            zone_plate=zone_plate_for(self.geometry, self.info["energy_ev"]),
            polarization=self.info["polarization"],
        )
        s = self.settings
        blur_m = continuous_blur_m(self.geometry)
        if blur_m <= 0:
            self.rec = Reconstruction(
                p,
                algorithm=s.algorithm,
                probe_modes=s.probe_modes,
                backend=s.backend,
                threshold=s.threshold,
            )
            return
        # Continuous motion: enough probe modes to hold the blurred probe, started along
        # the path (recon.motion), so that they can absorb the blur.
        data, calib = prepare(p, threshold=s.threshold, probe_modes=1)
        zone = float(self.geometry["zone_plate"]["outermost_zone_width"])
        modes = probe_modes_for_blur(blur_m, zone, data.pixel_size_m, minimum=s.probe_modes)
        data.probe = blurred_probe_modes(data.probe[0], blur_m / data.pixel_size_m, modes)
        self.rec = Reconstruction(data, algorithm=s.algorithm, backend=s.backend)
        self.rec.calib = calib
        self.messages.append(
            f"continuous motion: {blur_m * 1e9:.0f} nm blur per exposure, "
            f"{modes} probe modes started along the path"
        )

    def _judge_i0(self, group: Any) -> np.ndarray:
        """(K,) bool: which of the group's rows from ``seen`` on have enough beam."""
        new = len(group.rows) - self.seen
        if group.i0 is None:
            return np.ones(new, bool)
        s = self.settings
        check = low_i0_frames(group.i0[self.seen :], s.min_i0_fraction, s.min_i0, group.i0)
        self.i0_threshold, self.i0_median = check.threshold, check.median
        return ~check.low

    def poll(self, stopped: bool = False) -> tuple[int, bool]:
        """Take in the frames that arrived; returns (new frames used, ptychogram complete).

        Before the first reconstruction ``min_frames`` are awaited, unless the run stopped.
        Frames with too little beam are left out. Every read comes before any change of
        state, so a poll that fails on Tiled may simply be done again.
        """
        table = self.reader.table(optional=(self.settings.i0_column,))
        groups = group_ptychograms(table, self.settings.i0_column)
        group = groups.get(self.index)
        if group is None:
            return 0, False
        if not self.info:
            self.info = {
                "energy_ev": group.energy_ev,
                "polarization": group.polarization,
                "frames_total": self.total,
            }
        complete = self.total > 0 and len(group.rows) >= self.total
        have = len(group.rows)
        wanted = 1 if stopped else min(self.settings.min_frames, self.total or have)
        if (self.rec is None and have < wanted) or have == self.seen:
            return 0, complete
        keep = self._judge_i0(group)
        rows = group.rows[self.seen :][keep]
        positions = group.positions_m[self.seen :][keep]
        rejected = group.rows[self.seen :][~keep]
        dark = self.dark
        if rows.size and self.rec is None and dark is None:
            dark = self._dark_for(group.first_time, np.asarray(table["time"]))
        raw = self.reader.frames(rows) if rows.size else None
        # state changes from here on
        self.seen = have
        self.rejected_rows += [int(r) for r in rejected]
        if raw is None:
            return 0, complete
        self.dark = dark
        check = check_frames(raw, self.saturation, index=self.index, rows=rows)
        self.messages += check.messages
        if self.rec is None:
            self._first(check.frames, check.bad, positions)
        else:
            self.rec.add_frames(check.frames, positions_m=positions)
        self.used += len(rows)
        return len(rows), complete

    def i0_message(self) -> str | None:
        """One line about the frames left out for low I0 (None when there were none)."""
        n = len(self.rejected_rows)
        if not n:
            return None
        listed = ", ".join(str(r) for r in self.rejected_rows[:5]) + ("..." if n > 5 else "")
        rule = f"{self.settings.min_i0_fraction:g} x median {self.i0_median or 0.0:.3g}"
        if self.settings.min_i0 > 0:
            rule += f", floor {self.settings.min_i0:.3g}"
        return (
            f"ptychogram {self.index}: {n} frame(s) left out for low I0 "
            f"(below {self.i0_threshold or 0.0:.3g}: {rule}; rows {listed})"
        )

    # -------------------------------------------------------------------- output
    def _metadata(self, status: str) -> dict[str, Any]:
        rec = self.rec
        assert rec is not None
        i0_note = self.i0_message()
        msgs = list(dict.fromkeys(self.messages + ([i0_note] if i0_note else []) + rec.messages))
        return {
            **self.info,
            "status": status,
            "frames_used": self.used,
            "frames_rejected_low_i0": len(self.rejected_rows),
            "i0_threshold": self.i0_threshold,
            "algorithm": rec.algorithm if status == "done" else self._live_name(),
            "iterations": rec.iterations,
            "seconds": rec.seconds,
            "backend": rec.backend,
            "probe_modes": int(rec.data.probe.shape[0]),
            "pixel_size_m": float(rec.data.pixel_size_m),
            "llk_last": float(rec.llk[-1]) if rec.llk else None,
            "refreshes": self.refreshes,
            "messages": msgs,
            "updated": time.time(),
        }

    def _live_name(self) -> str:
        return f"{self.settings.live_step_algorithm}**{self.settings.live_iterations} (live)"

    def refresh(self) -> dict[str, Any]:
        """A few live iterations on the frames so far; returns the partial result to write
        (``{"arrays", "metadata"}``)."""
        assert self.rec is not None
        self.rec.step(self.settings.live_iterations, algorithm=self.settings.live_step_algorithm)
        self.refreshes += 1
        return {"arrays": result_arrays(self.rec), "metadata": self._metadata("running")}

    def finish(self, incomplete: bool) -> dict[str, Any]:
        """The whole chain on every frame; returns the final result (``status: done``)."""
        assert self.rec is not None
        if incomplete:
            self.messages.append(
                f"run ended after {self.seen} of {self.total} frames: reconstructed what came"
            )
        self.rec.run()  # live refreshes do not advance the chain: it runs whole, warm-started
        return {"arrays": result_arrays(self.rec), "metadata": self._metadata("done")}

    def nothing_usable(self) -> str:
        """Why there is no reconstruction: the one line of a failed result."""
        if self.rejected_rows:
            return (
                f"all {len(self.rejected_rows)} frame(s) of ptychogram {self.index} were "
                f"recorded without beam (I0 below {self.i0_threshold or 0.0:.3g}): nothing to "
                "reconstruct"
            )
        return f"the run ended with {self.used} frame(s) of ptychogram {self.index}"


def with_tiled(
    fn: Callable[[], T],
    backoff: Backoff,
    outage_s: float,
    stop: Callable[[], bool],
) -> T:
    """``fn()``, tried again while it fails on an unreachable Tiled (:func:`is_transient`).

    Parameters
    ----------
    fn : the step (reads before any change of state, so that it may be repeated)
    backoff : the task's waits and its one log line per outage
    outage_s : give up (raise the last error) once Tiled has been away this long
    stop : checked while waiting

    Raises
    ------
    TaskStopped
        If ``stop()`` turns True while waiting.
    """
    while True:
        try:
            out = fn()
        except Exception as err:
            if not is_transient(err) or backoff.outage_s > outage_s:
                raise
            deadline = time.monotonic() + backoff.failed(err)
            while time.monotonic() < deadline:
                if stop():
                    raise TaskStopped from err
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            continue
        backoff.succeeded()
        return out


def reconstruct_ptychogram(
    settings: WorkerSettings,
    uid: str,
    index: int,
    should_stop: Callable[[], bool] | None = None,
    client: Any = None,
) -> TaskOutcome:
    """Follow ptychogram ``index`` of run ``uid`` to its final reconstruction in Tiled.

    Parameters
    ----------
    settings : worker settings (Tiled address, algorithm, refresh cadence, I0 thresholds)
    uid : the run's uid
    index : ptychogram number
    should_stop : polled between steps; when it returns True the task returns ``stopped``
        and leaves the result ``running`` (the next worker starts it again)
    client : a tiled client to use (default: a new one from ``settings``)

    Returns
    -------
    TaskOutcome
    """
    t0 = time.perf_counter()
    stop = should_stop or (lambda: False)
    backoff = Backoff(
        f"run {uid[:8]} ptychogram {index}", settings.poll_interval_s, settings.tiled_retry_max_s
    )

    def tiled(fn: Callable[[], T]) -> T:
        return with_tiled(fn, backoff, settings.tiled_outage_s, stop)

    task: PtychogramTask | None = None
    store: ResultStore | None = None
    feed: ChangeFeed | None = None
    s = settings
    try:
        if client is None:
            client = tiled(lambda: connect(s.tiled_uri or "", s.tiled_api_key, s.tiled_timeout_s))
        reader = tiled(lambda: RunReader(client, uid))
        # frames wake the task where Tiled streams them (services.tiled_stream)
        feed = open_feed(client, "", s.tiled_streaming, s.poll_interval_s, s.safety_poll_s, None)
        feed.follow(run_nodes(uid))
        store = ResultStore(client, uid, settings.results_key)
        task = PtychogramTask(settings, reader, store, index)
        begin = {"algorithm": settings.algorithm, "frames_total": task.total}
        tiled(lambda: store.begin(index, {**begin, "frames_rejected_low_i0": 0}))
        since_refresh = 0
        while True:
            if stop():
                return _stopped(uid, index, task)
            # the stop document is read before the table: no frame can come after it
            stopped, (new, complete) = tiled(lambda: _poll(reader, task))
            since_refresh += new
            if complete or (stopped and new == 0):
                if task.rec is None:
                    raise ValueError(task.nothing_usable())
                t_last = time.perf_counter()
                final = task.finish(incomplete=not complete)
                tiled(partial(store.write, index, final["arrays"], final["metadata"]))
                return TaskOutcome(
                    uid,
                    index,
                    "done",
                    task.used,
                    task.refreshes,
                    time.perf_counter() - t0,
                    time.perf_counter() - t_last,
                    task.messages + ([task.i0_message()] if task.rejected_rows else []),
                    len(task.rejected_rows),
                )
            if task.rec is not None and since_refresh >= settings.refresh_frames:
                live = task.refresh()
                tiled(partial(store.write, index, live["arrays"], live["metadata"]))
                since_refresh = 0
            elif new == 0:
                feed.wait(stop=stop)
                feed.follow(run_nodes(uid))  # again: a dropped one restarts
    except TaskStopped:
        return _stopped(uid, index, task)
    except Exception as err:  # noqa: BLE001 - reported in Tiled, the worker goes on
        message = f"ptychogram {index}: {type(err).__name__}: {str(err).splitlines()[0]}"
        if store is not None:
            try:
                store.fail(index, message)
            except Exception:  # noqa: BLE001 - Tiled gone: nothing more to do here
                pass
        return TaskOutcome(
            uid,
            index,
            "failed",
            task.used if task else 0,
            task.refreshes if task else 0,
            messages=[message],
            frames_rejected=len(task.rejected_rows) if task else 0,
        )
    finally:
        if feed is not None:
            feed.close()


def _poll(reader: RunReader, task: PtychogramTask) -> tuple[bool, tuple[int, bool]]:
    stopped = reader.stopped()
    return stopped, task.poll(stopped)


def _stopped(uid: str, index: int, task: PtychogramTask | None) -> TaskOutcome:
    if task is None:
        return TaskOutcome(uid, index, "stopped")
    return TaskOutcome(
        uid, index, "stopped", task.used, task.refreshes, frames_rejected=len(task.rejected_rows)
    )
