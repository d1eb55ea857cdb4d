"""``sptycho import``: other programs' files as runs in Tiled or as CXI files.

* ``sptycho import cxi FILES... --tiled URI``: CXI files (ours or another facility's) as
  one run;
* ``sptycho import hermes FOLDER (-o OUTDIR | --tiled URI)``: a HERMES (SOLEIL) scan
  folder, as PyNX's ``pynx-hermespty.py`` reads it, as CXI files (one per energy) or as a
  run that the worker reconstructs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from services.errors import fail
from services.validation import polarization as polarization_choice

import_app = typer.Typer(
    help="Import CXI files or HERMES folders (as a run in Tiled, or as CXI files).",
    no_args_is_help=True,
)


def _tiled_writer(tiled: str, api_key: str | None) -> Any:
    """A TiledWriter on ``tiled``; one ``error:`` line when it cannot be reached."""
    from services.validation import tiled_problem

    problem = tiled_problem(tiled, api_key)
    if problem:
        fail(problem)
    try:
        from bluesky_tiled_plugins import TiledWriter
        from tiled.client import from_uri

        client = from_uri(tiled, api_key=api_key)
    except Exception as err:  # noqa: BLE001 - one line for any connection problem
        fail(f"cannot connect to Tiled at {tiled}: {str(err).splitlines()[0] if str(err) else err}")
    return TiledWriter(client, batch_size=50)


@import_app.command("cxi")
def cxi(
    inputs: list[Path] = typer.Argument(..., help="CXI files, one ptychogram each."),
    tiled: str = typer.Option(..., "--tiled", envvar="SPTYCHO_TILED_URI", help="Tiled URI."),
    api_key: str = typer.Option(None, envvar="SPTYCHO_TILED_API_KEY", help="Tiled API key."),
    polarization: str = typer.Option("LH", help="Polarization of files that state none."),
) -> None:
    """Replay CXI files as one run (bluesky documents into Tiled); prints its uid."""
    from recon.cxi import CXIError
    from services.imports import import_cxi

    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        fail(f"no such file: {missing[0]}")
    pol = polarization_choice(polarization)
    writer = _tiled_writer(tiled, api_key)
    try:
        uid = import_cxi(inputs, writer, polarization=pol)
    except (CXIError, ValueError) as err:
        fail(str(err))
    typer.echo(uid)


def _energies(text: str) -> list[float] | None:
    """Energies of ``--energy`` (eV), or None when not given."""
    from services.validation import finite_list

    values = finite_list(text, "energies (eV)")
    if not values:
        return None
    if not all(100.0 <= v <= 2000.0 for v in values):
        fail(f"energies must be within 100-2000 eV, got {text!r}")
    return values


def _orientation(text: str) -> tuple[bool, bool, bool]:
    flags = [f.strip() for f in text.split(",")]
    if len(flags) != 3 or any(f not in ("0", "1") for f in flags):
        fail(f"--orientation must be three 0/1 flags such as 1,1,1, got {text!r}")
    return flags[0] == "1", flags[1] == "1", flags[2] == "1"


def _zone_plate(text: str) -> Any:
    """The :class:`recon.probe.ZonePlate` of ``--zone-plate``, or None when not given."""
    from recon.probe import ZonePlate
    from services.validation import finite_list

    values = finite_list(text, "--zone-plate")
    if not values:
        return None
    if len(values) != 3 or min(values[:2]) <= 0 or values[2] < 0:
        fail(f"--zone-plate needs three sizes (m): diameter,zone width,stop; got {text!r}")
    try:
        return ZonePlate(
            outer_diameter=values[0],
            outermost_zone_width=values[1],
            central_stop_diameter=values[2],
        )
    except ValueError as err:
        fail(f"--zone-plate: {err}")


@import_app.command("hermes")
def hermes(
    folder: Path = typer.Argument(..., help="HERMES folder (description .hdf5, .nxs files)."),
    output: Path = typer.Option(None, "-o", "--output", help="Folder of the CXI files."),
    tiled: str = typer.Option(None, "--tiled", help="Tiled URI: import as a run instead."),
    api_key: str = typer.Option(None, envvar="SPTYCHO_TILED_API_KEY", help="Tiled API key."),
    distance: float = typer.Option(None, help="Sample-detector distance (m); required."),
    pixel_size: float = typer.Option(None, help="Detector pixel pitch (m); required."),
    energy: str = typer.Option("", help="Energies (eV, comma-separated) replacing the files'."),
    scan: int = typer.Option(None, help="Scan number, when the folder holds several."),
    polarization: str = typer.Option("LH", help="LH, LV, CL or CR."),
    counts_per_photon: float = typer.Option(1.0, help="Detector counts per photon."),
    orientation: str = typer.Option(
        "1,1,1", help="PyNX detector_orientation: transpose, flip up-down, flip left-right."
    ),
    zone_plate: str = typer.Option(
        "",
        help="Zone plate outer diameter, outermost zone width, central stop (m), e.g. "
        "240e-6,50e-9,72e-6: the initial probe (else the probe comes from the data).",
    ),
    spot: float = typer.Option(None, help="Spot diameter on the sample (m): the defocus."),
) -> None:
    """Convert a HERMES scan (one energy or a stack) to CXI files, one per energy, or
    import it into Tiled as a run; prints the files written or the run's uid."""
    from recon.cxi import CXIError
    from services.imports import hermes_to_cxi, import_hermes
    from services.validation import require_positive

    if not folder.is_dir():
        fail(f"no such folder: {folder}")
    if (output is None) == (tiled is None):
        fail("give either -o OUTDIR (CXI files) or --tiled URI (a run)")
    for name, value in (("--distance", distance), ("--pixel-size", pixel_size)):
        if value is None:
            fail(f"HERMES files hold no detector distance or pixel size: give {name} (m)")
    require_positive(distance=distance, pixel_size=pixel_size, counts_per_photon=counts_per_photon)
    require_positive(spot=spot)
    options = dict(
        zone_plate=_zone_plate(zone_plate),
        spot_m=spot,
        scan=scan,
        energies_ev=_energies(energy),
        orientation=_orientation(orientation),
        counts_per_photon=counts_per_photon,
        polarization=polarization_choice(polarization),
    )
    try:
        if output is not None:
            paths = hermes_to_cxi(folder, output, distance, pixel_size, **options)
            typer.echo("\n".join(str(p) for p in paths))
            return
        writer = _tiled_writer(tiled, api_key)
        typer.echo(import_hermes(folder, writer, distance, pixel_size, **options))
    except (CXIError, ValueError, OSError) as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


def register(app: typer.Typer) -> None:
    """Add ``sptycho import cxi`` and ``sptycho import hermes`` to the app."""
    app.add_typer(import_app, name="import")
