"""Benchmark of the streaming worker, polled and streamed: how soon it sees each frame, how
soon the final reconstruction follows the last frame, and Tiled's CPU while it idles.

Usage::

    .venv/bin/python bench/stream.py [--modes polled streamed] [--frames 400] [--size 128]
                                     [--algorithm AP**100] [--batch 20] [--frame-delay 0]
                                     [--no-live] [--poll 0.25] [--idle 10] [--backend auto]

One ptychogram of ``--frames`` frames (a square raster) of ``--size``^2 is simulated
(:func:`simulators.dataset.simulate_ptychogram`, BN at 192 eV), replayed as bluesky documents
(``--frame-delay`` s apart, as a camera would) into an embedded Tiled server through
``TiledWriter`` (``--batch`` events per write), and reconstructed by the worker running in
this process. Two modes:

``polled``
    the embedded default (SQLite, no streaming cache): the worker and its task poll every
    ``--poll`` s;
``streamed``
    the same embedded catalog served with a streaming cache in a private Redis
    (``redis-server`` started for the run): they follow Tiled's websocket subscriptions and
    poll only every ``safety_poll_s`` (5 s).

Measured per mode:

* frame latency: when the task takes a frame in (its ``PtychogramTask.poll`` returns with
  the frame counted) minus when the frame's write to Tiled returned; the first
  ``min_frames`` are left out (the task waits for them on purpose). With ``--no-live`` the
  live refreshes are off (``refresh_frames`` = all frames), so that only the waiting is
  measured (else every ``max(50, frames / 8)`` frames, 5 iterations each);
* final latency: the result seen with ``status: done`` minus the last frame's write;
* Tiled's CPU at idle: per cent of one core of the Tiled process over ``--idle`` s once the
  run is done, the worker still running.

Writes ``bench/results/stream.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from bluesky_tiled_plugins import TiledWriter  # noqa: E402

from services.tiled_server import TiledServer  # noqa: E402
from services.worker import Worker, load_settings  # noqa: E402
from services.worker.replay import raw_dark, replay  # noqa: E402
from services.worker.task import PtychogramTask  # noqa: E402
from services.worker.tiled_io import ResultStore  # noqa: E402
from simulators.dataset import simulate_ptychogram  # noqa: E402


@contextlib.contextmanager
def tiled_for(mode: str, directory: Path) -> Iterator[TiledServer]:
    """The embedded Tiled of ``mode``: with a private Redis streaming cache when streamed."""
    if mode == "polled":
        with TiledServer(directory) as server:
            yield server
        return
    sys.path.insert(0, str(ROOT / "tests" / "system"))
    from private_services import private_redis

    with private_redis() as redis, TiledServer(directory, streaming_cache=redis.url()) as server:
        yield server


def tiled_cpu_percent(pid: int, seconds: float) -> float:
    """Per cent of one core the process ``pid`` used over the next ``seconds``."""
    proc = psutil.Process(pid)
    t0, c0 = time.perf_counter(), sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    t1, c1 = time.perf_counter(), sum(proc.cpu_times()[:2])
    return 100.0 * (c1 - c0) / (t1 - t0)


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "max": None}
    s = sorted(values)
    return {
        "median": round(statistics.median(s), 4),
        "p95": round(s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], 4),
        "max": round(s[-1], 4),
    }


def run_mode(mode: str, p: Any, args: argparse.Namespace) -> dict:
    """One acquisition and reconstruction in ``mode``; returns its record."""
    seen_at: dict[int, float] = {}
    original = PtychogramTask.poll

    def timed_poll(task: PtychogramTask, stopped: bool = False) -> tuple[int, bool]:
        before = task.seen
        out = original(task, stopped)
        now = time.perf_counter()
        for row in range(before, task.seen):
            seen_at.setdefault(row, now)
        return out

    PtychogramTask.poll = timed_poll  # type: ignore[method-assign]
    landed: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, tiled_for(mode, Path(tmp) / "tiled") as server:
            client = server.client()
            settings = load_settings(
                tiled_uri=server.uri,
                tiled_api_key=server.api_key,
                algorithm=args.algorithm,
                backend=args.backend,
                poll_interval_s=args.poll,
                refresh_frames=p.n_frames if args.no_live else max(50, p.n_frames // 8),
                live_iterations=5,
            )
            worker = Worker(settings, analyze_stacks=False)
            thread = threading.Thread(target=worker.run_forever, daemon=True)
            thread.start()
            while worker.feed.client is None or (mode == "streamed" and not worker.feed.following):
                time.sleep(0.05)
            writer = TiledWriter(client, batch_size=args.batch)

            def on_frame(k: int, i: int) -> None:
                landed[i] = time.perf_counter()  # its event has been written

            t0 = time.perf_counter()
            uid = replay(writer, [p], raw_dark(p), on_frame=on_frame, frame_delay_s=args.delay)
            t_last = landed[p.n_frames - 1]
            store = ResultStore(client, uid)
            while True:
                md = store.statuses().get(0, {})
                if md.get("status") in ("done", "failed"):
                    break
                time.sleep(0.05)
            t_done = time.perf_counter()
            time.sleep(1.0)
            idle = tiled_cpu_percent(server.process.pid, args.idle)
            streaming = worker.feed.streaming
            worker.stop()
            thread.join(60)
    finally:
        PtychogramTask.poll = original  # type: ignore[method-assign]
    frame_lat = [
        seen_at[i] - landed[i]
        for i in range(settings.min_frames, p.n_frames)
        if i in seen_at and i in landed
    ]
    return {
        "mode": mode,
        "streaming": streaming,
        "poll_interval_s": args.poll if mode == "polled" else settings.safety_poll_s,
        "status": md.get("status"),
        "backend": md.get("backend"),
        "acquisition_replay_s": round(t_last - t0, 2),
        "frames_measured": len(frame_lat),
        "frame_to_worker_s": _stats(frame_lat),
        "last_frame_to_final_s": round(t_done - t_last, 3),
        "final_recon_seconds": md.get("seconds"),
        "iterations": md.get("iterations"),
        "live_refreshes": md.get("refreshes"),
        "tiled_idle_cpu_percent": round(idle, 2),
        "idle_s": args.idle,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["polled", "streamed"])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--algorithm", default="AP**100")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--frame-delay", dest="delay", type=float, default=0.0)
    ap.add_argument("--no-live", action="store_true", help="no live refreshes")
    ap.add_argument("--poll", type=float, default=0.25, help="poll_interval_s when polled")
    ap.add_argument("--idle", type=float, default=10.0, help="s of idle CPU measurement")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stream.json"))
    args = ap.parse_args(argv)
    bad = [m for m in args.modes if m not in ("polled", "streamed")]
    if bad:
        ap.error(f"unknown mode {bad[0]!r}: polled or streamed")
    side = int(round(math.sqrt(args.frames)))
    step = 0.1e-6
    t = time.perf_counter()
    p = simulate_ptychogram(
        sample="bn-bamboo",
        energy_ev=192.0,
        spot_m=1e-6,
        overlap=0.9,
        area_m=(side - 1) * step,
        exposure_s=0.1,
        frame_size=args.size,
        seed=1,
    )
    simulate_s = time.perf_counter() - t
    cases = [run_mode(mode, p, args) for mode in args.modes]
    record = {
        "benchmark": "stream",
        "machine": platform.machine(),
        "cpus": psutil.cpu_count(),
        "python": platform.python_version(),
        "frames": p.n_frames,
        "frame_size": args.size,
        "algorithm": args.algorithm,
        "writer_batch": args.batch,
        "frame_delay_s": args.delay,
        "live_refreshes": not args.no_live,
        "simulate_s": round(simulate_s, 2),
        "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"{'mode':>9} {'wait s':>6} {'frame->worker median':>21} {'p95':>6} {'max':>6} "
        f"{'last->final s':>13} {'tiled idle %':>12} {'status':>7}"
    )
    for c in cases:
        f = c["frame_to_worker_s"]
        print(
            f"{c['mode']:>9} {c['poll_interval_s']:>6g} {f['median'] or 0:>21.3f} "
            f"{f['p95'] or 0:>6.3f} {f['max'] or 0:>6.3f} {c['last_frame_to_final_s']:>13.2f} "
            f"{c['tiled_idle_cpu_percent']:>12.1f} {c['status']:>7}"
        )
    print(f"{p.n_frames} frames of {args.size}^2, {args.algorithm}; wrote {out}")
    return record


if __name__ == "__main__":
    main()
