"""The embedded Tiled server under concurrent writes and reads, as during a scan: the
RunEngine appends event rows while the worker and the page read the table.

In SQLite's rollback-journal mode (the embedded server's databases before they were put in
WAL mode) this load made reads and appends fail with ``500 database is locked`` within
seconds; an append that failed so is not retried by the tiled client (appending is not
idempotent), and retried reads queued behind the writer.
"""

import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from services.tiled_server import TiledServer, journal_mode, use_wal

SCHEMA = pa.schema([("seq_num", pa.int64()), ("time", pa.float64())])


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    with TiledServer(tmp_path_factory.mktemp("tiled")) as server:
        yield server


def test_both_databases_are_in_wal_mode(tiled):
    assert journal_mode(tiled.directory / "catalog.db") == "wal"
    assert journal_mode(tiled.directory / "tabular.db") == "wal"


def test_an_old_directory_is_converted_at_start(tmp_path):
    import sqlite3

    old = tmp_path / "old"
    with TiledServer(old) as server:
        server.client().create_container("kept")
    for name in ("catalog.db", "tabular.db"):  # as the server left them before the fix
        with sqlite3.connect(old / name) as db:
            db.execute("PRAGMA journal_mode=DELETE")
    assert journal_mode(old / "catalog.db") == "delete"
    with TiledServer(old) as server:
        assert "kept" in server.client()
        assert journal_mode(old / "catalog.db") == journal_mode(old / "tabular.db") == "wal"
    assert use_wal(old / "tabular.db") == "wal"  # idempotent


def test_appends_and_reads_at_once_never_lock(tiled):
    node = tiled.client().create_appendable_table(SCHEMA, key="events")
    node.append_partition(0, pa.table({"seq_num": [0], "time": [0.0]}, schema=SCHEMA))
    stop = threading.Event()
    appended, reads, failures = [1], [], []

    def write():
        table = tiled.client()["events"]
        k = 1
        while not stop.is_set():
            try:
                table.append_partition(
                    0, pa.table({"seq_num": [k], "time": [time.time()]}, schema=SCHEMA)
                )
            except Exception as err:  # noqa: BLE001 - counted below
                failures.append(repr(err))
                return
            appended[0] = k = k + 1

    def read():
        client = tiled.client()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                client["events"].read()
            except Exception as err:  # noqa: BLE001 - counted below
                failures.append(repr(err))
                return
            reads.append(time.monotonic() - t0)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(20)
    stop.set()
    for t in threads:
        t.join(60)
    log = (tiled.directory / "tiled.log").read_text(errors="replace")
    assert failures == []
    assert log.count("database is locked") == 0
    assert log.count("500 Internal Server Error") == 0
    rows = tiled.client()["events"].read()
    assert len(rows) == appended[0] > 20
    assert np.array_equal(np.sort(rows["seq_num"]), np.arange(appended[0]))  # none twice
    assert len(reads) > 20 and max(reads) < 10.0
