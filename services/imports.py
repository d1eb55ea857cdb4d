"""Imports of other programs' files as runs in Tiled.

* CXI files (ours or another facility's), replayed as bluesky documents so that the worker
  and the page treat them as any other run (:func:`import_cxi`);
* HERMES (SOLEIL) folders as PyNX's ``pynx-hermespty.py`` reads them, turned into CXI
  files or a run (:func:`hermes_to_cxi`, :func:`import_hermes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recon.cxi import Ptychogram, read_cxi


def import_cxi(
    paths: Sequence[str | Path],
    callback: Callable[[str, dict], Any],
    *,
    polarization: str | None = None,
    md: dict | None = None,
) -> str:
    """Replay CXI files (ours or another facility's) as one run of bluesky documents.

    Each file (``paths``: frames of one shape) is one ptychogram; the other parameters and
    the uid returned are those of :func:`import_ptychograms`.

    Raises
    ------
    recon.cxi.CXIError
        For a file that cannot be read; ValueError for frames of different shapes.
    """
    ptychograms = [read_cxi(p, truth=False) for p in paths]
    if not ptychograms:
        raise ValueError("no CXI files given")
    meta = {"imported_from": [str(Path(p)) for p in paths], **(md or {})}
    return import_ptychograms(ptychograms, callback, polarization=polarization, md=meta)


def import_ptychograms(
    ptychograms: Sequence[Ptychogram],
    callback: Callable[[str, dict], Any],
    *,
    polarization: str | None = None,
    md: dict | None = None,
) -> str:
    """Replay ptychograms as one run of bluesky documents.

    The frames are replayed in the primary stream with the positions, energy and
    polarization columns the worker reads, and the averaged dark of the first ptychogram
    (when it has one) as the ``dark`` stream.

    Parameters
    ----------
    ptychograms : frames of one shape; their polarization is set when they state none
    callback : receives ``(name, doc)``
    polarization : polarization of ptychograms that state none (default ``LH``)
    md : extra start metadata

    Returns
    -------
    the run's uid

    Raises
    ------
    ValueError
        For no ptychograms or frames of different shapes.
    """
    from services.worker.replay import raw_dark, replay

    if not ptychograms:
        raise ValueError("no ptychograms to import")
    shapes = {p.frame_shape for p in ptychograms}
    if len(shapes) > 1:
        raise ValueError(f"the files have frames of different shapes: {sorted(shapes)}")
    for p in ptychograms:
        if not p.polarization:
            p.polarization = polarization or "LH"
    dtypes = {np.dtype(p.frames.dtype) for p in ptychograms}
    if len(dtypes) > 1:
        for p in ptychograms:
            p.frames = p.frames.astype(np.float32)
    dark = raw_dark(ptychograms[0]) if ptychograms[0].dark is not None else None
    return replay(callback, list(ptychograms), dark, md=md or {})


def hermes_to_cxi(
    folder: str | Path, output: str | Path, distance_m: float, pixel_m: float, **options: Any
) -> list[Path]:
    """Convert a HERMES scan folder to CXI files, one per energy, in ``output``.

    Parameters
    ----------
    folder : the HERMES folder (see :mod:`recon.hermes`)
    output : folder of the CXI files (``p0000_192.00eV.cxi``, ...)
    distance_m, pixel_m : detector distance and pixel pitch (m), absent from HERMES files
    **options : :func:`recon.hermes.read_hermes` keywords (``scan``, ``energies_ev``...)

    Returns
    -------
    the CXI paths, in energy-file order

    Raises
    ------
    recon.hermes.HermesError
        For a folder that cannot be read (one-line message).
    """
    from recon.hermes import read_hermes
    from services.exports import export_cxi

    ptychograms = read_hermes(folder, distance_m, pixel_m, **options)
    return export_cxi(ptychograms, output)


def import_hermes(
    folder: str | Path,
    callback: Callable[[str, dict], Any],
    distance_m: float,
    pixel_m: float,
    *,
    polarization: str | None = None,
    **options: Any,
) -> str:
    """Replay a HERMES scan folder (one ptychogram per energy) as one run.

    Parameters are those of :func:`hermes_to_cxi` and :func:`import_ptychograms`.

    Returns
    -------
    the run's uid
    """
    from recon.hermes import read_hermes

    ptychograms = read_hermes(folder, distance_m, pixel_m, **options)
    meta = {"imported_from": [str(Path(folder))], "imported_layout": "hermes"}
    return import_ptychograms(ptychograms, callback, polarization=polarization, md=meta)
