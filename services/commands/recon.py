"""``sptycho recon``: reconstruct a CXI ptychogram into a result file (HDF5).

The output is written next to its final place and renamed onto it once complete, so an
interrupted or failed run never leaves half a file; an existing output is replaced only
with ``--overwrite``, and never when it is the input itself.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import typer

from services.errors import fail
from services.validation import require_finite


class Backend(StrEnum):
    """Where the reconstruction runs."""

    auto = "auto"  # CuPy when a CUDA GPU answers, else NumPy
    numpy = "numpy"
    cupy = "cupy"


def recon(
    input: Path = typer.Argument(..., help="CXI ptychogram to reconstruct."),
    output: Path = typer.Option(..., "-o", "--output", help="Result file (HDF5) to write."),
    algorithm: str = typer.Option(
        "auto",
        "--algorithm",
        "-a",
        help="Algorithm chain, e.g. 'AP**150,ML**50' (AP, DM, RAAR, EPIE, RPIE, ML), or 'auto': "
        "chosen from the data and named in the result.",
    ),
    probe_modes: int = typer.Option(1, help="Incoherent probe modes (1-10)."),
    backend: Backend = typer.Option(
        Backend.auto,
        case_sensitive=False,
        help="auto: CuPy on a CUDA GPU when one answers, else NumPy; numpy; cupy.",
    ),
    frame_size: int = typer.Option(
        0,
        help="Crop frames to this size (pixels) around the centre; 0 keeps the whole frame.",
    ),
    binning: int = typer.Option(1, help="Bin frames by this factor after cropping."),
    threshold: float = typer.Option(0.5, help="Photons below this (>= 0) are set to 0."),
    refine_positions: bool = typer.Option(
        False, help="Refine the scan positions (every algorithm; always on with --algorithm auto)."
    ),
    background: bool = typer.Option(False, help="Refine an incoherent background."),
    seed: int = typer.Option(0, help="Seed of the initial extra probe modes (>= 0)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUTPUT if it exists (never the input file)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Reconstruct object and probe from a ptychogram and write them to OUTPUT."""
    from tqdm import tqdm

    from recon.cxi import CXIError, read_cxi
    from recon.engine_options import EngineOptions
    from recon.reconstruction import Reconstruction

    backend = Backend(backend)
    _check_options(algorithm, probe_modes, frame_size, binning, threshold, seed)
    _check_paths(input, output, overwrite)
    try:
        data = read_cxi(input)
        rec = Reconstruction(
            data,
            algorithm=algorithm,
            probe_modes=probe_modes,
            backend=backend.value,
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
    _write(output, result, overwrite)
    if not quiet:
        typer.echo(
            f"{output}: {result.iterations} iterations in {result.seconds:.1f} s "
            f"({result.backend}), final llk {result.llk[-1]:.4g}, "
            f"pixel {result.pixel_size_m * 1e9:.2f} nm"
        )


def _check_options(
    algorithm: str,
    probe_modes: int,
    frame_size: int,
    binning: int,
    threshold: float,
    seed: int,
) -> None:
    """Refuse bad reconstruction options before any file is read."""
    from recon.algorithm_chain import check_algorithm

    try:
        check_algorithm(algorithm)
    except ValueError as err:
        fail(str(err))
    if not 1 <= probe_modes <= 10:
        fail(f"probe modes must be in 1..10, got {probe_modes}")
    if frame_size < 0 or binning < 1:
        fail("frame size must be >= 0 and binning >= 1")
    require_finite(threshold=threshold)
    if threshold < 0:
        fail(f"--threshold must be >= 0 photons, got {threshold:g}")
    if seed < 0:
        fail(f"--seed must be >= 0, got {seed}")


def _check_paths(input: Path, output: Path, overwrite: bool) -> None:
    """Refuse a missing input, an output that is the input, and (without ``overwrite``) an
    existing output."""
    if not input.exists():
        fail(f"no such file: {input}")
    if input.is_dir():
        fail(f"{input} is a directory, not a CXI file")
    if not input.is_file():
        fail(f"{input} is not a regular file")
    if output.is_dir():
        fail(f"output {output} is a directory: give a file name")
    same = output.resolve() == input.resolve()
    if not same and output.exists():
        same = os.path.samefile(input, output)  # a hard link, or a path resolve() misses
    if same:
        fail(f"output {output} is the input file {input}: choose another output")
    if (output.exists() or output.is_symlink()) and not overwrite:
        fail(f"output {output} exists: pass --overwrite to replace it")


def _write(output: Path, result: object, overwrite: bool) -> None:
    """Write the result to a temporary file beside ``output``, then rename it onto ``output``."""
    from recon.reconstruction import write_result

    part = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        write_result(part, result)
        if (output.exists() or output.is_symlink()) and not overwrite:
            fail(f"output {output} appeared during the reconstruction: pass --overwrite")
        os.replace(part, output)
    except OSError as err:
        fail(f"cannot write {output}: {str(err).splitlines()[0]}")
    finally:
        part.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    """Add the ``recon`` command to the ``sptycho`` app."""
    app.command("recon")(recon)
