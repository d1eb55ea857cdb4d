"""Documents on local disk first, then to Tiled: the scan never waits for the data store.

The RunEngine's callback (:class:`TiledDelivery`) appends every document to a journal on
local disk (:class:`services.journal.DocumentJournal`: one JSON-lines file per run, flushed
per document and fsync'ed at least every half second and at the end of a run) and hands it
to a thread that writes it into Tiled. When Tiled does not answer (a restart, an upgrade,
the embedded server dying) the thread keeps the documents, waits with a growing back-off, and when
Tiled is back it *replays* the run from the journal into a writer that writes only what
Tiled lacks (existing containers are reused, event rows already there are skipped by
``seq_num``, array shapes only grow), then delivery goes on. That makes delivery
exactly-once and in order whatever the failed request had already done on the server, and
a reader (the worker) never sees a stream shrink. A run whose documents are all in Tiled
is marked delivered; runs left pending (a session that ended while Tiled was down, a
process that crashed) are delivered by the next session
(:meth:`TiledDelivery.deliver_pending`); a run whose acquisition process died before its
stop document gets one saying so.

This is NSLS-II's decoupling of the RunEngine from the data store, written for this
project: the writer is bluesky-tiled-plugins' run writer (batch size 1, so every frame and
every dark series is visible as soon as it is delivered).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from services.journal import DocumentJournal

log = logging.getLogger("sptycho.delivery")

#: The run writer's private API is used (subclassed): keep the dependency pinned to 2.0.x.
from bluesky_tiled_plugins.writing.consolidators import consolidator_factory  # noqa: E402
from bluesky_tiled_plugins.writing.tiled_writer import (  # noqa: E402
    RunNormalizer,
    _RunWriter,
)


class _ResumingRunWriter(_RunWriter):
    """The Tiled run writer, able to go on with a run that is partly in Tiled already.

    Replaying a run's documents into it writes only what Tiled lacks: the run and stream
    containers, the event table and the camera arrays that exist are reused; event rows
    whose ``seq_num`` the table holds already are not appended again, and an external
    array's shape is only ever grown. So a reader never sees a stream shrink or vanish, and
    nothing is written twice whatever the failed request had done on the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rows_in_tiled: dict[str, int] = {}  # stream name -> rows its table has
        self._frames_in_tiled: dict[str, int] = {}  # sres uid -> length of its array

    def start(self, doc: dict) -> None:
        uid = doc["uid"]
        if uid in self.client:
            self.access_tags = doc.get("tiled_access_tags")
            self.root_node = self.client[uid]
            return
        super().start(doc)

    def descriptor(self, doc: dict) -> None:
        name = doc["name"]
        if name in self._desc_nodes or name not in self.root_node:
            super().descriptor(doc)
            return
        self.data_keys.update(doc.get("data_keys", {}))
        node = self.root_node[name].base
        self._desc_nodes[doc["uid"]] = self._desc_nodes[name] = node
        if "internal" in node:
            table = node["internal"]
            self._internal_tables[name] = table
            self._rows_in_tiled[name] = len(table.read(["seq_num"]))

    def _append_with_retry(self, df_client: Any, table: Any, desc_name: str) -> None:
        have = self._rows_in_tiled.get(desc_name, 0)
        if have:
            seq = np.asarray(table["seq_num"].to_numpy())
            keep = np.flatnonzero(seq > have)
            if keep.size == 0:
                return
            table = table.take(keep)
        super()._append_with_retry(df_client, table, desc_name)

    def get_sres_node(self, sres_uid: str, desc_uid: str | None = None) -> Any:
        if sres_uid not in self._sres_nodes and sres_uid in self._stream_resource_cache:
            sres_doc = self._stream_resource_cache[sres_uid]
            desc_node = self._desc_nodes[desc_uid]
            full_key = f"{desc_node.item['id']}_{sres_doc['data_key']}"
            if full_key not in self._sres_nodes and sres_doc["data_key"] in desc_node:
                consolidator = consolidator_factory(sres_doc, desc_node.metadata)
                node = desc_node[sres_doc["data_key"]]
                self._frames_in_tiled[sres_uid] = int(node.shape[0])
                self._consolidators[sres_uid] = self._consolidators[full_key] = consolidator
                self._sres_nodes[sres_uid] = self._sres_nodes[full_key] = node
        return super().get_sres_node(sres_uid, desc_uid)

    def _write_external_data(self, doc: dict) -> None:
        node, consolidator, patch = self._update_consolidator(doc)
        if consolidator.shape[0] > self._frames_in_tiled.get(doc["stream_resource"], 0):
            self._update_data_source_for_node(node, consolidator.get_data_source(), patch)

    def flush(self) -> None:
        """Write whatever the writer still holds in its batches."""
        for name, cache in self._internal_data_cache.items():
            if cache:
                self._write_internal_data(cache, desc_node=self._desc_nodes[name])
                cache.clear()
        for sres_uid in list(self._external_data_cache):
            self._write_external_data(self._external_data_cache.pop(sres_uid))


class _RunChain:
    """Normalizer (legacy Resource/Datum to StreamResource/StreamDatum) + run writer."""

    def __init__(self, client: Any, batch_size: int) -> None:
        self.writer = _ResumingRunWriter(client.include_data_sources(), batch_size=batch_size)
        self.normalizer = RunNormalizer()
        self.normalizer.subscribe(self.writer)

    def __call__(self, name: str, doc: dict) -> None:
        self.normalizer(name, doc)


def is_transient(err: BaseException) -> bool:
    """The worker's test (server down, restarting, overloaded), plus OS-level errors."""
    from services.worker.tiled_io import is_transient as tiled_transient

    return tiled_transient(err) or isinstance(err, ConnectionError | TimeoutError | OSError)


class TiledDelivery:
    """RunEngine callback: journal every document, then deliver it to Tiled in a thread.

    Parameters
    ----------
    connect : returns a writable tiled client of the catalog root (called again after
        an outage)
    journal : where documents are kept
    backoff_s : waits between attempts while Tiled does not answer (the last repeats)
    replay_batch : the most events per write, when delivery catches up (after an outage, or
        when Tiled is slower than the scan)
    flush_interval_s : the longest a delivered event waits in a batch before it is written
    on_change : called with :meth:`status` when delivery stalls or recovers
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        journal: DocumentJournal,
        *,
        backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0),
        replay_batch: int = 50,
        flush_interval_s: float = 0.5,
        on_change: Callable[[dict], None] | None = None,
    ) -> None:
        self.connect = connect
        self.journal = journal
        self.backoff_s = backoff_s
        self.replay_batch = replay_batch
        self.flush_interval_s = flush_interval_s
        self.on_change = on_change
        self._client: Any = None
        self._chains: dict[str, _RunChain] = {}
        self._delivered: dict[str, int] = {}  # uid -> index of the last document in Tiled
        self._stale: set[str] = set()  # runs whose Tiled state must be rebuilt
        self._queue: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending_n = 0  # documents queued and not yet handed to a writer
        self._unflushed: dict[str, int] = {}  # uid -> last document waiting in a batch
        self._last_flush = 0.0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self.outage_since: float | None = None
        self.last_error: str | None = None
        self.replays = 0
        self._thread = threading.Thread(target=self._loop, name="sptycho-delivery", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ RunEngine side
    def __call__(self, name: str, doc: dict) -> None:
        uid, index = self.journal.append(name, doc)
        if uid is None:
            return
        self._enqueue((uid, index, name, doc))

    def _enqueue(self, item: tuple) -> None:
        with self._count_lock:
            self._pending_n += 1
            self._idle.clear()
        self._queue.put(item)

    def status(self) -> dict[str, Any]:
        """``connected``, ``waiting`` (documents not yet in Tiled), ``outage_s``, ``last_error``."""
        return {
            "connected": self.outage_since is None,
            "waiting": self._pending_n,
            "outage_s": None if self.outage_since is None else time.time() - self.outage_since,
            "last_error": self.last_error,
            "replays": self.replays,
        }

    def wait_delivered(self, timeout: float | None = None) -> bool:
        """Block until every document so far is in Tiled (True) or ``timeout`` passes."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Deliver what is queued (up to ``timeout``), then stop; True when all was delivered."""
        done = self.wait_delivered(timeout)
        self._stop.set()
        self._queue.put(None)
        self._thread.join(5.0)
        self.journal.close()
        return done

    def deliver_pending(self) -> None:
        """Queue the runs an earlier session left undelivered (replayed from their journal)."""
        for uid in self.journal.pending():
            docs = list(self.journal.documents(uid))
            if not docs:
                continue
            if docs[-1][0] != "stop":
                stop = {
                    "uid": str(uuid.uuid4()),
                    "run_start": uid,
                    "time": time.time(),
                    "exit_status": "fail",
                    "reason": "the acquisition process ended before the run's stop document",
                    "num_events": {},
                }
                with open(self.journal.path(uid), "a", encoding="utf-8") as f:
                    f.write(json.dumps({"name": "stop", "doc": stop}) + "\n")
                docs.append(("stop", stop))
            self._stale.add(uid)
            self._enqueue((uid, len(docs) - 1, "stop", docs[-1][1]))

    # ------------------------------------------------------------------ delivery thread
    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.status())
            except Exception:  # noqa: BLE001 - a listener's failure is not delivery's
                log.exception("delivery listener failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.flush_interval_s if self._unflushed else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:  # a quiet moment: what waits in the batches goes now
                for uid, index in list(self._unflushed.items()):
                    self._deliver(uid, index, "flush", None)
                self._settle()
                continue
            if item is None:
                break
            self._deliver(*item)
            with self._count_lock:
                self._pending_n -= 1
            self._settle()

    def _settle(self) -> None:
        """Mark delivery idle when nothing is queued and nothing waits in a batch."""
        with self._count_lock:
            if self._pending_n == 0 and not self._unflushed:
                self._idle.set()

    def _deliver(self, uid: str, index: int, name: str, doc: dict | None) -> None:
        """Hand document ``index`` of run ``uid`` to its writer (``name == "flush"``: write
        what the writer holds); retried, with a replay from the journal, until Tiled takes it.
        """
        attempt = 0
        while not self._stop.is_set():
            try:
                if self._delivered.get(uid, -1) >= index:
                    self._unflushed.pop(uid, None)
                    return  # a replay wrote it already
                chain = self._chain(uid, index)
                if name != "flush" and self._delivered.get(uid, -1) < index:
                    chain(name, doc)
                    self._unflushed[uid] = index
                # Events wait in the writer's batches while documents keep coming, and are
                # written at least every flush_interval_s: big writes when delivery is
                # behind, a frame in Tiled within a fraction of a second when it keeps up.
                due = time.monotonic() - self._last_flush >= self.flush_interval_s
                if name in ("stop", "flush") or due:
                    if name != "stop":
                        chain.writer.flush()
                    self._last_flush = time.monotonic()
                    self._delivered[uid] = index
                    self._unflushed.pop(uid, None)
                if name == "stop":
                    self.journal.mark_delivered(uid)
                    self._chains.pop(uid, None)
                if self.outage_since is not None:
                    log.warning(
                        "Tiled answers again: delivery resumed after %.0f s",
                        time.time() - self.outage_since,
                    )
                    self.outage_since = None
                    self._changed()
                return
            except Exception as err:  # noqa: BLE001 - classified below
                self._chains.pop(uid, None)
                self._stale.add(uid)
                self._client = None
                self.last_error = str(err).splitlines()[0] if str(err) else type(err).__name__
                if not is_transient(err) and attempt >= 2:
                    log.error(
                        "run %s: Tiled refused a document (%s); it stays in %s",
                        uid[:8],
                        self.last_error,
                        self.journal.path(uid),
                    )
                    return
                if self.outage_since is None:
                    self.outage_since = time.time()
                    log.warning(
                        "Tiled does not answer (%s): documents are kept in %s and delivered "
                        "when it returns",
                        self.last_error,
                        self.journal.directory,
                    )
                    self._changed()
                wait = self.backoff_s[min(attempt, len(self.backoff_s) - 1)]
                attempt += 1
                self._stop.wait(wait)

    def _chain(self, uid: str, index: int) -> _RunChain:
        """The writer of run ``uid``, rebuilt from the journal when its Tiled state is unsure."""
        if self._client is None:
            self._client = self.connect()
        if uid in self._stale:
            self._replay(uid, index)
        if uid not in self._chains:
            self._chains[uid] = _RunChain(self._client, batch_size=self.replay_batch)
        return self._chains[uid]

    def _replay(self, uid: str, upto: int) -> None:
        """Write the run's documents ``0..upto`` again; what Tiled has already is kept."""
        docs = list(self.journal.documents(uid))[: upto + 1]
        chain = _RunChain(self._client, batch_size=self.replay_batch)
        ends = bool(docs) and docs[-1][0] == "stop"
        for n, d in docs[:-1] if ends else docs:
            chain(n, d)
        chain.writer.flush()
        if ends:
            chain(*docs[-1])
        self._chains[uid] = chain
        self._delivered[uid] = len(docs) - 1
        self._stale.discard(uid)
        self.replays += 1
        log.warning("run %s: delivery resumed from the journal (%d documents)", uid[:8], len(docs))
