"""Kernels of the maximum-likelihood engine (:mod:`recon.maximum_likelihood`): the Fourier
factor of the gradient and the objective along a search line, for two noise models.

* ``poisson``: the negative Poisson log-likelihood ``L = sum (M - I ln M)``, evaluated as the
  half deviance ``sum M - I + I ln(I / M)`` (the same up to a constant, and free of the large
  cancelling sums near a fit);
* ``gaussian``: amplitude least squares ``L = sum (sqrt M - sqrt I)^2`` (Gaussian noise on the
  amplitudes; Thibault & Guizar-Sicairos, *New J. Phys.* 14, 063004 (2012)).

``M = scale sum_k |wave_k|^2 + bg`` is the model of the photons ``I``. Along the search line of
a joint object and probe step the exit waves are quadratic in the step ``g``, ``psi(g) = (P +
g dP)(O + g dO) = psi0 + g psi1 + g^2 psi2``, so every pixel's model is a quartic in ``g``;
:func:`ml_line_coefficients` stores its coefficients and :func:`ml_line_values` evaluates the
exact objective, its slope and curvature at any ``g`` without another FFT.

As in :mod:`recon.kernels`, each kernel runs as generic ``xp`` code (NumPy or CuPy) or, on the
CPU with numba, as a fused loop of :mod:`recon.numba_kernels`. Shapes as in
:mod:`recon.kernels`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from recon import numba_ml as nbm
from recon import numba_ml_fourier as nbmf
from recon.backend import fft2c, get_xp, ifft2c
from recon.kernels import (
    TINY,
    _flat,
    _model_and_deviance,
    _numba_args,
    _numba_deviance,
    exit_waves,
    fourier_in_cache,
    numba_enabled,
)
from recon.patch_geometry import PatchGeometry

#: Likelihoods of the maximum-likelihood engine (:attr:`EngineOptions.noise_model`).
NOISE_MODELS = ("poisson", "gaussian")


def is_gaussian(noise_model: str) -> bool:
    """True for the ``gaussian`` noise model, False for ``poisson``; ValueError otherwise."""
    if noise_model not in NOISE_MODELS:
        raise ValueError(
            f"unknown noise_model {noise_model!r}: use 'poisson' (photon counting) or "
            "'gaussian' (amplitude least squares)"
        )
    return noise_model == "gaussian"


def _ml_pixel_terms(xp: ModuleType, inten: Any, mod: Any, gaussian: bool) -> tuple:
    """Per-pixel ``(L, dL/dM, d2L/dM2)`` of the ML objective (generic code).

    Poisson: the half deviance ``M - I + I ln(I / M)`` (``sum M - I ln M`` up to a constant);
    gaussian: ``(sqrt M - sqrt I)^2``. Arrays of the shape and dtype of ``mod``.
    """
    if gaussian:
        q = xp.sqrt(inten / mod)
        d = xp.sqrt(mod) - xp.sqrt(inten)
        return d * d, 1 - q, np.float32(0.5) * q / mod
    r = inten / mod
    return mod - inten + inten * xp.log(r + np.float32(1e-30)), 1 - r, r / mod


def ml_gradient(
    wave: Any,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    noise_model: str = "poisson",
    deviance_every: int = 1,
    j0: int = 0,
    out: Any = None,
) -> float:
    """Fourier-space factor of the ML gradient: ``out = scale dL/dM wave`` (0 on masked pixels).

    ``M = scale sum_k |wave_k|^2 + bg``; ``dL/dM`` is ``1 - I / M`` for the Poisson negative
    log-likelihood ``L = sum (M - I ln M)`` and ``1 - sqrt(I / M)`` for the amplitude least
    squares ``L = sum (sqrt M - sqrt I)^2`` (``noise_model="gaussian"``).

    Parameters
    ----------
    wave : (M, K, n, n) complex64 model waves in Fourier space
    inten, good, bg, scale : see :func:`fourier_project`
    noise_model : ``poisson`` or ``gaussian``
    deviance_every, j0 : frames of the returned deviance (see :func:`fourier_project`); 0
        skips the deviance
    out : (M, K, n, n) complex64 output; None (or ``wave``) works in place

    Returns
    -------
    deviance : Poisson deviance of the model (whatever ``noise_model``), unnormalised; 0.0
        when ``deviance_every`` is 0
    """
    gaussian = is_gaussian(noise_model)
    out = wave if out is None else out
    xp = get_xp(wave)
    if numba_enabled(xp):
        args = _numba_args(wave, inten, good, bg)
        dev = _numba_deviance(args, scale, deviance_every, j0) if deviance_every > 0 else 0.0
        nbm.ml_weight(*args, scale, gaussian, _flat(out))
        return dev
    if deviance_every > 0:
        mod, dev = _model_and_deviance(wave, inten, good, bg, scale, deviance_every, j0)
    else:
        a2 = (wave.real**2 + wave.imag**2).sum(axis=1)
        mod, dev = xp.maximum(scale[:, None, None] * a2 + bg, TINY), 0.0
    factor = 1 - xp.sqrt(inten / mod) if gaussian else 1 - inten / mod
    w = xp.where(good, scale[:, None, None] * factor, 0).astype(np.float32)
    xp.multiply(wave, w[:, None], out=out)
    return dev


def ml_gradient_pass(
    obj: Any,
    probes: Any,
    geom: PatchGeometry,
    f0: Any,
    grad: Any,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    noise_model: str = "poisson",
    deviance_every: int = 1,
    j0: int = 0,
) -> tuple[float, Any, Any]:
    """The Fourier side of the ML gradient: exit waves, FFT, :func:`ml_gradient`, inverse FFT.

    On NumPy with numba and rocket-fft each frame goes through the steps in cache
    (:func:`recon.numba_ml_fourier.gradient_pass`); otherwise they run one after the other
    over the stack.

    Parameters
    ----------
    obj, probes, geom : as in :func:`recon.kernels.exit_waves`
    f0 : (M, K, n, n) complex64 buffer for the Fourier exit waves (C-contiguous)
    grad : (M, K, n, n) complex64 buffer for the gradient waves, or None to reuse ``f0``
    inten, good, bg, scale, noise_model, deviance_every, j0 : as in :func:`ml_gradient`

    Returns
    -------
    deviance : as :func:`ml_gradient` returns it
    f0 : the Fourier exit waves (``f0`` or, on the stack path, the FFT's result); when
        ``grad`` is None they are overwritten by the gradient waves
    grad : (M, K, n, n) complex64 real-space gradient waves ``F^-1 scale dL/dM F(psi)``
    """
    out = f0 if grad is None else grad
    if fourier_in_cache(get_xp(out)):
        _, inten2, keep, b = _numba_args(out, inten, good, bg)
        dev = np.zeros(out.shape[0], np.float64)
        gaussian = is_gaussian(noise_model)
        nbmf.gradient_pass(
            obj, probes, geom.bins, geom.corners, inten2, keep, b, scale, gaussian, f0, out,
            dev, deviance_every, j0,
        )  # fmt: skip
        return float(dev.sum()), f0, out
    exit_waves(obj, probes, geom, f0)
    f0 = fft2c(f0, overwrite=True)
    out = f0 if grad is None else grad
    dev = ml_gradient(f0, inten, good, bg, scale, noise_model, deviance_every, j0, out=out)
    return dev, f0, ifft2c(out, overwrite=True)


def ml_coefficients_pass(
    obj: Any, d_o: Any, probes: Any, d_probes: Any, geom: PatchGeometry, f0: Any = None
) -> Any:
    """Coefficients of the model power along ``(P + g dP)(O + g dO)``, frame by frame in
    cache (:func:`recon.numba_ml_fourier.coefficients_pass`; NumPy with numba and rocket-fft
    only: :func:`recon.kernels.fourier_in_cache`).

    Parameters
    ----------
    obj, d_o : (H, W) complex64 object and its direction
    probes, d_probes : (B, K, n, n) complex64 shifted probe modes and their direction (None:
        the probe is fixed)
    geom : patch geometry of the M frames
    f0 : (M, K, n, n) complex64 Fourier exit waves ``F(P O)`` of the frames, or None to
        compute them

    Returns
    -------
    (T, M, n, n) float32, T = 5 (3 when ``d_probes`` is None): as
    :func:`ml_line_coefficients` of ``F(P O)``, ``F(P dO + dP O)`` and ``F(dP dO)``
    """
    if not (nbmf.AVAILABLE and get_xp(probes) is np):
        raise ValueError("ml_coefficients_pass needs NumPy arrays, numba and rocket-fft")
    m = geom.corners.shape[0]
    n_y, n_x = probes.shape[2:]
    with_probe = d_probes is not None
    coef = np.empty((5 if with_probe else 3, m, n_y, n_x), np.float32)
    nbmf.coefficients_pass(
        obj, d_o, probes, d_probes if with_probe else probes, with_probe, geom.bins,
        geom.corners, probes if f0 is None else f0, f0 is not None, coef.reshape(len(coef), m, -1),
    )  # fmt: skip
    return coef


def ml_line_coefficients(f0: Any, f1: Any = None, f2: Any = None, out: Any = None) -> Any:
    """Coefficients of the model power along the exit-wave line ``f0 + g f1 + g^2 f2``.

    ``sum_k |f0 + g f1 + g^2 f2|^2 = sum_t c_t g^t`` per pixel (the line of a joint object and
    probe step: ``(P + g dP)(O + g dO)``, Fourier transformed).

    Parameters
    ----------
    f0, f1, f2 : (M, K, n, n) complex64 Fourier-space waves; ``f2`` (and ``f1``) may be None
        (zero)
    out : (T, M, n, n) float32 output with T = 1, 3 or 5 as fits the waves given; None
        allocates it

    Returns
    -------
    (T, M, n, n) float32 ``c_0 .. c_{T-1}``
    """
    xp = get_xp(f0)
    nc = 1 if f1 is None else 3 if f2 is None else 5
    if out is None:
        out = xp.empty((nc, f0.shape[0], *f0.shape[2:]), np.float32)
    if out.shape[0] != nc:
        raise ValueError(f"out has {out.shape[0]} coefficients, the waves give {nc}")
    if numba_enabled(xp):
        flat0 = _flat(f0)
        flat1 = flat0 if f1 is None else _flat(f1)
        flat2 = flat0 if f2 is None else _flat(f2)
        nbm.ml_line_coefficients(flat0, flat1, flat2, out.reshape(nc, f0.shape[0], -1))
        return out

    def cross(a: Any, b: Any) -> Any:
        return (a.real * b.real + a.imag * b.imag).sum(axis=1)

    out[0] = cross(f0, f0)
    if nc > 1:
        out[1] = 2 * cross(f0, f1)
        out[2] = cross(f1, f1)
    if nc > 3:
        out[2] += 2 * cross(f0, f2)
        out[3] = 2 * cross(f1, f2)
        out[4] = cross(f2, f2)
    return out


def ml_line_frames(
    coef: Any,
    g: float,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    noise_model: str = "poisson",
    relative: bool = False,
) -> Any:
    """The ML objective and its derivatives at ``g`` along a line of
    :func:`ml_line_coefficients`, frame by frame.

    The model is ``M(g) = scale sum_t coef[t] g^t + bg`` (floored at :data:`TINY`); the
    objective is Poisson's half deviance ``sum M - I + I ln(I / M)`` (``sum M - I ln M`` up to
    a constant; at ``g = 0`` half of :func:`recon.deviance.poisson_deviance`) or, for
    ``gaussian``, ``sum (sqrt M - sqrt I)^2``, over the good pixels.

    Parameters
    ----------
    coef : (T, M, n, n) float32 coefficients
    g : step along the line
    inten, good, bg, scale : see :func:`fourier_project`
    noise_model : ``poisson`` or ``gaussian``
    relative : give ``L(g) - L(0)`` instead of ``L(g)``, formed from ``M(g) - M(0)`` so that
        it keeps its precision for tiny steps (float32 terms)

    Returns
    -------
    (M, 4) float64 per frame: objective (or its change), its first and second derivative in
    ``g`` and the Gauss-Newton part of the second derivative
    """
    gaussian = is_gaussian(noise_model)
    xp = get_xp(coef)
    m = coef.shape[1]
    if numba_enabled(xp):
        out = np.zeros((m, 4), np.float64)
        keep = good.astype(np.float32).ravel()
        flat = coef.reshape(coef.shape[0], m, -1)
        args = (inten.reshape(m, -1), keep, bg.ravel(), scale)
        nbm.ml_line_values(flat, float(g), *args, gaussian, relative, out)
        return out
    g32 = np.float32(g)
    r = dr = ddr = xp.zeros(coef.shape[1:], np.float32)
    for t in range(coef.shape[0] - 1, 0, -1):  # r(g) = (q(g) - q(0)) / g, Horner
        ddr = ddr * g32 + 2 * dr
        dr = dr * g32 + r
        r = r * g32 + coef[t]
    dq, ddq = r + g32 * dr, 2 * dr + g32 * ddr
    s = scale[:, None, None]
    inc = s * r * g32  # s (q(g) - q(0))
    base = s * coef[0] + bg
    m0 = xp.maximum(base, TINY)
    mod = xp.maximum(base + inc, TINY)
    val, f1, f2 = _ml_pixel_terms(xp, inten, mod, gaussian)
    if relative:
        delta = xp.where((base >= TINY) & (base + inc >= TINY), inc, mod - m0)
        if gaussian:
            val = delta - 2 * xp.sqrt(inten) * delta / (xp.sqrt(mod) + xp.sqrt(m0))
        else:
            val = delta - inten * xp.log1p(delta / m0)
    dm = s * dq
    gn = f2 * dm * dm
    terms = (val, f1 * dm, gn + f1 * s * ddq, gn)
    return xp.stack([xp.where(good, a, 0).sum(axis=(1, 2), dtype=np.float64) for a in terms], 1)


def ml_line_values(
    coef: Any,
    g: float,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    noise_model: str = "poisson",
    relative: bool = False,
) -> tuple[float, float, float, float]:
    """:func:`ml_line_frames` summed over the frames: (objective or its change, first and
    second derivative, Gauss-Newton part of the second derivative) as floats."""
    frames = ml_line_frames(coef, g, inten, good, bg, scale, noise_model, relative)
    return tuple(float(v) for v in frames.sum(axis=0))  # type: ignore[return-value]
