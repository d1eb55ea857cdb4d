"""Reading runs from Tiled and writing reconstructions back next to them.

The worker asks "what is new" by reading the run list, the primary stream's event table and
the length of its ``camera_image`` array: every poll against the embedded Tiled server
(SQLite, no streaming cache), and whenever a subscription says something changed where Tiled
streams (:mod:`services.tiled_stream`). The answers are fresh: the run's metadata, the table's
rows and the array's length are read again at every call; only the clients of the stream
containers and of the table (which do not change once made) are kept, so that one look costs
few requests.

Results live in a container inside the run (``<run>/recon``; the key is configurable), one
container per ptychogram (``p0000``, ``p0001``, ...) holding ``object`` (complex64),
``object_amplitude``, ``object_phase`` (float32), ``probe`` (complex64, modes first),
``probe_amplitude`` (float32), ``llk`` (float64) and metadata (``status`` running, done or
failed, ``frames_used``, ``frames_total``, ``energy_ev``, ``polarization``, ``algorithm``,
``iterations``, ``seconds``, ``backend``, ``pixel_size_m``, ``messages``, and the counters
``starts`` and ``completions`` with a ``history`` list of what each worker did, and
``frames_rejected_low_i0``, the frames left out for too little beam).

Every request has a timeout (:func:`connect`: 5 s to connect, ``timeout_s`` to read or
write, 30 s by default) and the tiled client retries transient failures itself (connection
errors, timeouts, 5xx) for up to ``TILED_RETRY_TIMEOUT`` (tiled's environment variable,
45 s). What is still failing after that is a Tiled outage (:func:`is_transient`): the worker
waits for Tiled to come back (:class:`Backoff`) instead of giving up.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import httpx
import numpy as np

log = logging.getLogger("sptycho.worker")

#: Columns of the primary stream the worker reads.
PRIMARY_COLUMNS = (
    "seq_num",
    "time",
    "ptychogram",
    "sample_fx",
    "sample_fy",
    "optics_energy",
    "polarization_readback",
)


#: Seconds allowed to open a connection to Tiled.
CONNECT_TIMEOUT_S = 5.0


def connect(uri: str, api_key: str | None = None, timeout_s: float = 30.0) -> Any:
    """A tiled client of the catalog root whose requests time out.

    Parameters
    ----------
    uri : the Tiled server
    api_key : its API key
    timeout_s : longest wait for a response's next bytes, or to send a request's (s);
        connecting may take ``CONNECT_TIMEOUT_S``

    Raises
    ------
    httpx.HTTPError
        If the server cannot be reached (after the client's own retries).
    """
    from tiled.client import from_uri

    timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
    return from_uri(uri, api_key=api_key, timeout=timeout)


def run_keys(client: Any) -> list[str]:
    """Keys of the catalog root's runs, oldest first: every key but the samples' dose ledger
    (:data:`services.dose_ledger.LEDGER_KEY`), which lives beside the runs.

    Parameters
    ----------
    client : a tiled client of the catalog root
    """
    from services.dose_ledger import LEDGER_KEY

    return [key for key in client.keys() if key != LEDGER_KEY]


def is_transient(err: BaseException) -> bool:
    """True for failures that end when Tiled is reachable again: connection refused or
    reset, timeouts, and 5xx or 429 answers (a server restarting or overloaded)."""
    if isinstance(err, httpx.HTTPStatusError):
        code = err.response.status_code
        return code >= 500 or code == 429
    return isinstance(err, httpx.TransportError)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Backoff:
    """Waits between tries while Tiled is unreachable, with one log line per outage.

    The first failure of a streak logs one warning; the waits double from ``first_s`` to
    ``max_s``; the first success after failures logs how long the streak lasted.

    Parameters
    ----------
    what : who is waiting, for the log lines (``"worker"``, ``"ptychogram 3"``)
    first_s : first wait (s)
    max_s : longest wait (s)
    logger : where the two lines go
    """

    def __init__(
        self,
        what: str,
        first_s: float = 0.5,
        max_s: float = 30.0,
        logger: logging.Logger = log,
    ) -> None:
        self.what = what
        self.first_s = first_s
        self.max_s = max(first_s, max_s)
        self.log = logger
        self.failures = 0
        self.since: float | None = None

    @property
    def outage_s(self) -> float:
        """Seconds since the first failure of the current outage (0 when none)."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    def failed(self, err: BaseException) -> float:
        """Record a failure; returns how long to wait before the next try (s)."""
        if self.failures == 0:
            self.since = time.monotonic()
            if is_transient(err):
                what = f"Tiled unreachable ({first_line(err)})"
            else:
                what = f"failed ({type(err).__name__}: {first_line(err)})"
            self.log.warning("%s: %s; trying again with backoff", self.what, what)
        wait = min(self.max_s, self.first_s * 2.0**self.failures)
        self.failures += 1
        return wait

    def succeeded(self) -> None:
        """Record a success (logs the end of an outage)."""
        if self.failures:
            self.log.info("%s: working again after %.1f s", self.what, self.outage_s)
        self.failures = 0
        self.since = None


def worker_id() -> str:
    """``host:pid`` of this process (for the results' history)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _column(df: Any, key: str) -> np.ndarray:
    return np.asarray(df[key]) if key in df else np.zeros(0)


class RunReader:
    """Fresh views of one run's start/stop documents, event table and frames.

    Parameters
    ----------
    client : tiled client of the catalog root
    uid : the run's uid (its key in the catalog)
    """

    def __init__(self, client: Any, uid: str) -> None:
        self.client = client
        self.uid = uid
        self.run = client[uid]
        self.start: dict[str, Any] = dict(self.run.metadata.get("start") or {})
        self._streams: dict[str, Any] = {}
        self._tables: dict[str, Any] = {}
        self._fresh: dict[str, Any] = {}  # camera_image clients of the last look

    @property
    def geometry(self) -> dict[str, Any]:
        return dict(self.start.get("geometry") or {})

    def stopped(self) -> bool:
        """True once the run's stop document is in Tiled."""
        self.run = self.client[self.uid]
        return bool(self.run.metadata.get("stop"))

    def _stream(self, name: str) -> Any | None:
        if name not in self._streams:
            run = self.client[self.uid]
            if name not in run:
                return None
            self._streams[name] = run[name]
        return self._streams[name]

    def _table(self, stream: str, node: Any) -> Any | None:
        if stream not in self._tables:
            if "internal" not in node.base:
                return None
            self._tables[stream] = node.base["internal"]
        return self._tables[stream]

    def has_table(self, stream: str = "primary") -> bool:
        """True once :meth:`table` found the stream's event table."""
        return stream in self._tables

    def _images(self, stream: str, node: Any) -> Any | None:
        """The stream's ``camera_image`` array, its length fresh (None: not there yet).

        Read from the raw container (``node.base``): bluesky's stream client adds requests.
        """
        try:
            self._fresh[stream] = node.base["camera_image"]
        except KeyError:
            return None
        return self._fresh[stream]

    def table(
        self,
        stream: str = "primary",
        columns: tuple[str, ...] = PRIMARY_COLUMNS,
        optional: tuple[str, ...] = (),
    ) -> dict[str, np.ndarray]:
        """Columns of a stream's event table as NumPy arrays (empty when not there yet).

        Only rows whose frame is already readable count: the table is cut to the length of
        ``camera_image`` (the two are written one after the other).

        Parameters
        ----------
        stream : the stream's name
        columns : always in the answer, (N,) zeros when the stream lacks them
        optional : in the answer only when the stream has them (such as ``beam_i0``)
        """
        node = self._stream(stream)
        internal = None if node is None else self._table(stream, node)
        images = None if internal is None else self._images(stream, node)
        if images is None:
            return {c: np.zeros(0) for c in columns}
        present = [c for c in (*columns, *optional) if c in internal.columns]
        df = internal.read(present)
        n = min(len(df), int(images.shape[0]))
        out = {c: _column(df, c)[:n] for c in present}
        for c in columns:
            out.setdefault(c, np.zeros(n))
        return out

    def frames(self, rows: np.ndarray, stream: str = "primary") -> np.ndarray:
        """(M, ny, nx) camera frames of the given (contiguous or not) rows of a stream."""
        rows = np.asarray(rows, dtype=np.int64)
        node = self._stream(stream)
        if node is None or rows.size == 0:
            raise KeyError(f"no {stream} frames in run {self.uid}")
        lo, hi = int(rows.min()), int(rows.max()) + 1
        images = self._fresh.get(stream)  # as long as the last table() saw it, or longer
        if images is None or images.shape[0] < hi:
            images = self._images(stream, node)
        if images is None:
            raise KeyError(f"no {stream} frames in run {self.uid}")
        block = np.asarray(images[lo:hi])
        return block[rows - lo]


def put_array(node: Any, key: str, value: np.ndarray, child: Any = None) -> Any:
    """Write ``value`` as the array ``key`` of the container ``node``, replacing it.

    An existing array (``child``, or looked up) is overwritten in place, and grown in
    place where the new value is larger (Tiled's ``patch`` with ``extend``). Only an array
    that would shrink or change type is deleted and written again: a reader that opens an
    array while it is deleted can leave Tiled unable to create it again under that name.

    Returns
    -------
    the array's tiled client
    """
    value = np.ascontiguousarray(value)
    if child is None:
        try:
            child = node[key]
        except KeyError:
            child = None
    if child is not None:
        old = tuple(child.shape)
        grows = (
            np.dtype(child.dtype) == value.dtype
            and len(old) == value.ndim
            and all(new >= was for new, was in zip(value.shape, old, strict=True))
        )
        if grows:
            child.patch(value, offset=(0,) * value.ndim, extend=True)
            return child
        child.delete(external_only=False)
    return node.write_array(value, key=key)


class ResultStore:
    """Reconstructions of one run in Tiled, one container per ptychogram.

    Parameters
    ----------
    client : tiled client of the catalog root (writable)
    uid : the run's uid
    key : name of the results container inside the run
    """

    ARRAYS = ("object", "object_amplitude", "object_phase", "probe", "probe_amplitude", "llk")

    def __init__(self, client: Any, uid: str, key: str = "recon") -> None:
        self.client = client
        self.uid = uid
        self.key = key
        self._nodes: dict[int, Any] = {}

    @staticmethod
    def name(index: int) -> str:
        return f"p{index:04d}"

    def _container(self) -> Any:
        run = self.client[self.uid]
        if self.key not in run:
            try:
                run.create_container(self.key, metadata={"kind": "reconstructions"})
            except Exception:  # created by someone else in the meantime
                if self.key not in self.client[self.uid]:
                    raise
            run = self.client[self.uid]
        return run[self.key]

    def statuses(self) -> dict[int, dict[str, Any]]:
        """{ptychogram index: metadata} of every result container of the run."""
        run = self.client[self.uid]
        if self.key not in run:
            return {}
        out = {}
        for name, node in run[self.key].items():
            if name.startswith("p") and name[1:].isdigit():
                out[int(name[1:])] = dict(node.metadata)
        return out

    def node(self, index: int) -> Any:
        """The result container of ptychogram ``index`` (created when missing)."""
        if index not in self._nodes:
            parent = self._container()
            name = self.name(index)
            if name not in parent:
                parent.create_container(name, metadata={"index": index, "status": "queued"})
            self._nodes[index] = self._container()[name]
        return self._nodes[index]

    def begin(self, index: int, info: dict[str, Any]) -> dict[str, Any]:
        """Mark a reconstruction of ``index`` started; returns the updated metadata.

        ``starts`` counts every start (a worker restarted after a crash starts again the
        ptychogram it was on); ``history`` records who started it and when.
        """
        node = self.node(index)
        md = dict(node.metadata)
        history = list(md.get("history") or [])
        history.append({"event": "start", "worker": worker_id(), "time": time.time()})
        update = {
            **info,
            "index": index,
            "status": "running",
            "starts": int(md.get("starts") or 0) + 1,
            "completions": int(md.get("completions") or 0),
            "history": history,
            "frames_used": 0,
            "messages": [],
        }
        node.update_metadata(metadata=update)
        return update

    def write(self, index: int, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        """Replace the arrays of ``index`` and merge ``metadata`` into its metadata.

        Arrays are written in place (:func:`put_array`): the object grows while frames
        arrive, llk at every refresh.
        """
        node = self.node(index)
        existing = dict(node.items())  # one listing instead of a lookup per array
        for key, value in arrays.items():
            put_array(node, key, value, existing.get(key))
        if metadata.get("status") == "done":
            md = dict(node.metadata)
            history = list(md.get("history") or [])
            history.append({"event": "done", "worker": worker_id(), "time": time.time()})
            metadata = {
                **metadata,
                "completions": int(md.get("completions") or 0) + 1,
                "history": history,
            }
        node.update_metadata(metadata=metadata)

    def fail(self, index: int, message: str) -> None:
        """Mark ``index`` failed with one message line."""
        node = self.node(index)
        md = dict(node.metadata)
        messages = list(md.get("messages") or []) + [message]
        node.update_metadata(metadata={"status": "failed", "messages": messages})
