"""Quality metrics: Poisson log-likelihood, FRC, knife-edge width, sharpness, SNR, and the
phase correlation to a ground truth used by the acceptance tests.

Functions take NumPy arrays (use :func:`recon.backend.to_numpy` on device arrays).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.deviance import poisson_deviance
from recon.operators import fourier_shift
from recon.postprocess import remove_phase_ramp
from recon.registration import edge_taper, register_translation


def poisson_llk(measured: np.ndarray, model: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Poisson deviance per unmasked pixel, ``2 sum [I ln(I/M) - (I - M)] / N_pixels``.

    About 1 for a model that fits Poisson-noisy data, 0 for a perfect noise-free fit; the
    engine's figure of merit (:func:`recon.deviance.poisson_deviance`), on NumPy arrays.

    Parameters
    ----------
    measured : (..., ny, nx) photons
    model : (..., ny, nx) model intensities, same shape
    mask : (ny, nx) bool, True on pixels to leave out
    """
    as_f64 = np.asarray(measured, dtype=np.float64), np.asarray(model, dtype=np.float64)
    return float(poisson_deviance(*as_f64, mask))


@dataclass
class FRCResult:
    """Fourier ring correlation.

    Attributes
    ----------
    frequency : (R,) ring frequency in cycles per pixel
    frc : (R,) correlation
    threshold : (R,) 1/2-bit threshold (van Heel & Schatz 2005, doi:10.1016/j.jsb.2005.05.009)
    resolution_px : half-period resolution in pixels at the first crossing (inf when none)
    """

    frequency: np.ndarray
    frc: np.ndarray
    threshold: np.ndarray
    resolution_px: float


def frc(a: np.ndarray, b: np.ndarray, apodize: bool = True) -> FRCResult:
    """Fourier ring correlation of two images with the 1/2-bit threshold.

    Parameters
    ----------
    a, b : (n, m) real or complex images, registered, same shape
    apodize : multiply by a Tukey-like window to suppress edge artefacts
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"FRC needs images of the same shape, got {a.shape} and {b.shape}")
    if apodize:
        win = edge_taper(a.shape, 0.1)
        a = (a - a.mean()) * win
        b = (b - b.mean()) * win
    fa = np.fft.fftshift(np.fft.fft2(a))
    fb = np.fft.fftshift(np.fft.fft2(b))
    ny, nx = a.shape
    y, x = np.indices(a.shape)
    r = np.hypot((y - ny // 2) / ny, (x - nx // 2) / nx)
    n_rings = min(ny, nx) // 2
    ring = np.minimum((r * min(ny, nx)).astype(int), n_rings)
    num = np.bincount(ring.ravel(), (fa * np.conj(fb)).real.ravel(), n_rings + 1)[:n_rings]
    pa = np.bincount(ring.ravel(), (np.abs(fa) ** 2).ravel(), n_rings + 1)[:n_rings]
    pb = np.bincount(ring.ravel(), (np.abs(fb) ** 2).ravel(), n_rings + 1)[:n_rings]
    count = np.bincount(ring.ravel(), minlength=n_rings + 1)[:n_rings].astype(float)
    corr = num / np.sqrt(np.maximum(pa * pb, 1e-300))
    sq = np.sqrt(np.maximum(count, 1))
    thr = (0.2071 + 1.9102 / sq) / (1.2071 + 0.9102 / sq)
    freq = np.arange(n_rings) / min(ny, nx)
    below = np.nonzero((corr < thr) & (np.arange(n_rings) > 1))[0]
    res = 1.0 / (2 * freq[below[0]]) if below.size else float("inf")
    return FRCResult(freq, corr, thr, float(res))


def knife_edge_width(profile: np.ndarray, low: float = 0.2, high: float = 0.8) -> float:
    """20-80 % width (pixels) of an edge profile, by linear interpolation.

    The profile is normalised between the means of its first and last 10 % and may rise or
    fall; the result is the distance between the ``low`` and ``high`` crossings.
    """
    p = np.asarray(profile, dtype=float)
    k = max(1, len(p) // 10)
    a, b = p[:k].mean(), p[-k:].mean()
    if a == b:
        raise ValueError("flat profile: no edge")
    q = (p - a) / (b - a)

    def crossing(level: float) -> float:
        idx = np.nonzero((q[:-1] < level) & (q[1:] >= level))[0]
        if idx.size == 0:
            raise ValueError(f"profile never crosses {level:.0%}")
        i = idx[0]
        return i + (level - q[i]) / (q[i + 1] - q[i])

    return float(abs(crossing(high) - crossing(low)))


def sharpness(image: np.ndarray) -> float:
    """Variance of the (5-point) Laplacian of a real image (higher = sharper)."""
    im = np.asarray(image, dtype=float)
    lap = im[1:-1, :-2] + im[1:-1, 2:] + im[:-2, 1:-1] + im[2:, 1:-1] - 4 * im[1:-1, 1:-1]
    return float(lap.var())


def snr(image: np.ndarray, signal: np.ndarray, background: np.ndarray) -> float:
    """``|mean(signal) - mean(background)| / std(background)`` for two boolean regions."""
    im = np.asarray(image, dtype=float)
    sd = im[background].std()
    return float(abs(im[signal].mean() - im[background].mean()) / max(sd, 1e-300))


def phase_correlation(
    recon: np.ndarray,
    truth: np.ndarray,
    region: np.ndarray | None = None,
    register: bool = True,
) -> float:
    """Pearson correlation of the phases of a reconstruction and a ground truth.

    The reconstruction is registered to the truth with sub-pixel accuracy (Fourier shift),
    then its phase ramp and offset relative to the truth are removed (the ambiguities of
    ptychography), and the phases are compared inside ``region``.

    Parameters
    ----------
    recon, truth : (H, W) complex, same shape, roughly aligned
    region : (H, W) bool well-lit region to compare (default: all)
    register : do the sub-pixel registration

    Returns
    -------
    correlation coefficient in [-1, 1]
    """
    recon = np.asarray(recon, np.complex128)
    truth = np.asarray(truth, np.complex128)
    if recon.shape != truth.shape:
        raise ValueError(f"shapes differ: {recon.shape} and {truth.shape}")
    region = np.ones(recon.shape, bool) if region is None else np.asarray(region, bool)
    w = region.astype(float)
    if register:
        # register on the unit-modulus fields with ramps removed (phase structure only)
        a = remove_phase_ramp(truth / np.maximum(np.abs(truth), 1e-12), w) * w
        b = remove_phase_ramp(recon / np.maximum(np.abs(recon), 1e-12), w) * w
        dy, dx, _ = register_translation(np.angle(a) * w, np.angle(b) * w, upsample=20)
        recon = fourier_shift(recon, dy, dx).astype(np.complex128)
    # relative ramp and offset: from recon * conj(truth)
    rel = recon * np.conj(truth)
    y, x = np.indices(recon.shape)
    gy = np.angle(np.sum((w[1:] * w[:-1]) * rel[1:] * np.conj(rel[:-1])))
    gx = np.angle(np.sum((w[:, 1:] * w[:, :-1]) * rel[:, 1:] * np.conj(rel[:, :-1])))
    recon = recon * np.exp(-1j * (gy * y + gx * x))
    recon = recon * np.exp(-1j * np.angle(np.sum(w * recon * np.conj(truth))))
    # centre both phases on the truth's mean phase so that wraps are unlikely
    centre = np.exp(-1j * np.angle(np.sum(w * truth)))
    pr = np.angle(recon * centre)[region]
    pt = np.angle(truth * centre)[region]
    if pr.std() == 0 or pt.std() == 0:
        return 0.0
    return float(np.corrcoef(pr, pt)[0, 1])
