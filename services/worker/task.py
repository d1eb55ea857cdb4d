"""One ptychogram, from its first frames to its final reconstruction in Tiled.

:func:`reconstruct_ptychogram` is the unit of work the worker hands to its executor (a
thread here, or a Dask worker elsewhere: it takes only picklable arguments and opens its own
Tiled client). It follows the ptychogram while its frames arrive: after ``min_frames`` it
starts a reconstruction, every ``refresh_frames`` new frames it adds them
(:meth:`recon.reconstruction.Reconstruction.add_frames`), runs ``live_iterations`` and
writes the partial result with ``status: running``; when all ``points_per_ptychogram``
frames are in (or the run stopped short) it runs the whole algorithm chain on all frames,
warm-started from the live result, and writes the final result with ``status: done``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.cxi import Ptychogram
from recon.reconstruction import Reconstruction
from services.worker.config import WorkerSettings
from services.worker.grouping import (
    check_frames,
    counts_per_photon_for,
    group_ptychograms,
    saturation_counts,
    select_dark_series,
    zone_plate_for,
)
from services.worker.tiled_io import ResultStore, RunReader, connect


@dataclass
class TaskOutcome:
    """What a task did.

    Attributes
    ----------
    uid, index : run and ptychogram
    status : ``done``, ``failed`` or ``stopped`` (the worker is shutting down)
    frames_used : frames in the final (or last) reconstruction
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
        self.rec = Reconstruction(
            p,
            algorithm=s.algorithm,
            probe_modes=s.probe_modes,
            backend=s.backend,
            threshold=s.threshold,
        )

    def poll(self, stopped: bool = False) -> tuple[int, bool]:
        """Take in the frames that arrived; returns (new frames, ptychogram complete).

        Before the first reconstruction ``min_frames`` are awaited, unless the run stopped.
        """
        table = self.reader.table()
        groups = group_ptychograms(table)
        group = groups.get(self.index)
        if group is None:
            return 0, False
        if not self.info:
            self.info = {
                "energy_ev": group.energy_ev,
                "polarization": group.polarization,
                "frames_total": self.total,
            }
        rows = group.rows[self.used :]
        complete = self.total > 0 and len(group.rows) >= self.total
        have = len(group.rows)
        wanted = 1 if stopped else min(self.settings.min_frames, self.total or have)
        if self.rec is None and have < wanted:
            return 0, complete
        if rows.size == 0:
            return 0, complete
        if self.rec is None:
            self.dark = self._dark_for(group.first_time, np.asarray(table["time"]))
        raw = self.reader.frames(rows)
        check = check_frames(raw, self.saturation, first_row=int(rows[0]), index=self.index)
        self.messages += check.messages
        positions = group.positions_m[self.used :]
        if self.rec is None:
            self._first(check.frames, check.bad, positions)
        else:
            self.rec.add_frames(check.frames, positions_m=positions)
        self.used += len(rows)
        return len(rows), complete

    # -------------------------------------------------------------------- output
    def _metadata(self, status: str) -> dict[str, Any]:
        rec = self.rec
        assert rec is not None
        msgs = list(dict.fromkeys(self.messages + rec.messages))
        return {
            **self.info,
            "status": status,
            "frames_used": self.used,
            "algorithm": self.settings.algorithm if status == "done" else self._live_name(),
            "iterations": rec.iterations,
            "seconds": rec.seconds,
            "backend": rec.backend,
            "pixel_size_m": float(rec.data.pixel_size_m),
            "llk_last": float(rec.llk[-1]) if rec.llk else None,
            "refreshes": self.refreshes,
            "messages": msgs,
            "updated": time.time(),
        }

    def _live_name(self) -> str:
        return f"{self.settings.live_step_algorithm}**{self.settings.live_iterations} (live)"

    def refresh(self) -> None:
        """A few live iterations on the frames so far, written as a partial result."""
        assert self.rec is not None
        self.rec.step(self.settings.live_iterations, algorithm=self.settings.live_step_algorithm)
        self.refreshes += 1
        self.store.write(self.index, result_arrays(self.rec), self._metadata("running"))

    def finish(self, incomplete: bool) -> None:
        """The whole chain on every frame; written with ``status: done``."""
        assert self.rec is not None
        if incomplete:
            self.messages.append(
                f"run ended after {self.used} of {self.total} frames: reconstructed what came"
            )
        self.rec.run()  # live refreshes do not advance the chain: it runs whole, warm-started
        self.store.write(self.index, result_arrays(self.rec), self._metadata("done"))


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
    settings : worker settings (Tiled address, algorithm, refresh cadence)
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
    if client is None:
        client = connect(settings.tiled_uri or "", settings.tiled_api_key)
    reader = RunReader(client, uid)
    store = ResultStore(client, uid, settings.results_key)
    task = PtychogramTask(settings, reader, store, index)
    store.begin(index, {"algorithm": settings.algorithm, "frames_total": task.total})
    since_refresh = 0
    try:
        while True:
            if stop():
                return TaskOutcome(uid, index, "stopped", task.used, task.refreshes)
            stopped = reader.stopped()  # read before the table: no frame can come after
            new, complete = task.poll(stopped)
            since_refresh += new
            if complete or (stopped and new == 0):
                if task.rec is None:
                    raise ValueError(f"the run ended with {task.used} frame(s) of ptychogram")
                t_last = time.perf_counter()
                task.finish(incomplete=not complete)
                return TaskOutcome(
                    uid,
                    index,
                    "done",
                    task.used,
                    task.refreshes,
                    time.perf_counter() - t0,
                    time.perf_counter() - t_last,
                    task.messages,
                )
            if task.rec is not None and since_refresh >= settings.refresh_frames:
                task.refresh()
                since_refresh = 0
            elif new == 0:
                time.sleep(settings.poll_interval_s)
    except Exception as err:  # noqa: BLE001 - reported in Tiled, the worker goes on
        message = f"ptychogram {index}: {type(err).__name__}: {str(err).splitlines()[0]}"
        try:
            store.fail(index, message)
        except Exception:  # noqa: BLE001 - Tiled gone: nothing more to do here
            pass
        return TaskOutcome(uid, index, "failed", task.used, task.refreshes, messages=[message])
