"""``sptycho simulate``: write a simulated ptychogram as a CXI file, or a scan (one energy
or a stack) in the HERMES layout that PyNX's ``pynx-hermespty.py`` reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import typer
from pydantic import ValidationError

from services.commands.options import SCAN_OPTIONS
from services.errors import fail
from services.validation import one_line, require_finite

T = TypeVar("T")


class Layout(StrEnum):
    """What ``sptycho simulate`` writes."""

    cxi = "cxi"  # one CXI file
    hermes = "hermes"  # a folder in the HERMES beamline's layout


def simulate(
    output: Path = typer.Option(
        ..., "-o", "--output", help="CXI file to write (a folder with --layout hermes)."
    ),
    layout: Layout = typer.Option(
        Layout.cxi, case_sensitive=False, help="cxi (one file) or hermes (a HERMES folder)."
    ),
    energies: str = typer.Option(
        "", help="HERMES stack energies (eV, comma-separated); replaces --energy."
    ),
    sample: str = typer.Option(
        "bn-bamboo", help="siemens-star, bn-bamboo, cnt-bundle or permalloy-rods."
    ),
    energy: float = SCAN_OPTIONS["energy"],
    polarization: str = SCAN_OPTIONS["polarization"],
    spot: float = SCAN_OPTIONS["spot"],
    overlap: float = SCAN_OPTIONS["overlap"],
    area: float = SCAN_OPTIONS["area"],
    exposure: float = SCAN_OPTIONS["exposure"],
    frame_size: int = typer.Option(256, help="Frame width in (binned) detector pixels."),
    seed: int = typer.Option(1, help="Random seed (sample, noise, jitter)."),
    pattern: str = typer.Option("raster", help="raster or fermat."),
    distance: float = typer.Option(0.0513, help="Sample-detector distance (m)."),
    binning: int = typer.Option(0, help="Detector binning; 0 chooses it from the optics."),
    flux: float = typer.Option(1e8, help="Incident flux (photons/s)."),
    jitter: float = typer.Option(0.0, help="Position jitter, rms (m)."),
    dark_frames: int = typer.Option(25, help="Dark frames averaged into the dark."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Simulate a ptychogram (raw frames, averaged dark, mask, ground truth) into CXI, or
    into a HERMES folder (with the ground truth in its truth.h5)."""
    from recon.cxi import write_cxi
    from simulators.dataset import simulate_ptychogram

    require_finite(
        energy=energy,
        spot=spot,
        overlap=overlap,
        area=area,
        exposure=exposure,
        distance=distance,
        flux=flux,
        jitter=jitter,
    )
    kwargs = dict(
        sample=sample,
        energy_ev=energy,
        polarization=polarization.upper(),
        spot_m=spot,
        overlap=overlap,
        area_m=area,
        exposure_s=exposure,
        frame_size=frame_size,
        seed=seed,
        pattern=pattern,
        distance_m=distance,
        binning=binning or None,
        flux_ph_s=flux,
        jitter_m=jitter,
        n_dark=dark_frames,
    )
    layout = Layout(layout).value
    if layout == "hermes":
        _simulate_hermes(output, energies, quiet, kwargs)
        return
    if energies:
        fail("--energies needs --layout hermes")
    if output.suffix.lower() not in (".cxi", ".h5", ".hdf5"):
        fail(f"output {output} must end in .cxi (or .h5)")
    t0 = time.perf_counter()
    ptycho = _with_progress(quiet, lambda progress: simulate_ptychogram(progress, **kwargs))
    try:
        write_cxi(output, ptycho)
    except OSError as err:
        fail(f"cannot write {output}: {err}")
    t = ptycho.truth
    typer.echo(
        f"wrote {output}: {ptycho.n_frames} frames of {ptycho.frame_shape[0]}^2 "
        f"(binning {t['binning']}), object pixel {t['object_pixel_size'] * 1e9:.1f} nm, "
        f"{time.perf_counter() - t0:.1f} s"
    )


def _with_progress(quiet: bool, work: Callable[[Callable[[int, int], None]], T]) -> T:
    """``work(progress)`` under a frame progress bar; bad parameters or an unwritable
    output end in one ``error:`` line."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="frame", disable=quiet, desc="simulate")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        return work(progress)
    except ValidationError as err:
        fail(one_line(err))
    except ValueError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write: {err}")
    finally:
        bar.close()


def _simulate_hermes(output: Path, energies: str, quiet: bool, kwargs: dict) -> None:
    """Write the HERMES folder ``output`` (one energy, or the stack of ``energies``)."""
    from services.validation import finite_list
    from simulators.hermes_layout import simulate_hermes

    if output.exists() and not output.is_dir():
        fail(f"output {output} is a file: --layout hermes writes a folder")
    stack = finite_list(energies, "energies (eV)") or None
    date = time.strftime("%Y%m%d")
    t0 = time.perf_counter()
    written = _with_progress(
        quiet,
        lambda progress: simulate_hermes(output, stack, date=date, progress=progress, **kwargs),
    )
    typer.echo(
        f"wrote {output}: {len(written.samples)} energies of {written.n_frames} frames of "
        f"{written.frame_size}^2, truth in {written.truth.name}, "
        f"{time.perf_counter() - t0:.1f} s; import it with --distance {written.distance_m:g} "
        f"--pixel-size {written.pixel_m:g}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
