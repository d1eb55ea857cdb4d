"""Benchmark of the streaming worker: latency from a ptychogram's last frame in Tiled to its
final reconstruction in Tiled.

Usage::

    .venv/bin/python bench/stream.py [--frames 400] [--size 128] [--algorithm AP**100]
                                     [--batch 20] [--backend auto]

One ptychogram of ``--frames`` frames (a square raster) of ``--size``^2 is simulated
(:func:`simulators.dataset.simulate_ptychogram`, BN at 192 eV), replayed as bluesky documents
into an embedded Tiled server through ``TiledWriter`` (``--batch`` events per write), and
reconstructed by the worker running in this process (live refreshes while the frames come,
then the whole chain). Latency = time the final result is seen with ``status: done`` minus
the time the last frame's write to Tiled returned. Writes ``bench/results/stream.json`` and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bluesky_tiled_plugins import TiledWriter  # noqa: E402

from services.tiled_server import TiledServer  # noqa: E402
from services.worker import Worker, load_settings  # noqa: E402
from services.worker.replay import raw_dark, replay  # noqa: E402
from services.worker.tiled_io import ResultStore  # noqa: E402
from simulators.dataset import simulate_ptychogram  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--algorithm", default="AP**100")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stream.json"))
    args = ap.parse_args(argv)
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
    with tempfile.TemporaryDirectory() as tmp, TiledServer(Path(tmp) / "tiled") as server:
        client = server.client()
        settings = load_settings(
            tiled_uri=server.uri,
            tiled_api_key=server.api_key,
            algorithm=args.algorithm,
            backend=args.backend,
            poll_interval_s=0.25,
            refresh_frames=max(50, args.frames // 8),
            live_iterations=5,
        )
        worker = Worker(settings)
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        writer = TiledWriter(client, batch_size=args.batch)
        marks: dict[str, float] = {}

        def on_frame(k: int, i: int) -> None:
            if i == p.n_frames - 1:  # its event has been written (the batch flushed)
                marks["last"] = time.perf_counter()

        t0 = time.perf_counter()
        uid = replay(writer, [p], raw_dark(p), on_frame=on_frame)
        t_last = marks["last"]
        store = ResultStore(client, uid)
        while True:
            md = store.statuses().get(0, {})
            if md.get("status") in ("done", "failed"):
                break
            time.sleep(0.1)
        t_done = time.perf_counter()
        worker.stop()
        thread.join(60)
        outcome = next((o for o in worker.outcomes if o.index == 0), None)
    record = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "frames": p.n_frames,
        "frame_size": args.size,
        "algorithm": args.algorithm,
        "backend": md.get("backend"),
        "writer_batch": args.batch,
        "status": md.get("status"),
        "simulate_s": simulate_s,
        "acquisition_replay_s": t_last - t0,
        "latency_s": t_done - t_last,
        "final_recon_seconds": md.get("seconds"),
        "iterations": md.get("iterations"),
        "live_refreshes": md.get("refreshes"),
        "worker_latency_s": outcome.latency_s if outcome else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"{'frames':>7} {'size':>5} {'algorithm':>10} {'replay s':>9} {'latency s':>10} "
        f"{'iters':>6} {'refreshes':>9} {'status':>7}"
    )
    print(
        f"{record['frames']:>7} {args.size:>5} {args.algorithm:>10} "
        f"{record['acquisition_replay_s']:>9.1f} {record['latency_s']:>10.1f} "
        f"{record['iterations'] or 0:>6} {record['live_refreshes'] or 0:>9} "
        f"{record['status']:>7}"
    )
    return record


if __name__ == "__main__":
    main()
