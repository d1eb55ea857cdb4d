"""Focus search: the defocus of the probe model, chosen by the data.

The far-field intensity of a zone-plate probe does not depend on its defocus (only the phase
of its spectrum does), so on a weak scatterer the data say little about the probe's curvature
and a model that is out of focus by 10-20 % takes hundreds of iterations to correct, if it is
corrected at all (a defocus error and a scaling of the scan are nearly interchangeable,
Fresnel's scaling theorem). The deviance after a few AP iterations, however, does tell the
right defocus apart clearly. :func:`search_focus` propagates the starting probe over a range
of distances (angular spectrum), runs a short AP on each from a flat object, fits a parabola
through the best and its neighbours and returns the distance with the lowest deviance; what a
beamline scientist does by hand with a focus series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recon.algorithms import Engine
from recon.backend import fft2c, get_xp, ifft2c, to_numpy
from recon.probe import angular_spectrum


def propagate_probe(probe: Any, dz_m: float, wavelength_m: float, pixel_m: float) -> Any:
    """Angular-spectrum propagation of centred probe modes by ``dz_m`` (downstream > 0).

    Parameters
    ----------
    probe : (K, n, n) complex64 centred probe modes (NumPy or CuPy)
    dz_m : distance (m)
    wavelength_m, pixel_m : wavelength and sample-plane pixel size (m)

    Returns
    -------
    (K, n, n) complex64, same array module, same total intensity
    """
    xp = get_xp(probe)
    n_y, n_x = probe.shape[-2:]
    ky = xp.fft.fftfreq(n_y, d=pixel_m)[:, None]
    kx = xp.fft.fftfreq(n_x, d=pixel_m)[None, :]
    transfer = angular_spectrum(ky**2 + kx**2, wavelength_m, dz_m, xp).astype(np.complex64)
    spec = fft2c(xp.fft.ifftshift(probe, axes=(-2, -1)))
    return xp.fft.fftshift(ifft2c(spec * transfer), axes=(-2, -1)).astype(np.complex64)


@dataclass
class FocusResult:
    """What :func:`search_focus` found.

    Attributes
    ----------
    dz_m : chosen propagation of the starting probe (m)
    deviance : deviance after the short AP at ``dz_m``
    deviance_at_zero : the same for the probe model as given
    tried : (distance, deviance) of every candidate, in the order tried
    """

    dz_m: float
    deviance: float
    deviance_at_zero: float
    tried: list[tuple[float, float]]

    def message(self) -> str:
        return (
            f"focus search: probe model moved by {self.dz_m * 1e6:+.3f} um "
            f"(deviance after a short AP {self.deviance_at_zero:.4g} -> {self.deviance:.4g}, "
            f"{len(self.tried)} distances tried)"
        )


def parabola_vertex(x0: float, x1: float, x2: float, f: dict[float, float]) -> float:
    """Abscissa of the vertex of the parabola through ``(x, f[x])``, clipped to [x0, x2]
    (``x1`` when the parabola opens downwards)."""
    y0, y1, y2 = f[x0], f[x1], f[x2]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
    if not a > 0:
        return x1
    return float(np.clip(-b / (2 * a), x0, x2))


def central_frames(corners_px: Any, at_most: int) -> np.ndarray:
    """Indices of the ``at_most`` frames nearest the middle of the scan (all if fewer)."""
    pos = np.asarray(corners_px, np.float64)
    if len(pos) <= at_most:
        return np.arange(len(pos))
    d = ((pos - np.median(pos, axis=0)) ** 2).sum(axis=1)
    return np.sort(np.argsort(d, kind="stable")[:at_most])


def search_focus(
    engine: Engine,
    half_range_m: float,
    wavelength_m: float,
    pixel_m: float,
    iterations: int = 20,
    max_frames: int = 100,
    refinements: int = 3,
) -> FocusResult:
    """Choose the propagation of ``engine``'s probe that fits the data best.

    Candidates are ``0, +-half_range/2, +-half_range``, then, up to ``refinements`` times,
    the vertex of the parabola through the best and its two neighbours (or one step of
    ``half_range/2`` further out when the best is at an end, up to three half ranges). Each
    runs ``iterations`` AP iterations (probe updates from the second, positions not refined)
    from a flat object, on the ``max_frames`` frames nearest the middle of the scan.
    ``engine`` itself is not changed.

    Parameters
    ----------
    engine : the engine whose frames, geometry and starting probe are used
    half_range_m : largest distance tried either side (m)
    wavelength_m, pixel_m : wavelength and object pixel size (m)
    iterations : AP iterations per candidate
    max_frames : frames used per candidate
    refinements : further candidates after the first five

    Returns
    -------
    FocusResult
    """
    xp = engine.xp
    pick = xp.asarray(central_frames(to_numpy(engine.corners_px), max_frames))
    probe0 = engine.probe
    opts = replace(engine.opts, refine_positions=False, probe_update_start=1)
    scores: dict[float, float] = {}

    def score(dz: float) -> float:
        if dz not in scores:
            trial = Engine(
                engine.inten[pick],
                engine.corners_px[pick],
                propagate_probe(probe0, dz, wavelength_m, pixel_m),
                engine.obj_shape,
                mask=~engine.good,
                background=engine.bg,
                scale=engine.scale[pick],
                options=opts,
            )
            for _ in range(iterations):
                trial.iterate("AP")
            value = trial.deviance[-1]
            scores[dz] = value if math.isfinite(value) else math.inf
        return scores[dz]

    step = 0.5 * half_range_m
    for dz in (0.0, -step, step, -2 * step, 2 * step):
        score(dz)
    for _ in range(refinements):
        ordered = sorted(scores)
        best = min(ordered, key=scores.__getitem__)
        i = ordered.index(best)
        if i in (0, len(ordered) - 1):  # the best is at an end: look one step further out
            new = best + (step if i else -step)
            if abs(new) > 3 * half_range_m:
                break
        else:
            new = parabola_vertex(*ordered[i - 1 : i + 2], scores)
            if min(abs(new - x) for x in ordered) < 0.02 * half_range_m:
                break
        score(new)
    best = min(scores, key=scores.__getitem__)
    return FocusResult(best, scores[best], scores[0.0], list(scores.items()))
