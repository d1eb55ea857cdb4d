"""The line search of the maximum-likelihood engine (:mod:`recon.maximum_likelihood`).

Along a search direction ``(dO, dP)`` the exit waves are quadratic in the step ``g``::

    psi(g) = (P + g dP)(O + g dO) = psi0 + g psi1 + g^2 psi2,

``psi1 = dP O + P dO`` and ``psi2 = dP dO`` (Thibault & Guizar-Sicairos, *New J. Phys.* 14,
063004 (2012), doi:10.1088/1367-2630/14/6/063004, use the same expansion). :class:`SearchLine`
Fourier transforms the three waves once and keeps, per pixel, the coefficients of the quartic
model ``M(g)`` (:func:`recon.ml_kernels.ml_line_coefficients`), so the exact objective and its
first two derivatives at any trial step cost one element-wise pass and no FFT. Where the
coefficients of all frames would take too much memory each trial recomputes them chunk by
chunk (same numbers, three FFTs per chunk).

:func:`line_minimum` starts from the Newton step of that exact second-order expansion (or the
last accepted step scaled by the slopes, when larger), then takes safeguarded Newton steps
along the exact objective until the strong Wolfe conditions hold, never accepting a step that
does not lower the objective (Nocedal & Wright, *Numerical Optimization*, 2nd ed. (2006),
Sec. 3.1, 3.4 and 3.5). The Poisson objective is far from quadratic where the model is near
zero (a flat first object), so its Newton step from ``g = 0`` can be orders of magnitude too
short; the search grows it by up to :data:`EXPAND` per trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from recon import kernels
from recon.backend import fft2c, to_numpy
from recon.kernels import fourier_in_cache
from recon.ml_kernels import ml_coefficients_pass, ml_line_coefficients, ml_line_frames

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine

#: Sufficient-decrease constant of the Armijo condition.
ARMIJO = 1e-4
#: Curvature constant of the strong Wolfe condition (the search stops there).
WOLFE = 0.1
#: Trial steps per direction.
TRIES = 8
#: Largest growth of the step from one trial to the next while the slope stays negative.
EXPAND = 8.0


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


def line_minimum(
    evaluate: Callable[[float], tuple[float, float, float]],
    phi0: float,
    slope: float,
    g0: float,
    tries: int = TRIES,
) -> tuple[float, float]:
    """Safeguarded Newton search for a step that lowers the objective along a line.

    Accepts only steps with a finite value below ``phi0`` that satisfy the Armijo condition
    ``value(g) <= phi0 + ARMIJO g slope``; stops early at the first such step that also
    satisfies the strong Wolfe condition ``|value'(g)| <= WOLFE |slope|`` and otherwise
    returns the lowest accepted one. Each trial after the first is a Newton step from the
    last trial (a parabola through the bracket's low end where that fails), kept inside the
    bracket of the minimum or at most ``EXPAND`` times the last step while the slope stays
    negative (Nocedal & Wright, *Numerical Optimization*, 2nd ed. (2006), Sec. 3.5).

    Parameters
    ----------
    evaluate : ``g -> (value, first derivative, second derivative)`` along the line
    phi0, slope : value and (negative) derivative at ``g = 0``
    g0 : first trial step (positive; e.g. the Newton step from 0)
    tries : number of trials

    Returns
    -------
    (g, value(g)) of the accepted step, or ``(0.0, phi0)`` when no trial lowered the objective
    """
    if not (slope < 0 and g0 > 0 and math.isfinite(g0)):
        return 0.0, phi0
    best = (0.0, phi0)
    lo, v_lo, d_lo, hi = 0.0, phi0, slope, math.inf
    g = g0
    for _ in range(tries):
        v, d, c = evaluate(g)
        finite = math.isfinite(v) and math.isfinite(d)
        good = finite and v < phi0 and v <= phi0 + ARMIJO * g * slope
        if good and v < best[1]:
            best = (g, v)
        if good and v < v_lo and abs(d) <= WOLFE * -slope:
            break
        if not finite:
            hi = g
            g = lo + 0.1 * (hi - lo)
            continue
        if good and v < v_lo and d < 0:  # still descending: move the bracket's low end
            lo, v_lo, d_lo = g, v, d
            trial = g - d / c if c > 0 else g + EXPAND * g
        elif good and v < v_lo:  # past the minimum, lower: Newton (or secant) back from g
            hi = g
            trial = g - d / c if c > 0 else lo - d_lo * (g - lo) / (d - d_lo)
        else:  # overshoot: minimum of the parabola through lo (value, slope) and g (value)
            hi = g
            excess = v - v_lo - d_lo * (g - lo)
            trial = lo - d_lo * (g - lo) ** 2 / (2 * excess) if excess > 0 else lo
        if math.isfinite(hi):
            width = hi - lo
            g = min(max(trial, lo + 0.1 * width), hi - 0.1 * width)
        else:
            g = min(max(trial, 1.1 * g), EXPAND * g)
    return best


class SearchLine:
    """The ML objective along ``(O + g dO, P + g dP)`` of an engine.

    The per-pixel coefficients of the model along the line are kept for all frames when they
    take at most ``2 * EngineOptions.chunk_bytes`` (always when the frames are one chunk);
    otherwise each evaluation recomputes them chunk by chunk (three FFTs per chunk).

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
    phi0, slope, curvature, gauss_newton : objective (data + penalty), its first and second
        derivative and the Gauss-Newton part of the second derivative at ``g = 0``
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
        self.f0 = f0
        gy, gx = forward_differences(engine.obj)
        hy, hx = forward_differences(d_o)
        self.penalty = (
            mu * (real_dot(xp, gy, gy) + real_dot(xp, gx, gx)),
            mu * (real_dot(xp, gy, hy) + real_dot(xp, gx, hx)),
            mu * (real_dot(xp, hy, hy) + real_dot(xp, hx, hx)),
        )
        n_coef = 5 if d_p is not None else 3
        size = 4 * n_coef * engine.n_frames * engine.frame_shape[0] * engine.frame_shape[1]
        keep = len(engine.chunks) == 1 or size <= 2 * engine.opts.chunk_bytes
        self.coefs = [self._coefficients(sl, geom) for sl, geom in engine.chunks] if keep else None
        self.frames0 = self._frames(0.0)
        self.phi0, self.slope, self.curvature, self.gauss_newton = self._sums(0.0, self.frames0)

    def _coefficients(self, sl: slice, geom: Any) -> Any:
        """(T, m, n, n) float32 coefficients of the model along the line, frames ``sl``."""
        e = self.engine
        m = sl.stop - sl.start
        if fourier_in_cache(e.xp):  # frame by frame in cache
            return ml_coefficients_pass(e.obj, self.d_o, self.probes, self.d_probes, geom, self.f0)
        if self.f0 is not None:
            f0 = self.f0
        else:
            w0 = e.buffer(m, 0)
            kernels.exit_waves(e.obj, self.probes, geom, w0)
            f0 = fft2c(w0, overwrite=True)
        w1 = e.buffer(m, 1)
        if self.d_probes is not None:
            kernels.exit_waves(e.obj, self.d_probes, geom, w1)
        kernels.exit_waves(self.d_o, self.probes, geom, w1, accumulate=self.d_probes is not None)
        f1 = fft2c(w1, overwrite=True)
        f2 = None
        if self.d_probes is not None:
            w2 = e.buffer(m, 2)
            kernels.exit_waves(self.d_o, self.d_probes, geom, w2)
            f2 = fft2c(w2, overwrite=True)
        return ml_line_coefficients(f0, f1, f2)

    def _frames(self, g: float, relative: bool = False) -> Any:
        """(N, 4) float64 per frame: data objective (its change from ``g = 0`` when
        ``relative``), its two derivatives and the Gauss-Newton part of the second, at
        ``g``."""
        e = self.engine
        parts = []
        for i, (sl, geom) in enumerate(e.chunks):
            coef = self._coefficients(sl, geom) if self.coefs is None else self.coefs[i]
            frames = e.frame_data(sl)
            parts.append(ml_line_frames(coef, g, *frames, self.noise_model, relative))
        return parts[0] if len(parts) == 1 else e.xp.concatenate(parts)

    def _sums(self, g: float, frames: Any) -> tuple[float, float, float, float]:
        """(objective, derivative, second derivative, its Gauss-Newton part) at ``g``: the
        data sums of :meth:`_frames` plus the penalty."""
        totals = to_numpy(frames.sum(axis=0))
        p0, p1, p2 = self.penalty
        totals += (p0 + 2 * g * p1 + g * g * p2, 2 * (p1 + g * p2), 2 * p2, 2 * p2)
        return float(totals[0]), float(totals[1]), float(totals[2]), float(totals[3])

    def deviance(self, every: int) -> float:
        """Poisson deviance ``2 sum M - I + I ln(I / M)`` at ``g = 0`` of the frames whose
        index is a multiple of ``every`` (the Poisson noise model only)."""
        return 2 * float(self.frames0[::every, 0].sum())

    def evaluate(self, g: float) -> tuple[float, float, float]:
        """Exact objective (data + penalty) at step ``g`` and its first two derivatives.

        The objective is ``phi0`` plus its change from ``g = 0``, evaluated from the change
        of the model (precise for the tiny first steps from a flat object).
        """
        value, slope, curvature, _ = self._sums(g, self._frames(g, relative=True))
        p0 = self.penalty[0]
        return self.phi0 + value - p0, slope, curvature

    def newton_step(self) -> float:
        """``-slope / curvature`` (the Gauss-Newton curvature where the full one is not
        positive); 0 when the line does not descend."""
        if not self.slope < 0:
            return 0.0
        for c in (self.curvature, self.gauss_newton):
            if c > 0 and math.isfinite(c):
                return -self.slope / c
        return 0.0
