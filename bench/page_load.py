"""What many pages that follow a live scan cost Tiled: answers kept per run, or not.

Usage::

    .venv/bin/python bench/page_load.py [--pages 20] [--updates 15] [--spacing 2.0]
                                        [--out bench/results/page_load.json]

An embedded Tiled server (SQLite, polled: the demo's default) gets one run with one
reconstruction (object, amplitude, phase, probe and LLK arrays of a 128 x 128 result).
The real app (:func:`services.api.app.create_app`) is served by uvicorn in a thread, and
``--pages`` simulated pages (one asyncio loop, a WebSocket and an HTTP client each) do
what the live page does after each ``result`` message: ask for the run's detail and the
result's metadata and LLK, then fetch the amplitude, phase and probe pictures.

``--updates`` times, ``--spacing`` s apart, the result is rewritten as the worker writes a
live refresh (arrays grown in place, then the metadata with a new ``updated`` stamp). For
each update: the time from the write to the last page holding all three pictures, and how
long the write itself took while the pages read.

Two cases in one run: ``kept`` (the app as shipped: one read of each answer per change of
the run, :mod:`services.api.run_views`) and ``each request`` (the app's ``RunViews``
swapped for one that reads Tiled for every request, as before). Reported for each: the
median and worst update latency, the median write time, Tiled's CPU (per cent of one core)
and the number of requests Tiled served while updating. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import uvicorn  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

from services.api.app import create_app  # noqa: E402
from services.api.settings import ApiSettings  # noqa: E402
from services.tiled_server import TiledServer, free_port  # noqa: E402
from services.worker.tiled_io import ResultStore, connect  # noqa: E402

UID = "bench-page-run"
KINDS = ("amplitude", "phase", "probe")


class ReadEveryTime:
    """The app's answers read from Tiled for every request (the baseline)."""

    def changed(self, uid: str) -> None:
        pass

    def get(self, uid: str, what: Any, read: Any) -> Any:
        return read()


def result_arrays(rng: np.random.Generator, side: int, iterations: int) -> dict[str, np.ndarray]:
    obj = (np.exp(1j * rng.normal(0, 0.3, (side, side))) * 0.9).astype(np.complex64)
    probe = rng.normal(size=(1, 64, 64)).astype(np.complex64)
    return {
        "object": obj,
        "object_amplitude": np.abs(obj).astype(np.float32),
        "object_phase": np.angle(obj).astype(np.float32),
        "probe": probe,
        "probe_amplitude": np.abs(probe[0]).astype(np.float32),
        "llk": np.linspace(10, 1, iterations),
    }


def make_run(client: Any) -> ResultStore:
    start = {
        "uid": UID,
        "time": time.time(),
        "scan_id": 1,
        "plan_name": "bench_page",
        "n_ptychograms": 1,
        "geometry": {"points_per_ptychogram": 49, "energies": [192.0], "polarizations": ["LH"]},
    }
    client.create_container(UID, metadata={"start": start})
    store = ResultStore(client, UID)
    store.begin(0, {"algorithm": "AP**30", "frames_total": 49})
    return store


async def page(base: str, got: dict[float, float], errors: list[str]) -> None:
    """One page: on each result message, the detail, the result and its three pictures."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async with ws_connect(base.replace("http", "ws") + "/ws", max_size=None) as ws:
            while True:
                m = json.loads(await ws.recv())
                if m.get("type") != "result" or m.get("uid") != UID:
                    continue
                stamp = m.get("updated")
                try:
                    (await http.get(f"/api/runs/{UID}")).raise_for_status()
                    (await http.get(f"/api/runs/{UID}/results/0")).raise_for_status()
                    for kind in KINDS:
                        r = await http.get(f"/api/runs/{UID}/results/0/{kind}.png?t={stamp}")
                        r.raise_for_status()
                    got.setdefault(stamp, time.time())
                except httpx.HTTPError as err:
                    errors.append(f"{type(err).__name__}: {err}")


def run_case(server: TiledServer, name: str, args: argparse.Namespace) -> dict[str, Any]:
    client = connect(server.uri, server.api_key, 60)
    store = make_run(client)
    rng = np.random.default_rng(0)
    store.write(0, result_arrays(rng, 100, 5), {"status": "running", "updated": time.time()})
    port = free_port()
    app = create_app(
        ApiSettings(tiled_uri=server.uri, tiled_api_key=server.api_key, poll_interval_s=0.5)
    )
    if name == "each request":
        app.state.views = ReadEveryTime()  # before the lifespan hands it to the watcher
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    web_thread = threading.Thread(target=web.run, daemon=True)
    web_thread.start()
    while not web.started:
        time.sleep(0.05)
    got: list[dict[float, float]] = [{} for _ in range(args.pages)]
    errors: list[str] = []
    loop = asyncio.new_event_loop()
    tasks: list[asyncio.Task] = []

    async def start_pages() -> None:
        base = f"http://127.0.0.1:{port}"
        tasks.extend(asyncio.create_task(page(base, g, errors)) for g in got)

    pages = threading.Thread(target=loop.run_forever, daemon=True)
    pages.start()
    asyncio.run_coroutine_threadsafe(start_pages(), loop).result()
    time.sleep(3.0)  # connected, first messages handled
    tiled_proc = psutil.Process(server.process.pid)
    requests0 = server_requests(server)
    cpu0, t0 = sum(tiled_proc.cpu_times()[:2]), time.perf_counter()
    writes: list[tuple[float, float]] = []
    side = 100
    for i in range(args.updates):
        time.sleep(args.spacing)
        side += 2  # the object grows as frames arrive
        arrays = result_arrays(rng, side, 5 * (i + 2))
        t_write = time.time()
        store.write(0, arrays, {"status": "running", "updated": t_write, "iterations": 5 * i})
        writes.append((t_write, time.time() - t_write))
    time.sleep(args.grace)
    cpu1, t1 = sum(tiled_proc.cpu_times()[:2]), time.perf_counter()
    requests = server_requests(server) - requests0

    async def stop_pages() -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(stop_pages(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    pages.join(10)
    web.should_exit = True
    web_thread.join(30)
    latencies, missed = [], 0
    for t_write, _ in writes:
        arrivals = [g[t_write] for g in got if t_write in g]
        missed += args.pages - len(arrivals)
        if arrivals:
            latencies.append(max(arrivals) - t_write)
    return {
        "case": name,
        "pages": args.pages,
        "updates": len(writes),
        "all_pages_s": {
            "median": round(statistics.median(latencies), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
        },
        "missed": missed,
        "write_s_median": round(statistics.median(w for _, w in writes), 3),
        "tiled_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "tiled_requests": requests,
        "errors": errors[:3],
    }


def server_requests(server: TiledServer) -> int:
    """Requests the Tiled server has logged so far (one access-log line each)."""
    log = Path(server.directory) / "tiled.log"
    with open(log, errors="replace") as f:
        return sum(1 for line in f if "HTTP/1.1" in line)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--updates", type=int, default=15)
    ap.add_argument("--spacing", type=float, default=2.0, help="s between result rewrites")
    ap.add_argument("--grace", type=float, default=10.0, help="s to wait after the last write")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "page_load.json"))
    args = ap.parse_args(argv)
    cases = []
    for name in ("kept", "each request"):
        with tempfile.TemporaryDirectory() as d, TiledServer(Path(d)) as server:
            cases.append(run_case(server, name, args))
    record = {
        "bench": "page_load",
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "cases": cases,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"{args.pages} pages, {args.updates} live results, {args.spacing} s apart")
    print(
        f"{'case':14} {'all pages med':>13} {'max':>7} {'missed':>6} {'write med':>9} "
        f"{'Tiled CPU %':>11} {'requests':>8}"
    )
    for c in cases:
        lat = c["all_pages_s"]
        print(
            f"{c['case']:14} {lat['median']!s:>13} {lat['max']!s:>7} {c['missed']:>6} "
            f"{c['write_s_median']:>9} {c['tiled_cpu_percent']:>11} {c['tiled_requests']:>8}"
        )
    return record


if __name__ == "__main__":
    main()
