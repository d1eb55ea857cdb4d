"""Command-line options that several ``sptycho`` commands share, defined once.

Each is a ``typer.Option`` to use as a parameter default, e.g.
``spot: float = SCAN_OPTIONS["spot"]``; the same text then appears in every ``--help``.
"""

from __future__ import annotations

import typer

#: Beam and scan geometry of one ptychogram (``scan raster``, ``scan stack``, ``simulate``).
SCAN_OPTIONS = dict(
    energy=typer.Option(192.0, help="Photon energy (eV), 100-2000."),
    polarization=typer.Option("LH", help="LH, LV, CL or CR."),
    spot=typer.Option(1e-6, help="Spot diameter 2R on the sample (m)."),
    overlap=typer.Option(0.9, help="Overlap O = 1 - d/2r, in [0, 1)."),
    area=typer.Option(2e-6, help="Side of the square scan area (m)."),
    exposure=typer.Option(0.1, help="Exposure per point (s)."),
)
