"""Latency of the live page's WebSocket updates with many browsers subscribed at once.

Usage::

    .venv/bin/python bench/web.py [--modes polled streamed] [--clients 20] [--updates 20]
                                  [--poll 0.5 [0.2 ...]] [--spacing 1.5] [--idle 10]
                                  [--out bench/results/web.json]

Two modes: ``polled``, the embedded default (SQLite, no streaming cache), where the watcher
polls every ``--poll`` s (one case per value); ``streamed``, the same catalog served with a
streaming cache in a private Redis (``redis-server`` started for the run), where the watcher
follows Tiled's websocket subscriptions (and polls every 5 s as a safety net).

An embedded Tiled server (:class:`services.tiled_server.TiledServer`) gets one finished run
(start and stop documents as run metadata, a ``recon`` container with result ``p0000``). The
real app (:func:`services.api.app.create_app`) is served by uvicorn in a thread on a free
port of 127.0.0.1 (real sockets), and ``--clients`` WebSocket clients (the ``websockets``
package, one asyncio loop in its own thread) subscribe to ``/ws`` as browsers would.

Then ``--updates`` times, ``--spacing`` s apart plus a random part of one poll interval (so
the writes fall at every phase of the watcher's polls), the result's metadata in Tiled is
rewritten with ``updated`` = ``time.time()`` taken just before the write (``t_write``). Each
client records when the matching ``result`` message (same uid, index and ``updated``)
arrives. Latency = arrival - ``t_write``, end to end: Tiled write -> watcher poll (every
``poll_interval_s``) -> hub -> socket -> client. It is split into the server side (the
message's ``sent`` stamp - ``t_write``: wait for the poll and the poll itself) and delivery
(arrival - ``sent``). A delivery not seen within ``--grace`` s of the last write is missed
(and counts as over 1 s).

Before the updates, with the clients connected and nothing changing, Tiled's CPU at idle is
measured over ``--idle`` s (per cent of one core).

Reported per case: each update's slowest client, the median, 95th percentile and
maximum latency over all deliveries, the fraction under 1 s and the missed deliveries, and
the CPU used while updating (per cent of one core): the Tiled server process, the app's event
loop thread, the watcher thread and the clients' thread (all clients are in this process,
so they compete with the app for the GIL and the cores: a pessimistic setting). Writes
``bench/results/web.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import uvicorn  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from services.api.app import create_app  # noqa: E402
from services.api.settings import ApiSettings  # noqa: E402
from services.tiled_server import TiledServer, free_port  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from stream import tiled_cpu_percent, tiled_for  # noqa: E402

UID = "bench-web-run"
INDEX = 0


def make_run(client: Any) -> Any:
    """A finished one-ptychogram run with one done result; returns the result's node."""
    now = time.time()
    start = {
        "uid": UID,
        "time": now,
        "scan_id": 1,
        "plan_name": "bench_web",
        "sample": "bn-bamboo",
        "n_ptychograms": 1,
        "geometry": {
            "points_per_ptychogram": 9,
            "energies": [192.0],
            "polarizations": ["LH"],
        },
    }
    stop = {"run_start": UID, "time": now, "exit_status": "success", "num_events": {}}
    run = client.create_container(UID, metadata={"start": start, "stop": stop})
    recon = run.create_container("recon", metadata={"kind": "reconstructions"})
    recon.create_container(
        f"p{INDEX:04d}",
        metadata={
            "index": INDEX,
            "status": "done",
            "iterations": 100,
            "llk_last": 1.0,
            "frames_used": 9,
            "frames_total": 9,
            "energy_ev": 192.0,
            "polarization": "LH",
            "updated": now,
        },
    )
    return client[UID]["recon"][f"p{INDEX:04d}"]


class Clients:
    """``n`` WebSocket clients in one asyncio loop running in its own thread.

    ``arrivals[k]`` maps a result's ``updated`` stamp to (arrival, sent) for client ``k``.
    """

    def __init__(self, url: str, n: int) -> None:
        self.url = url
        self.n = n
        self.arrivals: list[dict[float, tuple[float, float]]] = [{} for _ in range(n)]
        self.connected = threading.Event()
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="bench-ws-clients", daemon=True)

    async def _client(self, k: int, ready: list[int]) -> None:
        try:
            async with connect(self.url, open_timeout=30, max_size=None) as ws:
                hello = json.loads(await ws.recv())
                if hello.get("type") != "hello":
                    raise RuntimeError(f"first message is {hello.get('type')!r}, not hello")
                ready.append(k)
                if len(ready) == self.n:
                    self.connected.set()
                while True:
                    text = await ws.recv()
                    now = time.time()
                    m = json.loads(text)
                    if m.get("type") == "result" and m.get("uid") == UID:
                        if m.get("index") == INDEX and m.get("updated") is not None:
                            self.arrivals[k].setdefault(m["updated"], (now, m["sent"]))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - reported, not raised
            self.errors.append(f"client {k}: {type(err).__name__}: {err}")
            self.connected.set()

    async def _main(self) -> None:
        self.stop_event = asyncio.Event()
        ready: list[int] = []
        tasks = [asyncio.create_task(self._client(k, ready)) for k in range(self.n)]
        await self.stop_event.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    def start(self, timeout: float = 30.0) -> Clients:
        self.thread.start()
        if not self.connected.wait(timeout) or self.errors:
            self.stop()
            raise RuntimeError(f"clients did not connect: {self.errors[:3]}")
        return self

    def stop(self) -> None:
        while self.stop_event is None and self.thread.is_alive():
            time.sleep(0.01)
        if self.stop_event is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


class CpuMeter:
    """CPU seconds of the Tiled process and of named threads of this process."""

    def __init__(self, tiled_pid: int) -> None:
        self.tiled = psutil.Process(tiled_pid)
        self.me = psutil.Process()

    def sample(self, threads: dict[str, int | None]) -> dict[str, float]:
        t = self.tiled.cpu_times()
        out = {"tiled_server": t.user + t.system}
        per = {th.id: th.user_time + th.system_time for th in self.me.threads()}
        for name, tid in threads.items():
            out[name] = per.get(tid, 0.0) if tid is not None else 0.0
        mine = self.me.cpu_times()
        out["bench_process"] = mine.user + mine.system
        out["wall"] = time.perf_counter()
        return out


def _thread_id(name: str) -> int | None:
    return next((t.native_id for t in threading.enumerate() if t.name == name), None)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def run_case(
    server: TiledServer, node: Any, poll: float, args: argparse.Namespace, mode: str = "polled"
) -> dict:
    """One case: serve the app, subscribe the clients, measure the idle, write the updates."""
    port = free_port()
    settings = ApiSettings(tiled_uri=server.uri, tiled_api_key=server.api_key, poll_interval_s=poll)
    app = create_app(settings)
    # the /ws handler notices a gone client only at its next message, so a graceful shutdown
    # would wait for the next update: bound it (the time it took is reported)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
    web = uvicorn.Server(config)
    web_thread = threading.Thread(target=web.run, name="bench-uvicorn", daemon=True)
    web_thread.start()
    rng = random.Random(args.seed)
    clients: Clients | None = None
    try:
        deadline = time.monotonic() + 30
        while not web.started:
            if not web_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        watcher = app.state.watcher
        while watcher.polls < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        clients = Clients(f"ws://127.0.0.1:{port}/ws", args.clients).start()
        time.sleep(max(1.0, 2 * poll))  # settle: initial messages delivered
        threads = {
            "app_loop": web_thread.native_id,
            "watcher": _thread_id("sptycho-api-watcher"),
            "clients": clients.thread.native_id,
        }
        idle = tiled_cpu_percent(server.process.pid, args.idle)
        meter = CpuMeter(server.process.pid)
        polls0 = watcher.polls
        cpu0 = meter.sample(threads)
        load0 = os.getloadavg()
        writes: list[tuple[float, float]] = []  # (t_write, write duration)
        for _ in range(args.updates):
            time.sleep(args.spacing + rng.uniform(0.0, poll))
            md = dict(node.metadata)
            t_write = time.time()
            node.update_metadata(metadata={**md, "updated": t_write})
            writes.append((t_write, time.time() - t_write))
        time.sleep(args.grace)
        cpu1 = meter.sample(threads)
        load1 = os.getloadavg()
        polls = watcher.polls - polls0
    finally:
        if clients is not None:
            clients.stop()
        t_stop = time.perf_counter()
        errors = logging.getLogger("uvicorn.error")
        level = errors.level
        errors.setLevel(logging.CRITICAL)  # the handlers cancelled at the timeout, expected
        web.should_exit = True
        web_thread.join(args.shutdown_timeout + 30)
        errors.setLevel(level)
        shutdown_s = time.perf_counter() - t_stop
        if web_thread.is_alive():
            raise RuntimeError("uvicorn did not stop")
    wall = cpu1["wall"] - cpu0["wall"]
    cpu = {k: round(100 * (cpu1[k] - cpu0[k]) / wall, 1) for k in cpu0 if k not in ("wall",)}
    latencies: list[float] = []
    server_side: list[float] = []
    delivery: list[float] = []
    updates = []
    missed = 0
    for i, (t_write, write_s) in enumerate(writes):
        per_client = []
        for arrivals in clients.arrivals:
            hit = arrivals.get(t_write)
            if hit is None:
                missed += 1
                continue
            arrival, sent = hit
            per_client.append(arrival - t_write)
            server_side.append(sent - t_write)
            delivery.append(arrival - sent)
        latencies += per_client
        updates.append(
            {
                "update": i,
                "write_s": round(write_s, 4),
                "received": len(per_client),
                "min_s": round(min(per_client), 4) if per_client else None,
                "max_s": round(max(per_client), 4) if per_client else None,
            }
        )
    expected = len(writes) * args.clients
    under = sum(1 for x in latencies if x < 1.0)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {
        "mode": mode,
        "streaming": watcher.feed.streaming,
        "poll_interval_s": poll if mode == "polled" else watcher.feed.safety_poll_s,
        "tiled_idle_cpu_percent": round(idle, 2),
        "idle_s": args.idle,
        "clients": args.clients,
        "updates": len(writes),
        "deliveries_expected": expected,
        "deliveries": len(latencies),
        "missed": missed,
        "fraction_under_1s": round(under / expected, 4) if expected else None,
        "latency_s": {
            "median": r(statistics.median(latencies) if latencies else None),
            "p95": r(_percentile(latencies, 0.95)),
            "max": r(max(latencies) if latencies else None),
            "min": r(min(latencies) if latencies else None),
        },
        "server_side_s": {
            "median": r(statistics.median(server_side) if server_side else None),
            "max": r(max(server_side) if server_side else None),
        },
        "delivery_s": {
            "median": r(statistics.median(delivery) if delivery else None),
            "max": r(max(delivery) if delivery else None),
        },
        "write_s_median": r(statistics.median(w for _, w in writes)),
        "watcher_polls": polls,
        "cpu_percent_of_one_core": cpu,
        "loadavg_1min": [round(load0[0], 2), round(load1[0], 2)],
        "app_shutdown_s": round(shutdown_s, 2),
        "client_errors": clients.errors[:5],
        "per_update": updates,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["polled", "streamed"])
    ap.add_argument("--idle", type=float, default=10.0, help="s of idle CPU measurement")
    ap.add_argument("--clients", type=int, default=20, help="WebSocket clients (browsers)")
    ap.add_argument("--updates", type=int, default=20, help="result rewrites per case")
    ap.add_argument("--poll", type=float, nargs="+", default=[0.5], help="poll_interval_s")
    ap.add_argument("--spacing", type=float, default=1.5, help="s between rewrites (at least)")
    ap.add_argument("--grace", type=float, default=3.0, help="s to wait after the last write")
    ap.add_argument("--shutdown-timeout", type=float, default=5.0, help="uvicorn's graceful")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "web.json"))
    args = ap.parse_args(argv)
    bad = [m for m in args.modes if m not in ("polled", "streamed")]
    if bad:
        ap.error(f"unknown mode {bad[0]!r}: polled or streamed")
    t0 = time.perf_counter()
    cases = []
    for mode in args.modes:
        with tempfile.TemporaryDirectory() as tmp, tiled_for(mode, Path(tmp) / "tiled") as server:
            node = make_run(server.client())
            polls = args.poll if mode == "polled" else args.poll[:1]
            for poll in polls:
                cases.append(run_case(server, node, poll, args, mode))
    record = {
        "benchmark": "web",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "python": platform.python_version(),
        "spacing_s": args.spacing,
        "cases": cases,
        "run_s": round(time.perf_counter() - t0, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    for c in cases:
        print(
            f"{c['mode']} (wait {c['poll_interval_s']:g} s), {c['clients']} clients: "
            "slowest client per update"
        )
        print(f"{'update':>7} {'received':>9} {'min s':>7} {'max s':>7}")
        for u in c["per_update"]:
            lo = "-" if u["min_s"] is None else f"{u['min_s']:.3f}"
            hi = "-" if u["max_s"] is None else f"{u['max_s']:.3f}"
            print(f"{u['update']:>7} {u['received']:>9} {lo:>7} {hi:>7}")
    print(
        f"{'mode':>8} {'wait s':>6} {'idle %':>6} {'clients':>7} {'median s':>9} "
        f"{'p95 s':>7} {'max s':>7} "
        f"{'<1 s':>6} {'missed':>6} {'server s':>9} {'deliv s':>8} "
        f"{'cpu % (tiled/app/watch/ws)':>27}"
    )
    for c in cases:
        lat, cpu = c["latency_s"], c["cpu_percent_of_one_core"]

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        cpus = f"{cpu['tiled_server']}/{cpu['app_loop']}/{cpu['watcher']}/{cpu['clients']}"
        print(
            f"{c['mode']:>8} {c['poll_interval_s']:>6g} {c['tiled_idle_cpu_percent']:>6.1f} "
            f"{c['clients']:>7} {f(lat['median']):>9} "
            f"{f(lat['p95']):>7} {f(lat['max']):>7} {c['fraction_under_1s']:>6.0%} "
            f"{c['missed']:>6} {f(c['server_side_s']['median']):>9} "
            f"{f(c['delivery_s']['median']):>8} {cpus:>27}"
        )
    stops = ", ".join(f"{c['app_shutdown_s']:g}" for c in cases)
    print(f"app shutdown {stops} s (bounded by --shutdown-timeout)")
    print(f"run {record['run_s']} s; wrote {out}")
    return record


if __name__ == "__main__":
    main()
