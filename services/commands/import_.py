"""``sptycho import``: CXI files (ours or another facility's) as a run in Tiled."""

from __future__ import annotations

from pathlib import Path

import typer


def import_(
    inputs: list[Path] = typer.Argument(..., help="CXI files, one ptychogram each."),
    tiled: str = typer.Option(..., "--tiled", envvar="SPTYCHO_TILED_URI", help="Tiled URI."),
    api_key: str = typer.Option(None, envvar="SPTYCHO_TILED_API_KEY", help="Tiled API key."),
    polarization: str = typer.Option("LH", help="Polarization of files that state none."),
) -> None:
    """Replay CXI files as one run (bluesky documents into Tiled); prints its uid."""
    from recon.cxi import CXIError
    from services.errors import fail
    from services.exports import import_cxi
    from services.validation import tiled_problem

    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        fail(f"no such file: {missing[0]}")
    if polarization.upper() not in ("LH", "LV", "CL", "CR"):
        fail(f"polarization must be LH, LV, CL or CR, got {polarization!r}")
    problem = tiled_problem(tiled, api_key)
    if problem:
        fail(problem)
    try:
        from bluesky_tiled_plugins import TiledWriter
        from tiled.client import from_uri

        client = from_uri(tiled, api_key=api_key)
    except Exception as err:  # noqa: BLE001 - one line for any connection problem
        fail(f"cannot connect to Tiled at {tiled}: {str(err).splitlines()[0] if str(err) else err}")
    try:
        uid = import_cxi(
            inputs, TiledWriter(client, batch_size=50), polarization=polarization.upper()
        )
    except (CXIError, ValueError) as err:
        fail(str(err))
    typer.echo(uid)


def register(app: typer.Typer) -> None:
    """Add ``sptycho import`` to the app."""
    app.command("import")(import_)
