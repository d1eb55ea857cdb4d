"""Sample models of Vijayakumar et al., "Soft X-ray spectro-ptychography" at the HERMES
beamline, J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955, Sec. 2-3: Siemens
star, BN nanobamboo, CNT bundles, permalloy rods.

Each sample is a seeded list of analytic 3-D primitives (cylinders, shells, cones, capsules,
wedges) in metres; ``transmission`` projects them onto any pixel grid, so a stack whose
object pixel ``lambda z / (N p)`` changes with energy shows the same sample at every energy.

Modules: :mod:`~simulators.samples.base` (``Sample``, ``Layer``, projection),
:mod:`~simulators.samples.rods` (rod placement), :mod:`~simulators.samples.lacy`,
:mod:`~simulators.samples.siemens`, :mod:`~simulators.samples.tubes`,
:mod:`~simulators.samples.permalloy` (the sample families) and
:mod:`~simulators.samples.registry` (``make_sample``).
"""

from simulators.samples.base import (
    LABEL_BACKGROUND,
    LABEL_HORIZONTAL,
    LABEL_OBLIQUE,
    LABEL_VERTICAL,
    Layer,
    Sample,
)
from simulators.samples.permalloy import PermalloyRods
from simulators.samples.registry import EDGE_ENERGY_EV, SAMPLES, make_sample
from simulators.samples.siemens import SiemensStar
from simulators.samples.tubes import BNBamboo, CNTBundle

__all__ = [
    "EDGE_ENERGY_EV",
    "LABEL_BACKGROUND",
    "LABEL_HORIZONTAL",
    "LABEL_OBLIQUE",
    "LABEL_VERTICAL",
    "SAMPLES",
    "BNBamboo",
    "CNTBundle",
    "Layer",
    "PermalloyRods",
    "Sample",
    "SiemensStar",
    "make_sample",
]
