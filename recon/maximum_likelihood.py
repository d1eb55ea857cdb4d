"""One maximum-likelihood iteration of the engine (Thibault & Guizar-Sicairos, *New J. Phys.*
14, 063004 (2012), doi:10.1088/1367-2630/14/6/063004).

Preconditioned nonlinear conjugate gradient (Polak-Ribiere+, restarted when ``beta < 0``) on
the negative log-likelihood of object and probe plus a quadratic smoothness penalty ``mu |D
O|^2`` on the object (``D``: forward differences). The likelihood is Poisson, ``L = sum (M - I
ln M)``, or Gaussian on the amplitudes, ``L = sum (sqrt M - sqrt I)^2``
(:attr:`EngineOptions.noise_model`; :mod:`recon.ml_kernels`). The preconditioners are the
diagonals of the Gauss-Newton normal operators: ``sum |P|^2`` (plus the penalty's ``4 mu``) for
the object and ``sum |O|^2`` for the probe.

Every accepted step lowers the objective: :mod:`recon.ml_line_search` evaluates the exact
objective along the line (the ``dP dO`` term of the exit waves included) and accepts only a
sufficient decrease. When the conjugate direction finds none the iteration retries along the
preconditioned steepest descent; when that fails too the state is left unchanged. After the
step the object amplitude is clipped to :attr:`EngineOptions.max_object_amplitude` (when set)
and every :attr:`EngineOptions.ml_orthogonalize_every` iterations the probe modes are
orthogonalised (:func:`recon.probe_modes.orthogonalize_modes`, which leaves the model
unchanged), restarting the conjugate directions; the clip is outside the descent guarantee.

The engine keeps the search history in ``engine.ml_state``, a dict: ``mu`` and, after an
iteration, ``d_o``, ``d_p``, ``z_o``, ``z_p``, ``gz``, ``probe_on`` (the directions), ``step``,
``last_slope`` (the last line search) and ``objective`` (its value at the iteration's start).
Any key but ``mu`` may be missing (after a position refinement, say): the iteration then
restarts along the steepest descent.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from recon import kernels
from recon.ml_kernels import is_gaussian, ml_gradient_pass
from recon.ml_line_search import SearchLine, forward_differences, line_minimum, real_dot
from recon.operators import unshift_sum
from recon.probe_modes import orthogonalize_modes

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine

__all__ = ["difference_normal", "forward_differences", "ml_iteration", "real_dot"]


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


def ml_iteration(engine: Engine) -> float:
    """One conjugate-gradient iteration on ``engine``'s object (and probe, when due).

    Returns
    -------
    normalised Poisson deviance of the model at the start of the iteration (what the engine
    records, whatever the noise model)

    Raises
    ------
    ValueError
        for an unknown :attr:`EngineOptions.noise_model`
    """
    xp = engine.xp
    gaussian = is_gaussian(engine.opts.noise_model)
    update_probe = engine.update_probe_now()
    probes = engine.shifted_probes()
    st = _state(engine)
    deviance, g_o, g_p, den_p, f0 = _gradient(engine, probes, update_probe, gaussian)
    mu = st["mu"]
    if mu > 0:
        g_o += np.float32(mu) * difference_normal(xp, engine.obj)
    illum = engine.illumination()
    z_o = g_o / (illum + np.float32(1e-3 * float(illum.max()) + 4 * mu + 1e-12))
    z_p = None
    if update_probe:
        den = engine.probe_denominator(den_p)
        z_p = g_p / (den + np.float32(1e-3 * float(den.max()) + 1e-12))
    gz = real_dot(xp, g_o, z_o) + real_dot(xp, g_p, z_p)
    beta = 0.0
    if "d_o" in st and st.get("probe_on") == update_probe and st.get("gz", 0) > 0:
        beta = (gz - real_dot(xp, g_o, st["z_o"]) - real_dot(xp, g_p, st.get("z_p"))) / st["gz"]
        beta = max(0.0, beta)  # Polak-Ribiere+, restart when negative
    d_o, d_p = _direction(z_o, z_p, st, beta)
    if beta and real_dot(xp, g_o, d_o) + real_dot(xp, g_p, d_p) >= 0:
        beta = 0.0  # not a descent direction: steepest descent instead
        d_o, d_p = _direction(z_o, z_p, st, beta)
    while True:
        line = SearchLine(engine, probes, d_o, d_p, mu, f0)
        g0 = line.newton_step()
        if st.get("step", 0) > 0:  # the last step, scaled to the same first-order gain
            g0 = max(g0, st["step"] * st["last_slope"] / line.slope)
        gamma, _ = line_minimum(line.evaluate, line.phi0, line.slope, g0)
        if gamma > 0 or beta == 0:
            break
        beta = 0.0  # safeguarded restart along the preconditioned steepest descent
        d_o, d_p = _direction(z_o, z_p, st, beta)
    if not gaussian:
        deviance = line.deviance(engine.deviance_every)
    st.update(z_o=z_o, z_p=z_p, gz=gz, d_o=d_o, d_p=d_p, probe_on=update_probe)
    st.update(objective=line.phi0, step=gamma, last_slope=line.slope)
    if gamma > 0:
        _take_step(engine, gamma, d_o, d_p)
    else:  # no decrease along either direction: keep the state, restart next time
        st.pop("d_o", None)
    return engine.record("ML", deviance)


def _state(engine: Engine) -> dict:
    """``engine.ml_state``, created (with the smoothing weight ``mu``) when missing."""
    st = engine.ml_state if engine.ml_state is not None else {}
    if "mu" not in st:
        xp = engine.xp
        illum = engine.illumination()
        lit = illum > 0.1 * illum.max()
        med = float(xp.median(illum[lit])) if bool(lit.any()) else 0.0
        st["mu"] = engine.opts.ml_smoothing * med
    engine.ml_state = st
    return st


def _direction(z_o: Any, z_p: Any, st: dict, beta: float) -> tuple[Any, Any]:
    """Search direction ``-z + beta d_previous`` of object and probe (probe None if fixed)."""
    if not beta:
        return -z_o, None if z_p is None else -z_p
    b = np.float32(beta)
    d_p = None if z_p is None else -z_p + b * st["d_p"]
    return -z_o + b * st["d_o"], d_p


def _gradient(engine: Engine, probes: Any, update_probe: bool, gaussian: bool) -> tuple:
    """Gradients of the data term (Wirtinger, ``dL/dconj``) of the noise model.

    Returns
    -------
    deviance : unnormalised Poisson deviance of the frames the engine records (``gaussian``
        only; 0.0 for Poisson, whose line search gives it)
    g_o : (H, W) complex64 object gradient
    g_p : (K, n, n) complex64 probe gradient, or None when ``update_probe`` is False
    den_p : (B, n, n) float32 ``sum |O|^2`` per shift bin (probe preconditioner), or None
    f0 : (N, K, n, n) complex64 Fourier exit waves when all frames are one chunk, else None
    """
    xp = engine.xp
    one_chunk = len(engine.chunks) == 1
    g_o = xp.zeros(engine.obj_shape, np.complex64)
    g_pb = den_p = None
    if update_probe:
        g_pb = xp.zeros(probes.shape, np.complex64)
        den_p = xp.zeros((probes.shape[0], *engine.frame_shape), np.float32)
    deviance = 0.0
    f0 = None
    for sl, geom in engine.chunks:
        m = sl.stop - sl.start
        dev, f0, grad = ml_gradient_pass(
            engine.obj,
            probes,
            geom,
            engine.buffer(m, 0),
            engine.buffer(m, 1) if one_chunk else None,  # keep f0 for the line search
            *engine.frame_data(sl),
            "gaussian" if gaussian else "poisson",
            engine.deviance_every if gaussian else 0,
            sl.start,
        )
        deviance += dev
        kernels.backproject_object(grad, probes, geom, g_o)
        if update_probe:
            kernels.backproject_probe(grad, engine.obj, geom, g_pb, den_p)
    g_p = None if g_pb is None else unshift_sum(g_pb, engine.shifts, engine.unramps)
    return deviance, g_o, g_p, den_p, f0 if one_chunk else None


def _take_step(engine: Engine, gamma: float, d_o: Any, d_p: Any) -> None:
    """Move along the accepted step, then clip the object amplitude and orthogonalise the
    probe modes when due (which restarts the conjugate directions)."""
    xp = engine.xp
    g = np.float32(gamma)
    engine.obj = (engine.obj + g * d_o).astype(np.complex64)
    amax = engine.opts.max_object_amplitude
    if amax is not None:
        amp = xp.abs(engine.obj)
        engine.obj *= xp.minimum(1, amax / xp.maximum(amp, 1e-12)).astype(np.float32)
    if d_p is None:
        return
    engine.probe = (engine.probe + g * d_p).astype(np.complex64)
    every = engine.opts.ml_orthogonalize_every
    if engine.n_modes > 1 and every > 0 and (engine.iteration + 1) % every == 0:
        engine.probe = xp.ascontiguousarray(orthogonalize_modes(engine.probe))
        engine.ml_state.pop("d_o", None)
    engine.invalidate_probe()
