"""The projection family: AP, DM and RAAR as one update with coefficients.

Every iteration forms the model waves ``w = F(P O_j)`` from the current object and probe (the
overlap projection of the last iterate), then updates the Fourier-space iterate ``x``::

    x <- cx x + cw w + cf P_F((1 + alpha) w - alpha x)

and fits the object and probe to ``x`` by least squares. ``P_F`` is the modulus projection.

=========  =======  ========  ==========  ======
algorithm  alpha    cx        cw          cf
=========  =======  ========  ==========  ======
AP         0        0         0           1
DM         1        1         -1          1
RAAR       1        beta      1 - 2 beta  beta
=========  =======  ========  ==========  ======

AP (Marchesini et al., *Inverse Problems* 32, 044003 (2016)) keeps no iterate: ``x = P_F(w)``.
DM is Thibault et al., *Ultramicroscopy* 109, 338 (2009); RAAR is Luke's (*Inverse Problems*
21, 37 (2005)) with the two constraints in the order where ``beta = 1`` is Thibault's DM:
``x <- beta/2 (R_F R_O + 1) x + (1 - beta) P_O x`` (``R = 2 P - 1``, overlap projection
``P_O`` applied first). The same
update with ``EngineOptions.raar_beta`` between 0.5 and 1 damps DM's wandering on weak
scatterers.

The object is fitted first and the probe then to the *same* waves with the updated object
(alternating least squares). With several chunks the waves of the probe update are
re-computed from the object and probe of the start of the iteration, so the result does not
depend on ``EngineOptions.chunk_bytes``.

The Fourier side of an iteration (exit waves, FFT, the update above, inverse FFT) is one call,
:func:`recon.kernels.fourier_pass`: frame by frame in cache on the CPU, four stack steps on
the GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recon import kernels
from recon.backend import fft2c, ifft2c

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine

#: Algorithms of the family.
NAMES = ("AP", "DM", "RAAR")


def coefficients(name: str, raar_beta: float = 0.75) -> tuple[float, float, float, float]:
    """``(alpha, cx, cw, cf)`` of the family update for algorithm ``name``.

    Raises
    ------
    ValueError
        For a name outside :data:`NAMES`.
    """
    name = name.upper()
    if name == "AP":
        return (0.0, 0.0, 0.0, 1.0)
    if name == "DM":
        return (1.0, 1.0, -1.0, 1.0)
    if name == "RAAR":
        b = float(raar_beta)
        return (1.0, b, 1.0 - 2.0 * b, b)
    raise ValueError(f"{name!r} is not in the projection family {NAMES}")


def _start_iterate(engine: Engine) -> None:
    """``x = F(P O_j)`` for every frame: the iterate of DM and RAAR at their start."""
    xp = engine.xp
    engine._psi = xp.empty((engine.n_frames, engine.n_modes, *engine.frame_shape), np.complex64)
    probes = engine.shifted_probes()
    for sl, geom in engine.chunks:
        kernels.exit_waves(engine.obj, probes, geom, engine._psi[sl])
        engine._psi[sl] = fft2c(engine._psi[sl], overwrite=True)


def projection_iteration(engine: Engine, name: str) -> float:
    """One iteration of AP, DM or RAAR on ``engine``.

    Returns
    -------
    the model's normalised Poisson deviance at the start of the iteration
    """
    xp = engine.xp
    name = name.upper()
    coefs = coefficients(name, engine.opts.raar_beta)
    keeps_iterate = name != "AP"
    if keeps_iterate and engine._psi is None:
        _start_iterate(engine)
    if not keeps_iterate:
        engine._psi = None
    engine.ensure_background()
    update_probe = engine.update_probe_now()
    probes = engine.shifted_probes()
    obj_before = engine.obj
    num_o = xp.zeros(engine.obj_shape, np.complex64)
    ratio = xp.zeros(engine.frame_shape, np.float32) if engine.opts.update_background else None
    totals = [] if engine.opts.refine_scale else None
    single = len(engine.chunks) == 1
    fresh_illum = xp.zeros(engine.obj_shape, np.float32) if engine._illum is None else None
    deviance = 0.0
    for sl, geom in engine.chunks:
        w = engine.buffer(sl.stop - sl.start)
        psi = engine._psi[sl] if keeps_iterate else None
        deviance += kernels.fourier_pass(
            obj_before,
            probes,
            geom,
            w,
            *engine.frame_data(sl),
            psi,
            ratio,
            engine.deviance_every,
            sl.start,
            coefs,
            totals,
        )
        kernels.backproject_object(w, probes, geom, num_o, fresh_illum)
    if fresh_illum is not None:
        engine._illum = fresh_illum
    engine.object_from(num_o)
    if update_probe:
        # Probe from the same waves and the *updated* object: alternating least squares
        # (a simultaneous update of both would overshoot their common scale by 2x).
        num_p = xp.zeros(probes.shape, np.complex64)
        den_p = xp.zeros((probes.shape[0], *engine.frame_shape), np.float32)
        for sl, geom in engine.chunks:
            if not single:  # the chunk's waves were overwritten: make them again, the same
                w = engine.buffer(sl.stop - sl.start)
                if keeps_iterate:
                    w[...] = engine._psi[sl]
                    w = ifft2c(w, overwrite=True)
                else:
                    no_deviance = {"deviance_every": engine.n_frames + 1, "j0": 1}
                    kernels.fourier_pass(
                        obj_before, probes, geom, w, *engine.frame_data(sl), **no_deviance
                    )
            kernels.backproject_probe(w, engine.obj, geom, num_p, den_p)
        engine.probe_from(num_p, den_p)
    if ratio is not None:
        engine.bg *= xp.where(engine.good, ratio / engine.n_frames, 1).astype(np.float32)
    if totals is not None:
        engine.update_scale(xp.concatenate(totals))
    return engine.record(name, deviance)
