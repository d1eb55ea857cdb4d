"""``--algorithm auto``: an algorithm chain chosen from the data, and why.

Three numbers describe what a data set needs (:func:`measure`):

* **photons per frame** (median over the frames): below ~1e5 photons the Poisson
  maximum-likelihood refinement gains most over the projections' implicit Gaussian model;
* **scattering strength**: the rms variation of the frames about their mean, relative to the
  mean pattern, with the Poisson part of the variance removed. A weak scatterer (thin, soft
  X-rays off the edge) gives nearly the same diffraction pattern at every position; a strong
  one changes it from frame to frame;
* **overlap**: ``1 - step / spot`` (the paper's definition), from the median nearest-neighbour
  distance of the positions and the diameter of the probe model's bright region.

The rule (:func:`choose_chain`) starts from the paper's finding (Vijayakumar et al., *J.
Synchrotron Rad.* 30 (2023), doi:10.1107/S1600577523000955): alternating projections for weak
scatterers, where the difference map wanders. Strong scatterers start with RAAR (a damped
difference map, with the divergence guard) to leave the local minima AP can stall in, then a
few AP iterations. The projections only bring the object and probe near the answer: every
chain ends with 100 iterations of Poisson maximum likelihood (150 below 1e5 photons per frame),
which is where the best results come from (on the project's simulated weak 192 eV data with a
probe model 15 % out of focus and 20 nm position errors: phase correlation 0.89 after AP**100,
0.96-0.97 after AP**50,ML**100). Above 1e6 photons per frame ML runs without its smoothness
prior; every chain refines the scan positions; less overlap gets more projections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from recon.backend import get_xp, to_numpy
from recon.probe_focus import central_frames

#: Scattering strength above which the data count as strongly scattering.
STRONG_SCATTERING = 0.3
#: Photons per frame below which ML gets more iterations.
FEW_PHOTONS = 1e5
#: Frames (nearest the middle of the scan) the photons and scattering strength come from.
MEASURED_FRAMES = 128
#: Photons per frame above which ML runs without its smoothness prior.
MANY_PHOTONS = 1e6


@dataclass
class DataMeasures:
    """What :func:`choose_chain` looks at (see the module docstring)."""

    photons_per_frame: float
    scattering_strength: float
    overlap: float
    frames: int


@dataclass
class AutoChoice:
    """A chosen chain, the engine options it sets (:class:`recon.engine_options.EngineOptions`
    fields), and the reasons in words."""

    chain: str
    options: dict[str, Any]
    measures: DataMeasures
    reasons: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One line for the result's messages."""
        return f"auto: chose {self.chain} ({'; '.join(self.reasons)})"


def scattering_strength(intensities: np.ndarray, good: np.ndarray) -> float:
    """Rms frame-to-frame variation of the patterns relative to their mean, noise removed.

    Parameters
    ----------
    intensities : (N, n, n) float32 photons
    good : (n, n) bool, True on usable pixels

    Returns
    -------
    ``sqrt(max(0, sum_x (var_x - mean_x)) / sum_x mean_x^2)`` over good pixels (Poisson
    variance equals the mean, so pure noise gives about 0)
    """
    frames = np.asarray(intensities, np.float32)[:, good]
    mean = frames.mean(axis=0, dtype=np.float64)
    excess = float((frames.var(axis=0, dtype=np.float64) - mean).sum())
    return float(np.sqrt(max(0.0, excess) / max(float((mean**2).sum()), 1e-30)))


def scan_overlap(corners_px: np.ndarray, probe: np.ndarray) -> float:
    """``1 - step / spot``: median nearest-neighbour step over the probe's bright diameter.

    Parameters
    ----------
    corners_px : (N, 2) float positions (pixels)
    probe : (K, n, n) complex probe modes

    Returns
    -------
    overlap (1 for a single position; negative when the steps exceed the spot)
    """
    pos = np.asarray(corners_px, np.float64)
    if len(pos) < 2:
        return 1.0
    distances, _ = cKDTree(pos).query(pos, k=2)
    step = float(np.median(distances[:, 1]))
    power = (np.abs(np.asarray(probe)) ** 2).sum(axis=0)
    bright = int((power >= 0.1 * power.max()).sum())
    spot = 2.0 * np.sqrt(bright / np.pi)
    return 1.0 - step / max(spot, 1e-12)


def measure(intensities: Any, mask: Any, corners_px: Any, probe: Any) -> DataMeasures:
    """The numbers :func:`choose_chain` decides on.

    Photons and scattering strength come from the :data:`MEASURED_FRAMES` frames nearest the
    middle of the scan, the overlap from all positions (k-d tree): the cost is bounded.

    Parameters
    ----------
    intensities : (N, n, n) float32 photons (NumPy or CuPy: only the measured frames are
        copied to the host)
    mask : (n, n) bool, True on bad pixels (NumPy)
    corners_px : (N, 2) float patch corners (pixels, NumPy)
    probe : (K, n, n) complex64 probe model (NumPy)
    """
    pick = central_frames(corners_px, MEASURED_FRAMES)
    inten = to_numpy(intensities[get_xp(intensities).asarray(pick)])  # only these leave a GPU
    good = ~np.asarray(mask, bool)
    photons = float(np.median(inten[:, good].sum(axis=1))) if len(inten) else 0.0
    return DataMeasures(
        photons_per_frame=photons,
        scattering_strength=scattering_strength(inten, good) if len(inten) > 1 else 0.0,
        overlap=scan_overlap(corners_px, probe),
        frames=len(corners_px),
    )


def choose_chain(m: DataMeasures) -> AutoChoice:
    """The chain for data described by ``m`` (rule in the module docstring)."""
    reasons = []
    sparse = m.overlap < 0.6
    steps = []
    if m.scattering_strength >= STRONG_SCATTERING:
        steps += ["RAAR**60", "AP**30"] if sparse else ["RAAR**40", "AP**20"]
        reasons.append(f"strong scatterer (strength {m.scattering_strength:.2f}): RAAR, then AP")
    else:
        steps.append("AP**100" if sparse else "AP**50")
        reasons.append(f"weak scatterer (strength {m.scattering_strength:.2f}): AP, no DM")
    reasons.append(f"overlap {m.overlap:.2f}{': more projections' if sparse else ''}")
    n_ml = 150 if m.photons_per_frame < FEW_PHOTONS else 100
    steps.append(f"ML**{n_ml}")
    options: dict[str, Any] = {"refine_positions": True}
    note = ""
    if m.photons_per_frame >= MANY_PHOTONS:
        options["ml_smoothing"] = 0.0
        note = ", no smoothing prior"
    reasons.append(f"{m.photons_per_frame:.3g} photons per frame: ML**{n_ml}{note}")
    reasons.append("positions refined")
    return AutoChoice(",".join(steps), options, m, reasons)
