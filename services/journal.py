"""The document journal: every document of every run on local disk before it reaches Tiled.

One JSON-lines file per run, flushed per document and fsync'ed at least every half second
and at the end of a run; :class:`services.delivery.TiledDelivery` replays a run from it
after a Tiled outage, and marks it delivered when all of it is in Tiled.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _json_default(value: Any) -> Any:
    """JSON for the NumPy values that documents may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a document journal")


class DocumentJournal:
    """Every document of every run, as JSON lines in ``<directory>/<run uid>.jsonl``.

    Documents between a start and its stop belong to that run (the plans of this project
    open one run at a time). A run whose documents all reached Tiled gets a marker file
    ``<uid>.delivered``; the journal itself is kept as a local record.

    Parameters
    ----------
    directory : where the journals live (created)
    fsync_interval_s : the longest time a document may sit in the OS's buffers
    """

    def __init__(self, directory: str | Path, *, fsync_interval_s: float = 0.5) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync_interval_s = fsync_interval_s
        self._file: Any = None
        self._uid: str | None = None
        self._count = 0
        self._last_sync = 0.0
        self._lock = threading.Lock()

    def path(self, uid: str) -> Path:
        return self.directory / f"{uid}.jsonl"

    def append(self, name: str, doc: dict) -> tuple[str | None, int]:
        """Store one document; returns (run uid, index of the document in its run)."""
        with self._lock:
            if name == "start":
                self._close()
                self._uid = doc["uid"]
                self._file = open(self.path(self._uid), "a", encoding="utf-8")  # noqa: SIM115
                self._count = 0
            if self._file is None:
                return None, -1  # a document outside any run: nothing to keep
            line = json.dumps({"name": name, "doc": doc}, default=_json_default)
            self._file.write(line + "\n")
            self._file.flush()
            index = self._count
            self._count += 1
            uid = self._uid
            now = time.monotonic()
            if name == "stop" or now - self._last_sync >= self.fsync_interval_s:
                os.fsync(self._file.fileno())
                self._last_sync = now
            if name == "stop":
                self._close()
            return uid, index

    def _close(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
        self._file = None
        self._uid = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def documents(self, uid: str) -> Iterator[tuple[str, dict]]:
        """The run's documents in the order they were emitted (a torn last line is skipped)."""
        with open(self.path(uid), encoding="utf-8") as f:
            for line in f:
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                yield item["name"], item["doc"]

    def mark_delivered(self, uid: str) -> None:
        (self.directory / f"{uid}.delivered").write_text(f"{time.time()}\n")

    def delivered(self, uid: str) -> bool:
        return (self.directory / f"{uid}.delivered").exists()

    def pending(self) -> list[str]:
        """Runs with documents not (known to be) all in Tiled, oldest first."""
        current = self._uid
        runs = sorted(self.directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        return [p.stem for p in runs if p.stem != current and not self.delivered(p.stem)]
