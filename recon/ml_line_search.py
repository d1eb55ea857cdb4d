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
