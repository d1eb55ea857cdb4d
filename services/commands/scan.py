"""``sptycho scan raster|stack``: run a ptychography plan from the console into Tiled."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path

import typer
from pydantic import ValidationError

from services.commands.dose import SCAN_DOSE_OPTIONS as DOSE
from services.commands.dose import scan_dose_fields
from services.commands.options import SCAN_OPTIONS
from services.commands.queue_scan import QUEUE_OPTIONS, submit
from services.errors import fail
from services.validation import finite_list, one_line, require_finite

scan_app = typer.Typer(help="Run defocused ptychography plans (recorded live in Tiled).")

COMMON = dict(
    prefix=typer.Option("SIM:", help="IOC prefix of the beamline PVs."),
    tiled_uri=typer.Option(None, help="Tiled server; the embedded one when omitted."),
    api_key=typer.Option(None, envvar="SPTYCHO_TILED_API_KEY", help="Tiled API key."),
    data_dir=typer.Option(Path("sptycho-data"), help="Frames (and embedded Tiled) directory."),
)


class Mode(StrEnum):
    """How the points are timed (``ScanParams.mode``)."""

    step = "step"
    fly = "fly"


class Motion(StrEnum):
    """How the stage moves between points in fly mode (``ScanParams.motion``)."""

    step = "step"
    continuous = "continuous"


MODE_HELP = (
    "fly (the default): hardware-timed, the piezo scan controller runs each ptychogram on "
    "its own clock and triggers the camera (~10 ms overhead per point). "
    "step: the control system moves the stage and triggers the camera point by point "
    "(~50-65 ms per point); for a beamline without a scan controller."
)
MOTION_HELP = (
    "In fly mode: step (move, settle, expose still: sharp frames, the safe choice) or "
    "continuous (constant speed through the points: the same speed on this simulator, "
    "but each exposure smears the probe over about one step, recovered in the "
    "reconstruction with probe modes). continuous needs --mode fly."
)

MOTION_OPTIONS = dict(
    mode=typer.Option(Mode.fly, "--mode", case_sensitive=False, help=MODE_HELP),
    motion=typer.Option(Motion.step, "--motion", case_sensitive=False, help=MOTION_HELP),
)


def _floats(text: str, what: str) -> list[float]:
    """Comma-separated finite numbers of option ``what`` (one ``error:`` line otherwise)."""
    return finite_list(text, what)


def _params(
    model: type,
    specific: dict,
    spot: float,
    overlap: float,
    area: float,
    exposure: float,
    mode: Mode,
    motion: Motion,
    frame_size: int,
    dark: int,
):
    """The plan's parameter model from the options both scan commands share, plus
    ``specific`` ones; bad values end in one ``error:`` line before anything moves."""
    if "energy_ev" in specific:
        require_finite(energy=specific["energy_ev"])
    require_finite(spot=spot, overlap=overlap, area=area, exposure=exposure)
    try:
        return model(
            **specific,
            spot_m=spot,
            overlap=overlap,
            area_m=area,
            exposure_s=exposure,
            mode=mode.value,
            motion=motion.value,
            frame_size=frame_size,
            n_dark=dark,
        )
    except ValidationError as err:
        fail(one_line(err))


def _resume_or_abort(RE, notice: str | None) -> list:
    """A plan paused on a fault: ask the user to fix it, then resume; EOF or 'abort' aborts."""
    from bluesky.utils import RunEngineInterrupted

    while True:
        typer.echo(f"{notice or 'paused'}", err=True)
        try:
            answer = input("fix it, then press Enter to resume (or type 'abort'): ")
        except EOFError:
            answer = "abort"
        if answer.strip().lower() == "abort":
            RE.abort(notice or "aborted from the console")
            fail(f"scan aborted ({notice or 'paused'}); shutter closed, data so far kept", 1)
        try:
            return RE.resume()
        except RunEngineInterrupted:
            notice = RE.notices.current if getattr(RE, "notices", None) else None


def _run(plan_factory, params, prefix, tiled_uri, api_key, data_dir) -> None:
    from bluesky.utils import RunEngineInterrupted
    from tqdm import tqdm

    from plans.guards import BeamLostError
    from services.console_log import setup_console_logging
    from services.session import open_session

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="pt", desc="scan")
        bar.update(done - bar.n)

    def close_bar() -> None:
        if bar is not None:
            bar.close()

    def echo(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    log_path = setup_console_logging(Path(data_dir) / "logs")

    try:
        with open_session(
            prefix,
            tiled_uri=tiled_uri,
            api_key=api_key,
            data_dir=data_dir,
            progress=progress,
            echo=echo,
        ) as s:
            try:
                plan = plan_factory(
                    s.beamline, params, guard=s.RE.guard, dose_ledger=s.RE.dose_ledger
                )
                uids = s.RE(plan)
            except RunEngineInterrupted:
                notice = s.RE.notices.current
                if notice and notice.startswith("paused:"):
                    uids = _resume_or_abort(s.RE, notice)
                else:
                    s.RE.abort("interrupted from the console")
                    close_bar()
                    fail("scan interrupted: aborted, shutter closed, data so far kept", 1)
            close_bar()
            for uid in uids or []:
                typer.echo(f"run {uid} in {s.tiled_uri}")
    except (TimeoutError, ValueError) as err:  # TiledUnusable, bad SPTYCHO_BEAM_* values
        close_bar()
        fail(str(err).splitlines()[0])
    except (BeamLostError, RuntimeError) as err:
        close_bar()
        logging.getLogger("sptycho.scan").info("scan failed", exc_info=err)
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        fail(f"{line} (log: {log_path})", 1)


@scan_app.command("raster")
def raster(
    energy: float = SCAN_OPTIONS["energy"],
    polarization: str = SCAN_OPTIONS["polarization"],
    spot: float = SCAN_OPTIONS["spot"],
    overlap: float = SCAN_OPTIONS["overlap"],
    area: float = SCAN_OPTIONS["area"],
    exposure: float = SCAN_OPTIONS["exposure"],
    mode: Mode = MOTION_OPTIONS["mode"],
    motion: Motion = MOTION_OPTIONS["motion"],
    pattern: str = typer.Option("raster", help="raster or fermat."),
    frame_size: int = typer.Option(128, help="Frame width (binned pixels)."),
    dark: int = typer.Option(25, help="Dark frames."),
    sample: str | None = DOSE["sample"],
    material: str | None = DOSE["material"],
    thickness: float | None = DOSE["thickness"],
    flux: float | None = DOSE["flux"],
    dose_budget: float | None = DOSE["dose_budget"],
    prefix: str = COMMON["prefix"],
    tiled_uri: str = COMMON["tiled_uri"],
    api_key: str = COMMON["api_key"],
    data_dir: Path = COMMON["data_dir"],
    queue: str | None = QUEUE_OPTIONS["queue"],
    queue_api_key: str | None = QUEUE_OPTIONS["queue_api_key"],
    follow: bool = QUEUE_OPTIONS["follow"],
) -> None:
    """One defocused ptychogram: dark frames, then the raster."""
    from plans.parameters import RasterParams
    from plans.ptycho import defocused_raster

    params = _params(
        RasterParams,
        dict(
            energy_ev=energy,
            polarization=polarization.upper(),
            pattern=pattern,
            **scan_dose_fields(sample, material, thickness, flux, dose_budget),
        ),
        spot,
        overlap,
        area,
        exposure,
        mode,
        motion,
        frame_size,
        dark,
    )
    if queue:
        submit(queue, "raster", params, queue_api_key, follow)
        return
    _run(defocused_raster, params, prefix, tiled_uri, api_key, data_dir)


@scan_app.command("stack")
def stack(
    energies: str = typer.Option("188,190,192,194", help="Comma-separated energies (eV)."),
    polarizations: str = typer.Option("LH,LV", help="Comma-separated polarizations."),
    order: str = typer.Option(
        "energy",
        help="energy (all polarizations at each energy) or "
        "polarization (the whole energy list per polarization).",
    ),
    dark_policy: str = typer.Option("once", "--dark-policy", help="once, per-energy or none."),
    spot: float = SCAN_OPTIONS["spot"],
    overlap: float = SCAN_OPTIONS["overlap"],
    area: float = SCAN_OPTIONS["area"],
    exposure: float = SCAN_OPTIONS["exposure"],
    mode: Mode = MOTION_OPTIONS["mode"],
    motion: Motion = MOTION_OPTIONS["motion"],
    frame_size: int = typer.Option(128, help="Frame width (binned pixels)."),
    dark: int = typer.Option(25, help="Dark frames per series."),
    sample: str | None = DOSE["sample"],
    material: str | None = DOSE["material"],
    thickness: float | None = DOSE["thickness"],
    flux: float | None = DOSE["flux"],
    dose_budget: float | None = DOSE["dose_budget"],
    prefix: str = COMMON["prefix"],
    tiled_uri: str = COMMON["tiled_uri"],
    api_key: str = COMMON["api_key"],
    data_dir: Path = COMMON["data_dir"],
    queue: str | None = QUEUE_OPTIONS["queue"],
    queue_api_key: str | None = QUEUE_OPTIONS["queue_api_key"],
    follow: bool = QUEUE_OPTIONS["follow"],
) -> None:
    """Energies x polarizations of ptychograms in one run."""
    from plans.parameters import StackParams
    from plans.ptycho import spectro_stack

    specific = dict(
        energies=_floats(energies, "energies"),
        polarizations=[p.strip().upper() for p in polarizations.split(",") if p.strip()],
        order=order,
        dark=dark_policy,
        **scan_dose_fields(sample, material, thickness, flux, dose_budget),
    )
    params = _params(
        StackParams, specific, spot, overlap, area, exposure, mode, motion, frame_size, dark
    )
    if queue:
        submit(queue, "stack", params, queue_api_key, follow)
        return
    _run(spectro_stack, params, prefix, tiled_uri, api_key, data_dir)


def register(app: typer.Typer) -> None:
    app.add_typer(scan_app, name="scan")
