"""Documents reach Tiled through the local journal: exactly once, in order, across outages."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from bluesky.plans import count
from ophyd.sim import SynAxis, SynGauss

from services.acquisition import make_run_engine
from services.delivery import TiledDelivery
from services.journal import DocumentJournal
from services.session import connect_tiled
from services.tiled_server import TiledServer, free_port


@pytest.fixture()
def tiled(tmp_path):
    with TiledServer(tmp_path / "tiled", port=free_port()) as server:
        yield server


def detector():
    motor = SynAxis(name="motor")
    return SynGauss("det", motor, "motor", center=0, Imax=1, sigma=1)


def delivery_for(server, journal_dir):
    return TiledDelivery(
        lambda: connect_tiled(server.uri, server.api_key, timeout_s=5),
        DocumentJournal(journal_dir),
        backoff_s=(0.2, 0.5, 1.0),
    )


def seq_nums(client, uid, stream="primary"):
    return list(np.asarray(client[uid][stream].base["internal"].read()["seq_num"]))


def test_clean_run_is_delivered_and_marked(tiled, tmp_path):
    delivery = delivery_for(tiled, tmp_path / "journal")
    RE = make_run_engine(delivery=delivery, context_managers=[])
    (uid,) = RE(count([detector()], num=7))
    client = tiled.client()
    assert seq_nums(client, uid) == list(range(1, 8))
    assert client[uid].metadata["stop"]["exit_status"] == "success"
    assert delivery.journal.delivered(uid) and delivery.journal.pending() == []
    lines = (tmp_path / "journal" / f"{uid}.jsonl").read_text().splitlines()
    names = [json.loads(line)["name"] for line in lines]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 7
    assert delivery.replays == 0
    delivery.close()


def test_tiled_restart_mid_run_every_event_once_in_order(tiled, tmp_path, monkeypatch):
    import tiled.client.utils as tiled_utils

    # no retries inside the tiled client: the outage reaches the delivery layer at once
    monkeypatch.setattr(tiled_utils, "TILED_RETRY_ATTEMPTS", 1)
    delivery = delivery_for(tiled, tmp_path / "journal")
    RE = make_run_engine(delivery=delivery, context_managers=[])
    RE.delivery_wait_s = 120
    seen = []

    def outage(name, doc):
        if name == "event":
            seen.append(doc["seq_num"])
            if len(seen) == 10:
                threading.Thread(target=restart, daemon=True).start()

    def restart():
        tiled.stop()
        time.sleep(6.0)
        tiled.start()

    RE.subscribe(outage)
    t0 = time.monotonic()
    (uid,) = RE(count([detector()], num=40, delay=0.1))
    elapsed = time.monotonic() - t0
    client = tiled.client()
    assert seq_nums(client, uid) == list(range(1, 41))
    assert client[uid].metadata["stop"]["exit_status"] == "success"
    assert delivery.replays >= 1  # the run's streams were rebuilt from the journal
    assert elapsed > 6.0  # RE(...) waited for the delivery, not for the scan
    delivery.close()


def test_scan_does_not_wait_for_tiled(tiled, tmp_path):
    """With Tiled down the plan runs at its own pace; delivery follows when Tiled returns."""
    delivery = delivery_for(tiled, tmp_path / "journal")
    RE = make_run_engine(delivery=delivery, context_managers=[])
    RE.delivery_wait_s = 0.5
    tiled.stop()
    t0 = time.monotonic()
    (uid,) = RE(count([detector()], num=20, delay=0.05))
    assert time.monotonic() - t0 < 10  # no request blocked the RunEngine
    assert delivery.status()["waiting"] > 0  # kept on disk, not yet in Tiled
    tiled.start()
    assert delivery.wait_delivered(60)
    assert seq_nums(tiled.client(), uid) == list(range(1, 21))
    delivery.close()


def test_next_session_delivers_a_crashed_run(tiled, tmp_path):
    """A run whose process died (no stop document) is delivered later, marked failed."""
    journal = DocumentJournal(tmp_path / "journal")
    docs = []
    RE = make_run_engine(context_managers=[])
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE(count([detector()], num=5))
    for name, doc in docs:
        if name != "stop":
            journal.append(name, doc)
    uid = docs[0][1]["uid"]
    journal.close()
    assert journal.pending() == [uid]
    delivery = delivery_for(tiled, tmp_path / "journal")
    delivery.deliver_pending()
    assert delivery.wait_delivered(60)
    run = tiled.client()[uid]
    assert run.metadata["stop"]["exit_status"] == "fail"
    assert "ended before" in run.metadata["stop"]["reason"]
    assert seq_nums(tiled.client(), uid) == list(range(1, 6))
    assert delivery.journal.pending() == []
    delivery.close()
