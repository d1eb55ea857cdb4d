"""``sptycho export``: stacks for aXis2000/MANTiS (NXstxm), TIFF, CSV spectra, or CXI."""

from __future__ import annotations

from pathlib import Path

import typer

FORMATS = ("nxstxm", "tiff", "csv", "cxi")


def export(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="nxstxm, tiff, csv or cxi."),
    inputs: list[Path] = typer.Argument(
        ..., help="Result files of 'sptycho recon' (nxstxm, tiff, csv) or CXI files (cxi)."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file (a folder for cxi, one file per ptychogram)."
    ),
    polarization: str = typer.Option(
        "", help="Comma-separated polarization of each input (default LH for all)."
    ),
) -> None:
    """Export reconstructions as an aligned OD stack (NXstxm, TIFF), spectra (CSV), or
    ptychograms as CXI files that PyNX and PtyPy read."""
    from services.errors import fail

    fmt = fmt.lower()
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        fail(f"no such file: {missing[0]}")
    if fmt == "cxi":
        from recon.cxi import CXIError, read_cxi
        from services.exports import export_cxi

        try:
            paths = export_cxi([read_cxi(p) for p in inputs], output)
        except CXIError as err:
            fail(str(err))
        typer.echo("\n".join(str(p) for p in paths))
        return
    pols = [p.strip().upper() for p in polarization.split(",")] if polarization else []
    if pols and len(pols) != len(inputs):
        fail(f"{len(pols)} polarizations for {len(inputs)} inputs")
    if any(p not in ("LH", "LV", "CL", "CR") for p in pols):
        fail(f"polarizations must be LH, LV, CL or CR, got {polarization!r}")
    _export_stack(fmt, inputs, output, pols or ["LH"] * len(inputs))


def _export_stack(fmt: str, inputs: list[Path], output: Path, pols: list[str]) -> None:
    import numpy as np

    from recon.reconstruction import read_result
    from recon.spectro import region_spectrum
    from recon.stack import analyze_stack, resample_to_grid
    from services import exports
    from services.errors import fail

    try:
        results = [read_result(p) for p in inputs]
    except (OSError, KeyError, ValueError) as err:
        fail(f"cannot read a result file: {str(err).splitlines()[0]}")
    objects = [r.object[0] if r.object.ndim == 3 else r.object for r in results]
    pixels = [r.pixel_size_m for r in results]
    energies = np.array([r.energy_ev for r in results])
    order = np.argsort(energies, kind="stable")
    grid = resample_to_grid([objects[i] for i in order], [pixels[i] for i in order])
    try:
        res = analyze_stack(grid, energies[order], [pols[i] for i in order])
    except ValueError as err:
        fail(str(err))
    if fmt == "nxstxm":
        path = exports.write_nxstxm(output, res.od, res.energies, max(pixels))
        problems = exports.validate_nxstxm(path)
        if problems:
            fail(problems[0])
    elif fmt == "tiff":
        path = exports.write_tiff_stack(output, res.od, res.energies)
    else:
        sample = ~res.i0_mask
        spectra = {
            "od_sample": region_spectrum(res.od, sample),
            "phase_sample": region_spectrum(res.phase, sample),
            "od_i0_region": region_spectrum(res.od, res.i0_mask),
        }
        path = exports.write_spectra_csv(output, res.energies, spectra)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add ``sptycho export`` to the app."""
    app.command("export")(export)
