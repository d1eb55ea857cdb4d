"""One Poisson maximum-likelihood iteration of the engine (Thibault & Guizar-Sicairos,
*New J. Phys.* 14, 063004 (2012), doi:10.1088/1367-2630/14/6/063004).

Preconditioned nonlinear conjugate gradient (Polak-Ribiere) on the negative Poisson
log-likelihood ``L = sum (M - I ln M)`` of object and probe, with a quadratic smoothness
penalty ``mu |D O|^2`` on the object (``D``: forward differences). The step length is a Newton
step on ``L`` along the search direction (second-order expansion, as in that paper).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from recon import kernels
from recon.backend import fft2c, ifft2c
from recon.operators import unshift_sum

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine


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


def difference_normal(xp: ModuleType, a: Any) -> Any:
    """``D^T D a`` for the forward differences ``D`` of :func:`forward_differences`.

    Minus the discrete Laplacian with reflecting borders; (H, W), the dtype of ``a``.
    """
    dy, dx = forward_differences(a)
    out = xp.zeros_like(a)
    out[1:, :] += dy
    out[:-1, :] -= dy
    out[:, 1:] += dx
    out[:, :-1] -= dx
    return out


def real_dot(xp: ModuleType, a: Any, b: Any) -> float:
    """Real part of the inner product ``<a, b> = sum conj(a) b``."""
    return float(xp.vdot(a.ravel(), b.ravel()).real)


def ml_iteration(engine: Engine) -> float:
    """One conjugate-gradient iteration on ``engine``'s object (and probe, when due).

    Returns
    -------
    normalised Poisson deviance of the model before the step (what the engine records)
    """
    xp = engine.xp
    update_probe = engine.update_probe_now()
    probes = engine.shifted_probes()
    g_o = xp.zeros(engine.obj_shape, np.complex64)
    g_pb = xp.zeros(probes.shape, np.complex64)
    den_p = xp.zeros((probes.shape[0], *engine.frame_shape), np.float32)
    deviance = 0.0
    for sl, geom in engine.chunks:
        w = engine.buffer(sl.stop - sl.start)
        kernels.exit_waves(engine.obj, probes, geom, w)
        w = fft2c(w, overwrite=True)
        deviance += kernels.ml_gradient_fourier(
            w, *engine.frame_data(sl), engine.deviance_every, sl.start
        )
        w = ifft2c(w, overwrite=True)
        kernels.backproject_object(w, probes, geom, g_o)
        kernels.backproject_probe(w, engine.obj, geom, g_pb, den_p)
    illum = engine.illumination()
    if engine.ml_state is None:
        lit = illum > 0.1 * illum.max()
        mu = engine.opts.ml_smoothing * float(xp.median(illum[lit])) if bool(lit.any()) else 0
        engine.ml_state = {"mu": mu}
    st = engine.ml_state
    mu = st["mu"]
    if mu > 0:
        g_o += np.float32(mu) * difference_normal(xp, engine.obj)
    lam_o = np.float32(1e-3 * float(illum.max()) + 1e-12)
    z_o = g_o / (illum + lam_o)
    if update_probe:
        g_p = unshift_sum(g_pb, engine.shifts, engine.unramps)
        den = engine.probe_denominator(den_p)
        lam_p = np.float32(1e-3 * float(den.max()) + 1e-12)
        z_p = g_p / (den + lam_p)
    else:
        g_p = xp.zeros_like(engine.probe)
        z_p = g_p
    gz = real_dot(xp, g_o, z_o) + real_dot(xp, g_p, z_p)
    if "d_o" in st and st["gz"] > 0:
        beta = (gz - real_dot(xp, g_o, st["z_o"]) - real_dot(xp, g_p, st["z_p"])) / st["gz"]
        beta = max(0.0, beta)
    else:
        beta = 0.0
    d_o = -z_o + np.float32(beta) * st["d_o"] if beta else -z_o
    d_p = -z_p + np.float32(beta) * st["d_p"] if beta else -z_p
    st.update(z_o=z_o, z_p=z_p, gz=gz, d_o=d_o, d_p=d_p)
    gamma = _newton_step(engine, probes, d_o, d_p, mu)
    if gamma == 0.0:  # not a descent direction: restart along the steepest descent next time
        st.pop("d_o", None)
    engine.obj = (engine.obj + np.float32(gamma) * d_o).astype(np.complex64)
    if update_probe and gamma:
        engine.probe = (engine.probe + np.float32(gamma) * d_p).astype(np.complex64)
        engine.invalidate_probe()
    return engine.record("ML", deviance)


def _newton_step(engine: Engine, probes: Any, d_o: Any, d_p: Any, mu: float) -> float:
    """Newton step ``-L'/L''`` on ``L(O + g dO, P + g dP)`` with linearised waves; 0 when the
    direction does not descend."""
    xp = engine.xp
    d_probes = engine.shift_probe_modes(d_p)
    d1 = d2 = 0.0
    for sl, geom in engine.chunks:
        m = sl.stop - sl.start
        w0 = engine.buffer(m, 0)
        dw = engine.buffer(m, 1)
        kernels.exit_waves(engine.obj, probes, geom, w0)
        kernels.exit_waves(engine.obj, d_probes, geom, dw)
        kernels.exit_waves(d_o, probes, geom, dw, accumulate=True)
        w0 = fft2c(w0, overwrite=True)
        dw = fft2c(dw, overwrite=True)
        a, b = kernels.ml_line_sums(w0, dw, *engine.frame_data(sl))
        d1 += a
        d2 += b
    if mu > 0:
        gy, gx = forward_differences(engine.obj)
        hy, hx = forward_differences(d_o)
        d1 += 2 * mu * (real_dot(xp, gy, hy) + real_dot(xp, gx, hx))
        d2 += 2 * mu * (real_dot(xp, hy, hy) + real_dot(xp, hx, hx))
    return -d1 / d2 if d2 > 0 and d1 < 0 else 0.0
