"""Motion blur of continuous-motion (fly) scans: how many probe modes, and how to start them.

When the sample moves by ``L`` during an exposure, the frame is the incoherent sum of the
diffraction of the probe at every point of that path, ``(1/L) int |F[P(r - s u) O(r)]|^2 ds``
(``u`` the direction of motion). Such a frame is modelled exactly by incoherent probe modes
(Thibault & Menzel, *Nature* 494, 68 (2013), doi:10.1038/nature11806; for fly scans Huang
et al., *Sci. Rep.* 5, 9074 (2015), doi:10.1038/srep09074): the modes are the
eigenfunctions of the blurred probe's coherence, and their powers the eigenvalues of the
kernel ``g(s - s') / L`` on ``[0, L]``, with ``g(d) = <P(r), P(r - d u)>``.

``g`` depends only on the probe's power spectrum ``|FFT(P)|^2``. For a zone plate that is
the uniform annular pupil between ``k_in = (cs / D) / (2 dr)`` and ``k_out = 1 / (2 dr)``
whatever the defocus, so the mode powers depend on the blur in units of the outermost zone
width ``dr`` and on the central stop ratio only, not on the spot size: a 1 um defocused
spot needs as many modes as the focused one for the same blur. Roughly ``L / dr`` modes
hold 90 % of the power and ``L / dr + 1`` hold 95-99 % (a Slepian "2WT" count).

What the reconstruction tests measured (``tests/recon/test_motion_blur.py``: BN at 192 eV,
1 um spot, 43 nm pixels, blur 194 nm = 3.9 ``dr`` along x): one mode gives a phase
correlation of 0.66-0.70 with the truth (0.98-0.99 on still frames), 3 modes 0.81-0.83,
4 modes 0.95-0.97 (5-6 modes 0.90-0.97); and the extra modes must start from the blurred model probe
(:func:`blurred_probe_modes`): the default random extra modes of
:func:`recon.prepare.initial_probe` stay near the one-mode result (0.55-0.70 with 4 modes).
"""

from __future__ import annotations

import math

import numpy as np

#: Central stop ratio ``cs / D`` of the beamline's zone plate (72 um stop, 240 um plate).
DEFAULT_STOP_RATIO = 0.3


def blur_mode_powers(
    blur_m: float,
    resolution_m: float,
    pixel_m: float | None = None,
    stop_ratio: float = DEFAULT_STOP_RATIO,
    samples: int | None = None,
) -> np.ndarray:
    """Fractions of the power of a motion-blurred zone-plate probe held by each mode.

    Parameters
    ----------
    blur_m : length of the path of the probe on the sample during one exposure (m)
    resolution_m : outermost zone width ``dr`` (m); the probe's pupil ends at ``1 / (2 dr)``
    pixel_m : object pixel (m); frequencies above ``1 / (2 pixel)`` are not reconstructed,
        so a pixel coarser than ``dr`` lowers the cut-off (None: no limit)
    stop_ratio : central stop ratio ``cs / D`` (inner edge of the annular pupil)
    samples : points along the path used to discretise it (default from the blur)

    Returns
    -------
    powers : (samples,) float64, decreasing, summing to 1; ``powers[:k].sum()`` is the part
        of each frame's photons that ``k`` modes can describe

    Raises
    ------
    ValueError
        For a negative blur, a non-positive resolution or pixel, or a stop ratio outside
        [0, 1).
    """
    if blur_m < 0 or not math.isfinite(blur_m):
        raise ValueError(f"blur must be a finite length >= 0, got {blur_m}")
    if resolution_m <= 0 or (pixel_m is not None and pixel_m <= 0):
        raise ValueError("resolution and pixel must be > 0")
    if not 0 <= stop_ratio < 1:
        raise ValueError(f"stop ratio must be in [0, 1), got {stop_ratio}")
    k_out = 0.5 / resolution_m
    if pixel_m is not None:
        k_out = min(k_out, 0.5 / pixel_m)
    k_in = min(stop_ratio * 0.5 / resolution_m, k_out)
    width = blur_m * 2 * k_out  # blur in units of the finest half-period
    if samples is None:
        samples = int(min(1024, 16 + math.ceil(8 * width)))
    if width == 0 or samples < 2:
        out = np.zeros(max(1, samples))
        out[0] = 1.0
        return out
    # Marginal of the uniform annulus along the direction of motion (midpoint quadrature).
    kx = (np.arange(2048) + 0.5) / 2048 * k_out
    density = np.sqrt(k_out**2 - kx**2) - np.sqrt(np.maximum(k_in**2 - kx**2, 0.0))
    density /= density.sum()
    # g(s - s') on the evenly spaced path points: a Toeplitz matrix of g(j L / samples).
    g = np.cos(2 * np.pi * (np.arange(samples) * (blur_m / samples))[:, None] * kx) @ density
    index = np.arange(samples)
    coherence = g[np.abs(index[:, None] - index[None, :])]  # g(0) = 1
    powers = np.clip(np.linalg.eigvalsh(coherence / samples)[::-1], 0.0, None)
    return powers / powers.sum()


def probe_modes_for_blur(
    blur_m: float,
    resolution_m: float,
    pixel_m: float,
    minimum: int = 1,
    maximum: int = 6,
    *,
    power: float = 0.95,
    stop_ratio: float = DEFAULT_STOP_RATIO,
) -> int:
    """Number of incoherent probe modes for a ptychogram taken in continuous motion.

    The smallest number of modes that holds ``power`` of the blurred probe's intensity
    (:func:`blur_mode_powers`), clipped to ``[minimum, maximum]``. It is 1 for a blur below
    half a pixel or below 0.49 ``dr``, and grows by about one mode per ``dr`` of blur:
    2 modes from 0.5 ``dr``, 3 from 1.6, 4 from 2.8, 5 from 4.0, 6 from 5.1 (``power``
    0.95, stop ratio 0.3). The spot size does not enter (see the module docstring).

    Parameters
    ----------
    blur_m : travel of the probe on the sample during one exposure (m), e.g. stage speed
        times exposure, or the scan step times exposure / trigger period
    resolution_m : outermost zone width ``dr`` of the zone plate (m)
    pixel_m : object pixel of the reconstruction (m)
    minimum, maximum : bounds of the result (``1 <= minimum <= maximum``)
    power : fraction of the frame's photons the modes must describe (0 < power < 1);
        0.95 was enough in the tests: with 3.9 ``dr`` of blur, 4 modes (96 % of the power)
        reached a phase correlation of 0.95-0.97 and 3 modes (82 %) only 0.81-0.83
    stop_ratio : central stop ratio ``cs / D`` of the zone plate

    Returns
    -------
    modes : int in ``[minimum, maximum]``

    Raises
    ------
    ValueError
        For bounds out of order or a ``power`` outside (0, 1), and as
        :func:`blur_mode_powers`.
    """
    if not 1 <= minimum <= maximum:
        raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if blur_m < 0 or not math.isfinite(blur_m):
        raise ValueError(f"blur must be a finite length >= 0, got {blur_m}")
    if resolution_m <= 0 or pixel_m <= 0:
        raise ValueError("resolution and pixel must be > 0")
    if blur_m < 0.5 * pixel_m:  # sub-pixel travel: a still frame as far as the model sees
        return minimum
    if blur_m / max(resolution_m, pixel_m) > 2 * maximum + 2:
        return maximum  # about one mode per dr: far more would be needed than allowed
    powers = blur_mode_powers(blur_m, resolution_m, pixel_m, stop_ratio)
    needed = int(np.searchsorted(np.cumsum(powers), power - 1e-12) + 1)
    return int(min(max(needed, minimum), maximum))


def blurred_probe_modes(
    probe: np.ndarray, blur_px: float, modes: int, axis: int = -1, samples: int | None = None
) -> np.ndarray:
    """Initial probe modes for a frame blurred by a motion of ``blur_px`` pixels.

    The probe is Fourier-shifted to ``samples`` points spread evenly over the path (centred
    on the frame's position, the mid-exposure one), and the ``modes`` strongest orthogonal
    modes of that incoherent set are returned (singular value decomposition), scaled to the
    input's total power. Starting the extra modes this way, rather than as weak random
    perturbations of the first, is what lets a reconstruction recover motion-blurred data.

    Parameters
    ----------
    probe : (n, n) or (M, n, n) complex probe (modes), centred, e.g. the zone-plate model
    blur_px : travel during one exposure in object pixels
    modes : number of modes to return (>= 1)
    axis : direction of motion, -1 along columns (x), -2 along rows (y)
    samples : points along the path (default ``max(8, 4 blur_px + 1)``)

    Returns
    -------
    (modes, n, n) complex64, orthogonal, strongest first, ``sum |P|^2`` equal to the input's
    (a mode beyond the rank of the set is zero)

    Raises
    ------
    ValueError
        For ``modes < 1``, a negative blur or an axis other than -1 or -2.
    """
    if modes < 1:
        raise ValueError(f"modes must be >= 1, got {modes}")
    if blur_px < 0 or not math.isfinite(blur_px):
        raise ValueError(f"blur must be a finite length >= 0, got {blur_px}")
    if axis not in (-1, -2):
        raise ValueError(f"axis must be -1 (x) or -2 (y), got {axis}")
    p = np.asarray(probe, np.complex128)
    if p.ndim == 2:
        p = p[None]
    _, ny, nx = p.shape
    if samples is None:
        samples = max(8, math.ceil(4 * blur_px) + 1)
    offsets = ((np.arange(samples) + 0.5) / samples - 0.5) * blur_px
    k = np.fft.fftfreq(nx if axis == -1 else ny)
    phase = np.exp(-2j * np.pi * offsets[:, None] * k[None, :])  # (samples, n)
    ramps = phase[:, None, :] if axis == -1 else phase[:, :, None]
    ft = np.fft.fft2(p)  # (M, ny, nx)
    shifted = np.fft.ifft2(ft[:, None] * ramps[None])  # (M, samples, ny, nx)
    rows = shifted.reshape(-1, ny * nx) / math.sqrt(samples)
    _, sv, vh = np.linalg.svd(rows, full_matrices=False)
    out = np.zeros((modes, ny * nx), np.complex128)
    keep = min(modes, len(sv))
    out[:keep] = sv[:keep, None] * vh[:keep]
    total = float(np.sum(np.abs(p) ** 2))
    kept = float(np.sum(np.abs(out) ** 2))
    if kept > 0:
        out *= math.sqrt(total / kept)
    return out.reshape(modes, ny, nx).astype(np.complex64)
