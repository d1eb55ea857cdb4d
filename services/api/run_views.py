"""What the page asks of a run, read from Tiled once per change however many pages ask.

Every page that follows a live scan asks the same things after each live message (the run's
detail, the shown result and its LLK, the measured positions). Read from Tiled for each
page, 20 pages made the embedded Tiled, which shares its process with the RunEngine and the
worker, so slow that the worker's writes took seconds. :class:`RunViews` keeps each answer
until the run changes:

- the :class:`services.api.live.Watcher` calls :meth:`RunViews.changed` for a run *before*
  it publishes that run's messages, so a page that reacts to a message reads the new state;
- an answer is also kept at most ``max_age_s`` (changes the watcher does not see: runs it
  does not follow, a result rewritten offline);
- while one request reads an answer from Tiled, the others that want it wait for that read
  instead of making their own.

Answers are plain JSON-ready values; an error (e.g. the ``KeyError`` of a result not
written yet) is not kept.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class _Entry:
    generation: int
    made: float
    value: Any = None
    ready: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


class RunViews:
    """Answers about runs, kept per run until it changes (see the module docstring).

    Parameters
    ----------
    max_age_s : longest time an answer is kept without a change being reported
    size : how many answers are kept (the least recently used go first)
    clock : seconds, monotonic (tests)
    """

    def __init__(
        self, max_age_s: float = 2.0, size: int = 512, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_s = max_age_s
        self.size = size
        self.clock = clock
        self.reads = 0  # answers read from Tiled (the rest came from here)
        self._generations: dict[str, int] = {}
        self._entries: OrderedDict[tuple[str, Hashable], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def changed(self, uid: str) -> None:
        """Run ``uid`` changed in Tiled: the next request of any of its answers reads again."""
        with self._lock:
            self._generations[uid] = self._generations.get(uid, 0) + 1

    def get(self, uid: str, what: Hashable, read: Callable[[], Any]) -> Any:
        """The answer ``what`` about run ``uid``: kept, or ``read()`` (then kept).

        Raises whatever ``read`` raises (to every request that waited for that read).
        """
        key = (uid, what)
        while True:
            with self._lock:
                generation = self._generations.get(uid, 0)
                entry = self._entries.get(key)
                fresh = (
                    entry is not None
                    and entry.generation == generation
                    and not entry.failed
                    and self.clock() - entry.made <= self.max_age_s
                )
                if fresh:
                    self._entries.move_to_end(key)
                    mine = False
                else:
                    entry = _Entry(generation, self.clock())
                    self._entries[key] = entry
                    while len(self._entries) > self.size:
                        self._entries.popitem(last=False)
                    mine = True
            assert entry is not None
            if mine:
                return self._read(entry, read)
            entry.ready.wait()
            if not entry.failed:
                return entry.value
            # the read this request waited for failed: try its own (and fail on its own)

    def _read(self, entry: _Entry, read: Callable[[], Any]) -> Any:
        try:
            entry.value = read()
            with self._lock:
                self.reads += 1
            return entry.value
        except BaseException:
            entry.failed = True
            raise
        finally:
            entry.made = self.clock()  # kept from the end of the read it holds
            entry.ready.set()
