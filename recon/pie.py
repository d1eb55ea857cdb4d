"""The per-frame projection family: ePIE and rPIE.

Each iteration visits every frame once, in a random order, ``EngineOptions.pie_batch`` frames
at a time (1: the classic sequential algorithm). For a batch it forms the exit waves
``psi_jk = P_k O_j`` with the current object and probe, projects their far fields onto the
measured moduli (:func:`recon.kernels.fourier_project`) and, with ``d = psi' - psi``, updates

    O += sum_jk conj(P_jk) d_jk / ((1 - a) sum_jk |P_jk|^2 + a max sum_jk |P_jk|^2)
    P_k += sum_j conj(O_j) d_jk / ((1 - b) sum_j |O_j|^2 + b max sum_j |O_j|^2)

(sums over the frames j of the batch, scattered to the object pixels they cover; both from the
waves of the same, old, object and probe). This is rPIE (Maiden, Johnson & Li, *Optica* 4,
736 (2017), doi:10.1364/OPTICA.4.000736) with ``a = EngineOptions.pie_alpha`` and
``b = EngineOptions.pie_probe_alpha`` (1 by default: the ePIE probe step, as the rPIE
authors' own code uses it; the object's weight on the probe too let the probe run away
where the object is weak); ePIE (Maiden & Rodenburg, *Ultramicroscopy* 109, 1256 (2009),
doi:10.1016/j.ultramic.2009.05.012) is the same update with ``a = b = 1``.

Sub-pixel positions: frame j sees the probe shifted by its bin's remainder, ``S_b P``. While
the probe is updated, this module keeps the centred probe's spectrum ``F P`` and makes only
the shifted probes of the batch's frames, ``F^H (ramp_b F P)``; a probe step made in a frame's
coordinates goes back to the centred probe with the bin's conjugate ramp (``S_b^H``, as
:func:`recon.operators.unshift_sum`). The probe modes are orthogonalised once per pass.

With one frame per batch on the CPU (numba and rocket-fft), the whole pass is one compiled
loop over the frames (:mod:`recon.numba_pie`) that makes the same updates in the same order.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from recon import kernels
from recon import numba_pie as nbp
from recon.backend import fft2c, ifft2c
from recon.kernels import TINY, PatchGeometry
from recon.probe_modes import orthogonalize_modes

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine

#: Algorithms of the per-frame family.
PIE_NAMES = ("EPIE", "RPIE")


def pie_weight(name: str, pie_alpha: float) -> float:
    """The weight ``a`` of an update denominator: 1 for ePIE, ``pie_alpha`` for rPIE (the
    object's ``EngineOptions.pie_alpha`` or the probe's ``pie_probe_alpha``).

    Raises
    ------
    ValueError
        For a name outside :data:`PIE_NAMES` or a weight outside [0, 1].
    """
    name = name.upper()
    if name not in PIE_NAMES:
        raise ValueError(f"{name!r} is not in the per-frame family {PIE_NAMES}")
    a = 1.0 if name == "EPIE" else float(pie_alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"pie_alpha must lie in [0, 1], got {a}")
    return a


def visiting_order(n_frames: int, batch: int, seed: int, every: int) -> list[np.ndarray]:
    """Random batches of frame indices covering every frame once.

    Within a batch the frames whose index is a multiple of ``every`` (those the deviance is
    summed over) come first; the order inside a batch does not change its update.

    Parameters
    ----------
    n_frames : number of frames N
    batch : frames per batch (the last batch may be smaller)
    seed : seed of the permutation (the engine's iteration number)
    every : the engine's ``deviance_every``

    Returns
    -------
    list of (M,) int64 host arrays
    """
    perm = np.random.default_rng(seed).permutation(n_frames)
    out = []
    for start in range(0, n_frames, batch):
        idx = perm[start : start + batch]
        out.append(idx[np.argsort(idx % every != 0, kind="stable")].astype(np.int64))
    return out


def _denominator(power: Any, a: float) -> Any:
    """``(1 - a) power + a max(power)`` (floored at ``TINY``) of a float32 array."""
    w = np.float32(a)
    return (np.float32(1.0) - w) * power + (w * power.max() + TINY)


def _project(engine: Engine, far: Any, idx: np.ndarray, idx_x: Any) -> float:
    """Modulus projection of a batch's far fields in place; deviance of its counted frames.

    Parameters
    ----------
    far : (M, K, n, n) complex64 far fields of frames ``idx`` (counted frames first)
    idx : (M,) int64 host frame indices; ``idx_x`` the same on the engine's device
    """
    inten, good, bg, scale = engine.inten[idx_x], engine.good, engine.bg, engine.scale[idx_x]
    counted = int(np.count_nonzero(idx % engine.deviance_every == 0))
    m = idx.size
    deviance = 0.0
    if counted:
        deviance = kernels.fourier_project(
            far[:counted], inten[:counted], good, bg, scale[:counted]
        )
    if counted < m:  # j0 = 1, every = m + 1: no frame of the rest is counted
        rest = slice(counted, m)
        kernels.fourier_project(
            far[rest], inten[rest], good, bg, scale[rest], deviance_every=m + 1, j0=1
        )
    return deviance


class _Accumulators:
    """(H, W) scratch sums of one pass: object numerator and batch illumination.

    Only the patches of the current batch are non-zero between :meth:`update` calls, so
    clearing them costs ``M n^2``, not the whole object.
    """

    def __init__(self, xp: ModuleType, obj_shape: tuple[int, int]) -> None:
        self.num = xp.zeros(obj_shape, np.complex64)
        self.den = xp.zeros(obj_shape, np.float32)

    def update(self, engine: Engine, diff: Any, probes: Any, geom: PatchGeometry, a: float) -> None:
        """Add the rPIE object step of one batch to ``engine.obj``.

        ``diff`` (M, K, n, n) complex64 real-space ``psi' - psi``; ``probes`` (B, K, n, n)
        the probe modes indexed by ``geom.bins``.
        """
        kernels.backproject_object(diff, probes, geom, self.num, self.den)
        flat = geom.flat_index()  # (M, n, n) indices into the raveled (contiguous) arrays
        num, den, obj = self.num.reshape(-1), self.den.reshape(-1), engine.obj.reshape(-1)
        # Frames of the batch that overlap gather the same sums at a shared pixel, so the
        # assignment below writes the same value for every repeat of an index.
        new = obj[flat] + num[flat] / _denominator(den[flat], a)
        amax = engine.opts.max_object_amplitude
        if amax is not None:
            amp = engine.xp.abs(new)
            new *= engine.xp.minimum(1, amax / engine.xp.maximum(amp, 1e-12)).astype(np.float32)
        obj[flat] = new
        num[flat] = 0
        den[flat] = 0


def _probe_step(diff: Any, patches: Any, a: float) -> Any:
    """(M, K, n, n) complex64 rPIE probe steps in each frame's (shifted) coordinates.

    Parameters
    ----------
    diff : (M, K, n, n) complex64 ``psi' - psi``
    patches : (M, n, n) complex64 object patches ``O_j`` the waves were made with
    """
    power = (patches.real**2 + patches.imag**2).sum(axis=0)
    return patches.conj()[:, None] * diff / _denominator(power, a)


def pie_iteration(engine: Engine, name: str) -> float:
    """One pass of ePIE or rPIE over all frames of ``engine`` (see the module notes).

    The frames are visited in a random order seeded with ``engine.iteration`` (reproducible),
    ``EngineOptions.pie_batch`` at a time. The probe is updated when
    ``engine.update_probe_now()``; ``EngineOptions.max_object_amplitude`` clips the object.

    Parameters
    ----------
    engine : the reconstruction engine (its object and probe are updated in place)
    name : ``"EPIE"`` or ``"RPIE"`` (any case)

    Returns
    -------
    the normalised Poisson deviance of the models met during the pass (each frame's model
    just before its update), over the frames counted by ``engine.deviance_every``
    """
    xp = engine.xp
    name = name.upper()
    a = pie_weight(name, engine.opts.pie_alpha)
    a_probe = pie_weight(name, engine.opts.pie_probe_alpha)
    batch = max(1, min(int(engine.opts.pie_batch), engine.n_frames))
    update_probe = engine.update_probe_now()
    if batch == 1 and nbp.AVAILABLE and kernels.fourier_in_cache(xp):
        return _compiled_pass(engine, name, (a, a_probe), update_probe)
    shape = (engine.n_modes, *engine.frame_shape)
    waves = xp.empty((batch, *shape), np.complex64)
    acc = _Accumulators(xp, engine.obj_shape)
    engine.obj = xp.ascontiguousarray(engine.obj)  # updated through a raveled view
    spectrum = fft2c(engine.probe) if update_probe else None
    deviance = 0.0
    for idx in visiting_order(engine.n_frames, batch, engine.iteration, engine.deviance_every):
        m = idx.size
        idx_x = xp.asarray(idx)
        frame_bins = engine.bins[idx_x]
        if update_probe:  # only this batch's shifted probes: one per frame
            probes = ifft2c(spectrum[None] * engine.ramps[frame_bins][:, None], overwrite=True)
            probes = xp.ascontiguousarray(probes, dtype=np.complex64)
            bins = xp.arange(m, dtype=np.int64)
        else:
            probes, bins = engine.shifted_probes(), xp.ascontiguousarray(frame_bins)
        corners = xp.ascontiguousarray(engine.corners[idx_x])
        geom = PatchGeometry(corners, bins, engine.frame_shape, engine.obj_shape)
        psi = kernels.exit_waves(engine.obj, probes, geom, waves[:m])
        far = fft2c(psi)
        deviance += _project(engine, far, idx, idx_x)
        diff = ifft2c(far, overwrite=True)
        diff -= psi
        # the object patches before this batch's update, for the probe step
        patches = engine.obj.reshape(-1)[geom.flat_index()] if update_probe else None
        acc.update(engine, diff, probes, geom, a)
        if update_probe:
            step = fft2c(_probe_step(diff, patches, a_probe), overwrite=True)
            step *= engine.unramps[frame_bins][:, None]
            spectrum += step.sum(axis=0)
    if update_probe:
        probe = ifft2c(spectrum, overwrite=True).astype(np.complex64)
        engine.probe = xp.ascontiguousarray(orthogonalize_modes(probe))
    engine.invalidate_probe()
    return engine.record(name, deviance)


def _compiled_pass(
    engine: Engine, name: str, weights: tuple[float, float], update_probe: bool
) -> float:
    """:func:`pie_iteration` with one frame per batch as one compiled loop
    (:func:`recon.numba_pie.pie_pass`, NumPy with numba and rocket-fft): the same visiting
    order, updates and deviance; ``weights`` are the object's and the probe's ``a``."""
    n = engine.n_frames
    order = np.concatenate(visiting_order(n, 1, engine.iteration, engine.deviance_every))
    engine.obj = np.ascontiguousarray(engine.obj, dtype=np.complex64)
    spectrum = np.ascontiguousarray(fft2c(engine.probe), dtype=np.complex64)
    probes = engine.shifted_probes() if not update_probe else spectrum[None]
    amax = engine.opts.max_object_amplitude
    dev = np.zeros(n, np.float64)
    nbp.pie_pass(
        engine.obj,
        spectrum,
        np.ascontiguousarray(probes, dtype=np.complex64),
        np.ascontiguousarray(engine.ramps, dtype=np.complex64),
        np.ascontiguousarray(engine.unramps, dtype=np.complex64),
        np.ascontiguousarray(engine.bins, dtype=np.int64),
        np.ascontiguousarray(engine.corners, dtype=np.int64),
        order,
        engine.inten.reshape(n, -1),
        engine.good.astype(np.float32).ravel(),
        np.ascontiguousarray(engine.bg, dtype=np.float32).ravel(),
        np.ascontiguousarray(engine.scale, dtype=np.float32),
        np.float32(weights[0]),
        np.float32(weights[1]),
        np.float32(-1.0 if amax is None else amax),
        update_probe,
        int(engine.deviance_every),
        dev,
    )
    if update_probe:
        probe = ifft2c(spectrum, overwrite=True).astype(np.complex64)
        engine.probe = np.ascontiguousarray(orthogonalize_modes(probe))
    engine.invalidate_probe()
    return engine.record(name, float(dev.sum()))
