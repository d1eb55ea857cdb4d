"""The line search of the maximum-likelihood engine (:mod:`recon.maximum_likelihood`).

Along a search direction ``(dO, dP)`` the exit waves are quadratic in the step ``g``::

    psi(g) = (P + g dP)(O + g dO) = psi0 + g psi1 + g^2 psi2,

``psi1 = dP O + P dO`` and ``psi2 = dP dO`` (Thibault & Guizar-Sicairos, *New J. Phys.* 14,
063004 (2012), doi:10.1088/1367-2630/14/6/063004, keep the same expansion). :class:`SearchLine`
Fourier transforms the three waves once and keeps, per pixel, the coefficients of the quartic
model ``M(g)`` (:func:`recon.ml_kernels.ml_line_coefficients`), so the exact objective at any
trial step costs one element-wise pass and no FFT. When the frames do not fit in one chunk the
coefficients are not kept and each trial is a forward pass of the trial object and probe.

:func:`backtrack` starts from the Newton step of the second-order expansion (``psi2``
included) and halves it, or better interpolates, until the Armijo condition holds (Nocedal &
Wright, *Numerical Optimization*, 2nd ed. (2006), Sec. 3.1 and 3.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from recon import kernels
from recon.backend import fft2c
from recon.ml_kernels import ml_line_coefficients, ml_line_values

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine

#: Sufficient-decrease constant of the Armijo condition.
ARMIJO = 1e-4
#: Trial steps per direction before giving up on it.
TRIES = 8


def forward_differences(a: Any) -> tuple[Any, Any]:
    """Non-periodic forward differences of a 2-D array along rows and columns.

    Parameters
    ----------
    a : (H, W) array (any dtype)

    Returns
    -------
    dy : (H - 1, W) ``a[i + 1, j] - a[i, j]``
    dx : (H, W - 1) ``a[i, j + 1] - a[i, j]``
    """
    return a[1:, :] - a[:-1, :], a[:, 1:] - a[:, :-1]


def real_dot(xp: ModuleType, a: Any, b: Any) -> float:
    """Real part of the inner product ``<a, b> = sum conj(a) b`` (0 when either is None)."""
    if a is None or b is None:
        return 0.0
    return float(xp.vdot(a.ravel(), b.ravel()).real)


def backtrack(
    value: Callable[[float], float],
    phi0: float,
    slope: float,
    g0: float,
    tries: int = TRIES,
    armijo: float = ARMIJO,
) -> tuple[float, float]:
    """Backtracking line search from step ``g0`` that only accepts a decrease.

    A trial ``g`` is accepted when ``value(g)`` is finite, below ``phi0`` and satisfies the
    Armijo condition ``value(g) <= phi0 + armijo g slope``. Otherwise the next trial is the
    minimiser of the parabola through ``phi0``, ``slope`` and ``value(g)``, kept within
    ``[g / 10, g / 2]`` (``g / 10`` after a non-finite value).

    Parameters
    ----------
    value : the objective along the line, ``value(0) == phi0``
    phi0 : objective at ``g = 0``
    slope : derivative at ``g = 0`` (must be negative)
    g0 : first trial step (positive)
    tries : trial steps before giving up

    Returns
    -------
    (g, value(g)) of the accepted step, or ``(0.0, phi0)`` when none lowered the objective
    """
    if not (slope < 0 and g0 > 0 and math.isfinite(g0)):
        return 0.0, phi0
    g = g0
    for _ in range(tries):
        v = value(g)
        if math.isfinite(v) and v < phi0 and v <= phi0 + armijo * g * slope:
            return g, v
        excess = v - phi0 - slope * g
        if math.isfinite(v) and excess > 0:
            g = min(max(-slope * g * g / (2 * excess), 0.1 * g), 0.5 * g)
        else:
            g *= 0.1
    return 0.0, phi0


class SearchLine:
    """The ML objective along ``(O + g dO, P + g dP)`` of an engine.

    Parameters
    ----------
    engine : the engine (its object and probe are the line's origin)
    probes : (B, K, n, n) complex64 shifted probe modes of ``engine.probe``
    d_o : (H, W) complex64 object direction
    d_p : (K, n, n) complex64 probe direction, or None (probe fixed)
    mu : weight of the smoothness penalty ``mu |D O|^2``
    f0 : (N, K, n, n) complex64 Fourier-space exit waves of all frames (one chunk), or None
        to compute them chunk by chunk

    Attributes
    ----------
    phi0, slope, curvature, gauss_newton : objective (data + penalty), first and second
        derivative, and the Gauss-Newton part of the second derivative at ``g = 0``
    """

    def __init__(
        self, engine: Engine, probes: Any, d_o: Any, d_p: Any, mu: float, f0: Any = None
    ) -> None:
        xp = engine.xp
        self.engine = engine
        self.noise_model = engine.opts.noise_model
        self.probes = probes
        self.d_o = d_o
        self.d_probes = None if d_p is None else engine.shift_probe_modes(d_p)
        gy, gx = forward_differences(engine.obj)
        hy, hx = forward_differences(d_o)
        self.penalty = (
            mu * (real_dot(xp, gy, gy) + real_dot(xp, gx, gx)),
            mu * (real_dot(xp, gy, hy) + real_dot(xp, gx, hx)),
            mu * (real_dot(xp, hy, hy) + real_dot(xp, hx, hx)),
        )
        self.coef = None
        totals = np.zeros(4)
        for sl, geom in engine.chunks:
            m = sl.stop - sl.start
            if f0 is None:
                w0 = engine.buffer(m, 0)
                kernels.exit_waves(engine.obj, probes, geom, w0)
                f0_chunk = fft2c(w0, overwrite=True)
            else:
                f0_chunk = f0
            f1, f2 = self._direction_waves(geom, m)
            coef = ml_line_coefficients(f0_chunk, f1, f2)
            totals += ml_line_values(coef, 0.0, *engine.frame_data(sl), self.noise_model)
            if f0 is not None:
                self.coef = coef
        p0, p1, p2 = self.penalty
        self.phi0 = float(totals[0]) + p0
        self.slope = float(totals[1]) + 2 * p1
        self.curvature = float(totals[2]) + 2 * p2
        self.gauss_newton = float(totals[3]) + 2 * p2

    def _direction_waves(self, geom: Any, m: int) -> tuple[Any, Any]:
        """Fourier transforms of ``psi1 = dP O + P dO`` and ``psi2 = dP dO`` (None when the
        probe is fixed) of one chunk's frames."""
        e = self.engine
        w1 = e.buffer(m, 1)
        if self.d_probes is not None:
            kernels.exit_waves(e.obj, self.d_probes, geom, w1)
        kernels.exit_waves(self.d_o, self.probes, geom, w1, accumulate=self.d_probes is not None)
        f1 = fft2c(w1, overwrite=True)
        if self.d_probes is None:
            return f1, None
        w2 = e.buffer(m, 2)
        kernels.exit_waves(self.d_o, self.d_probes, geom, w2)
        return f1, fft2c(w2, overwrite=True)

    def newton_step(self) -> float:
        """``-slope / curvature`` (the Gauss-Newton curvature where the full one is not
        positive); 0 when the line does not descend."""
        if not self.slope < 0:
            return 0.0
        for c in (self.curvature, self.gauss_newton):
            if c > 0 and math.isfinite(c):
                return -self.slope / c
        return 0.0

    def value(self, g: float) -> float:
        """Exact objective (data + penalty) at step ``g``."""
        e = self.engine
        p0, p1, p2 = self.penalty
        penalty = p0 + 2 * g * p1 + g * g * p2
        if self.coef is not None:
            frames = e.frame_data(slice(0, e.n_frames))
            return ml_line_values(self.coef, g, *frames, self.noise_model)[0] + penalty
        obj, probes = self.trial(g)
        data = 0.0
        for sl, geom in e.chunks:
            w = e.buffer(sl.stop - sl.start, 0)
            kernels.exit_waves(obj, probes, geom, w)
            coef = ml_line_coefficients(fft2c(w, overwrite=True))
            data += ml_line_values(coef, 0.0, *e.frame_data(sl), self.noise_model)[0]
        return data + penalty

    def trial(self, g: float) -> tuple[Any, Any]:
        """(H, W) object and (B, K, n, n) shifted probes at step ``g`` (complex64)."""
        gg = np.float32(g)
        obj = (self.engine.obj + gg * self.d_o).astype(np.complex64)
        if self.d_probes is None:
            return obj, self.probes
        return obj, (self.probes + gg * self.d_probes).astype(np.complex64)
