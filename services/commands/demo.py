"""``sptycho demo``: the whole system on this machine, running a spectro-ptychography stack.

Starts the simulated beamline IOC, an embedded Tiled, the worker and the web app
(:class:`services.demo.Beamtime`), prints the live page's URL, runs a stack across the
B 1s edge of BN nanobamboo in LH and LV, shows progress bars, and keeps serving until
Ctrl-C (or, with ``--exit-when-done``, exits 0 once the stack is reconstructed and analysed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from services.errors import fail
from services.validation import finite_list, one_line, port_problem, require_positive

if TYPE_CHECKING:
    from services.demo import BeamtimeSettings


def demo(
    energies: str = typer.Option("188,191,192,194", help="Energies of the stack (eV)."),
    polarizations: str = typer.Option("LH,LV", help="Polarizations of the stack."),
    exit_when_done: bool = typer.Option(
        False, "--exit-when-done", help="Exit 0 once the stack is reconstructed (for tests)."
    ),
    port: int = typer.Option(8000, help="Port of the live page (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address of the live page."),
    data_dir: Path = typer.Option(Path("sptycho-demo"), help="Frames, catalog and exports."),
    key: str | None = typer.Option(None, envvar="SPTYCHO_API_KEY", help="Operators' key."),
    algorithm: str = typer.Option(
        "auto", help="Reconstruction chain of the worker ('auto': chosen from the data)."
    ),
    frame_size: int = typer.Option(128, help="Frame width (binned pixels)."),
    timeout: float = typer.Option(900.0, help="With --exit-when-done: give up after (s)."),
) -> None:
    """Simulated beamline, embedded Tiled, worker and live page: a stack, end to end."""
    from tqdm import tqdm

    from services.api.control import ScanRequest
    from services.demo import Beamtime

    t0 = time.monotonic()
    require_positive(timeout=timeout)
    params = _stack_params(energies, polarizations, frame_size)
    settings = _settings(data_dir, host, port, key, algorithm)
    beamtime = Beamtime(settings)
    try:
        beamtime.start(say=lambda text: typer.echo(text, err=True))
    except (RuntimeError, TimeoutError, OSError) as err:
        fail(str(err).splitlines()[0])
    try:
        typer.echo(f"live page: {beamtime.url}   (operator key: {beamtime.key})")
        beamtime.controller.start(ScanRequest(kind="stack", params=params))
        uid = _follow(beamtime, tqdm, timeout if exit_when_done else None)
        elapsed = time.monotonic() - t0
        typer.echo(_summary(beamtime, uid, data_dir, elapsed))
        if not exit_when_done:
            typer.echo(f"serving {beamtime.url} until Ctrl-C", err=True)
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("stopping", err=True)
    except TimeoutError as err:
        fail(str(err))
    except RuntimeError as err:
        fail(str(err).splitlines()[0])
    finally:
        beamtime.close()


def _stack_params(energies: str, polarizations: str, frame_size: int) -> dict:
    """The stack the demo scans, validated (one ``error:`` line and exit 2 otherwise)."""
    from pydantic import ValidationError

    from plans.parameters import StackParams

    params = {
        "energies": finite_list(energies, "energies"),
        "polarizations": [p.strip().upper() for p in polarizations.split(",") if p.strip()],
        "spot_m": 1e-6,
        "overlap": 0.85,
        "area_m": 1.2e-6,
        "exposure_s": 0.05,
        "frame_size": frame_size,
        "n_dark": 10,
    }
    try:
        StackParams(**params)
    except ValidationError as err:
        fail(one_line(err))
    return params


def _settings(
    data_dir: Path, host: str, port: int, key: str | None, algorithm: str
) -> BeamtimeSettings:
    """The demo's :class:`services.demo.BeamtimeSettings`, every part of them checked the
    way :meth:`services.demo.Beamtime.start` will use them, before anything starts."""
    from pydantic import ValidationError

    from services.api.settings import ApiSettings
    from services.demo import BeamtimeSettings
    from services.worker.config import load_settings

    worker = {"algorithm": algorithm, "refresh_frames": 8, "live_iterations": 10}
    try:
        load_settings(None, **worker)
    except ValueError as err:
        fail(str(err).splitlines()[0].replace("Value error, ", ""))
    try:
        ApiSettings(tiled_uri=None, key=key, host=host, port=port)
    except ValidationError as err:
        fail(one_line(err))
    problem = port_problem(host, port)
    if problem:
        fail(problem)
    if data_dir.exists() and not data_dir.is_dir():
        fail(f"--data-dir {data_dir} is not a directory")
    return BeamtimeSettings(data_dir=data_dir, host=host, port=port, key=key, worker=worker)


def _follow(beamtime, tqdm, timeout: float | None) -> str:
    """Progress bars until the stack is reconstructed and analysed; returns the run uid."""
    ctl = beamtime.controller
    deadline = None if timeout is None else time.monotonic() + timeout
    uid = None
    frames = recons = None
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the demo did not finish in time: see the live page")
            time.sleep(0.5)
            if uid is None:
                keys = list(beamtime.session.client.keys())
                if not keys:
                    if not ctl.busy and ctl.last_error:
                        raise RuntimeError(f"the scan failed: {ctl.last_error}")
                    continue
                uid = keys[-1]
            p = beamtime.progress(uid)
            if frames is None:
                frames = tqdm(total=p["frames_total"], unit="frame", desc="acquired     ")
                recons = tqdm(total=p["total"], unit="ptychogram", desc="reconstructed")
            frames.update(p["frames"] - frames.n)
            recons.update(p["done"] - recons.n)
            if not ctl.busy and ctl.last_exit in ("abort", "fail"):
                raise RuntimeError(f"the scan ended with {ctl.last_exit}: {ctl.last_error or ''}")
            finished = p["state"] != "running" and p["done"] == p["total"]
            if finished and (p["total"] < 2 or p["stack"] == "done"):
                return uid
    finally:
        for bar in (frames, recons):
            if bar is not None:
                bar.close()


def _summary(beamtime, uid: str, data_dir: Path, elapsed: float) -> str:
    """Where the results are, and exports of the stack (NXstxm per polarization)."""
    import numpy as np

    from services import exports

    client = beamtime.session.client
    p = beamtime.progress(uid)
    failed = [r["index"] for r in p["results"] if r.get("status") != "done"]
    lines = [
        f"done in {elapsed:.0f} s: {p['frames']} frames, {p['done']} ptychograms reconstructed"
        + (f" ({len(failed)} failed: {failed})" if failed else ""),
        f"run {uid} in Tiled {beamtime.session.tiled_uri}",
        f"  reconstructions: {uid}/recon/p0000 ... p{p['total'] - 1:04d}",
    ]
    recon = client[uid]["recon"]
    if "stack" in recon:
        node = recon["stack"]
        od = np.asarray(node["od"].read())
        energies = np.asarray(node["energies"].read())
        pols = list(node.metadata.get("polarizations") or [])
        pixel = float(node.metadata.get("pixel_size_m") or 0.0)
        lines.append(f"  stack analysis: {uid}/recon/stack ({', '.join(node.keys())})")
        out = Path(data_dir).resolve() / "exports"
        out.mkdir(parents=True, exist_ok=True)
        for pol in dict.fromkeys(pols):
            pick = [i for i, q in enumerate(pols) if q == pol]
            if len(pick) >= 2:
                path = exports.write_nxstxm(
                    out / f"stack_{pol}.nxs", od[pick], energies[pick], pixel
                )
                lines.append(f"  NXstxm ({pol}): {path}")
    lines.append(f"live page: {beamtime.url}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
