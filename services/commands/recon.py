"""``sptycho recon``: reconstruct a CXI ptychogram into a result file (HDF5)."""

from __future__ import annotations

from pathlib import Path

import typer


def recon(
    input: Path = typer.Argument(..., help="CXI ptychogram to reconstruct."),
    output: Path = typer.Option(..., "-o", "--output", help="Result file (HDF5) to write."),
    algorithm: str = typer.Option(
        "AP**200", "--algorithm", "-a", help="Algorithm chain, e.g. 'AP**150,ML**50'."
    ),
    probe_modes: int = typer.Option(1, help="Incoherent probe modes (1-10)."),
    backend: str = typer.Option("auto", help="auto, numpy or cupy."),
    frame_size: int = typer.Option(0, help="Crop frames to this size around the centre."),
    binning: int = typer.Option(1, help="Bin frames by this factor after cropping."),
    threshold: float = typer.Option(0.5, help="Photons below this are set to 0."),
    refine_positions: bool = typer.Option(False, help="Refine the scan positions (AP)."),
    background: bool = typer.Option(False, help="Refine an incoherent background."),
    seed: int = typer.Option(0, help="Seed of the initial extra probe modes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Reconstruct object and probe from a ptychogram and write them to OUTPUT."""
    from tqdm import tqdm

    from recon.algorithms import EngineOptions, parse_algorithm
    from recon.cxi import CXIError, read_cxi
    from recon.reconstruction import Reconstruction, write_result
    from services.errors import fail

    try:
        parse_algorithm(algorithm)
    except ValueError as err:
        fail(str(err))
    if not 1 <= probe_modes <= 10:
        fail(f"probe modes must be in 1..10, got {probe_modes}")
    if backend.lower() not in ("auto", "numpy", "cupy"):
        fail(f"unknown backend {backend!r}: use auto, numpy or cupy")
    if frame_size < 0 or binning < 1:
        fail("frame size must be >= 0 and binning >= 1")
    if not input.exists():
        fail(f"no such file: {input}")
    try:
        data = read_cxi(input)
        rec = Reconstruction(
            data,
            algorithm=algorithm,
            probe_modes=probe_modes,
            backend=backend,
            frame_size=frame_size or None,
            binning=binning,
            threshold=threshold,
            seed=seed,
            options=EngineOptions(refine_positions=refine_positions, update_background=background),
        )
    except (CXIError, ValueError) as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    rep = getattr(rec.data, "report", {})
    if not quiet and rep:
        typer.echo(
            f"prepared {rep['frames']} frames of {rec.data.frame_size}^2: "
            f"{rep['masked_pixels']} masked pixels ({rep['saturated_pixels']} saturated, "
            f"{rep['nan_pixels']} NaN), probe from {rep['probe_source']}, "
            f"object pixel {rec.data.pixel_size_m * 1e9:.2f} nm",
            err=True,
        )
    total = rec.total_iterations
    with tqdm(total=total, desc="recon", unit="it", disable=quiet) as bar:

        def tick(r: Reconstruction) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{r.engine.algorithms[-1]} llk={r.llk[-1]:.4g}")

        result = rec.run(callback=tick)
    for msg in result.messages:
        typer.echo(f"note: {msg}", err=True)
    try:
        write_result(output, result)
    except OSError as err:
        fail(f"cannot write {output}: {err}")
    if not quiet:
        typer.echo(
            f"{output}: {result.iterations} iterations in {result.seconds:.1f} s "
            f"({result.backend}), final llk {result.llk[-1]:.4g}, "
            f"pixel {result.pixel_size_m * 1e9:.2f} nm"
        )


def register(app: typer.Typer) -> None:
    """Add the ``recon`` command to the ``sptycho`` app."""
    app.command("recon")(recon)
