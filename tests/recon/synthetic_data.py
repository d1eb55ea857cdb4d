"""Small synthetic ptychography data sets for the reconstruction tests (seeded).

:func:`make` simulates a raster scan of a smooth phase object. Besides Poisson noise it can
make the data differ from what the engine is told, so that a test never starts from the exact
truth:

* the probe *model* handed to the engine (:attr:`Synthetic.model`) is the ideal zone plate
  probe at a defocus off by ``model_defocus_error``, while the true probe carries astigmatism
  and a coma-like phase and, optionally, a second incoherent mode (partial coherence);
* the positions given to the engine (:attr:`Synthetic.given`) carry random errors;
* every frame has its own true intensity scale (a fluctuating beam).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from recon.cxi import Ptychogram
from recon.geometry import object_pixel_size_m
from recon.operators import PtychoOperator, fourier_shift
from recon.probe import ZonePlate, zone_plate_probe

ENERGY = 700.0
DISTANCE = 0.05
N = 64
PIXEL = 25e-9  # object pixel
DET_PIXEL = 1.239841984e-6 / ENERGY * DISTANCE / (N * PIXEL)


@dataclass
class Synthetic:
    """A simulated scan and what the engine is told about it.

    Attributes
    ----------
    obj : (H, W) complex64 true object
    probe : (n, n) complex64 true probe (its first mode), sqrt(photons)
    positions : (M, 2) float64 true top-left patch corners (pixels)
    intensities : (M, n, n) float32 photons, FFT order
    op : the forward operator at the true positions
    modes : (K, n, n) complex64 true incoherent probe modes (``modes[0] is probe``)
    given : (M, 2) float64 corners given to the engine (true + position errors)
    scales : (M,) float64 true per-frame intensity scales
    model : (1, n, n) complex64 probe model for the engine's start (not the truth)
    model_defocus : defocus of the probe model (m)
    """

    obj: np.ndarray
    probe: np.ndarray
    positions: np.ndarray
    intensities: np.ndarray
    op: PtychoOperator
    modes: np.ndarray | None = None
    given: np.ndarray | None = None
    scales: np.ndarray | None = None
    model: np.ndarray | None = None
    model_defocus: float = 30e-6

    def lit(self, illumination: np.ndarray, fraction: float = 0.3) -> np.ndarray:
        return illumination > fraction * illumination.max()


def make_object(shape, seed=0, phase=0.8, absorption=0.15):
    rng = np.random.default_rng(seed)
    ph = gaussian_filter(rng.standard_normal(shape), 2.0)
    ph *= phase / ph.std()
    am = gaussian_filter(rng.standard_normal(shape), 3.0)
    am = 1 - absorption * np.abs(am) / np.abs(am).max()
    return (am * np.exp(1j * ph)).astype(np.complex64)


def aberrated_probe(defocus, astigmatism=0.0, coma=0.0):
    """(n, n) complex64 zone plate probe with pupil phase aberrations, ``sum |P|^2 = 1``.

    The pupil phase is ``a rho^2 cos(2 theta) + c (3 rho^3 - 2 rho) cos(theta)`` (Zernike
    primary astigmatism and coma; Born & Wolf, *Principles of Optics*, ch. 9) with ``rho``
    the spatial frequency over the zone plate's cut-off ``1 / (2 dr)``.

    Parameters
    ----------
    defocus : sample distance downstream of the focus (m)
    astigmatism, coma : phase amplitudes ``a`` and ``c`` (rad) at the pupil edge
    """
    zp = ZonePlate()
    field = zone_plate_probe(zp, ENERGY, defocus, N, PIXEL)
    if not (astigmatism or coma):
        return field
    k = np.fft.fftfreq(N, d=PIXEL) * 2 * zp.outermost_zone_width
    rho = np.hypot(k[:, None], k[None, :])
    theta = np.arctan2(k[:, None], k[None, :])
    ab = astigmatism * rho**2 * np.cos(2 * theta) + coma * (3 * rho**3 - 2 * rho) * np.cos(theta)
    spectrum = np.fft.fft2(np.fft.ifftshift(field)) * np.exp(1j * ab)
    out = np.fft.fftshift(np.fft.ifft2(spectrum))
    return (out / np.sqrt(np.sum(np.abs(out) ** 2))).astype(np.complex64)


def make(
    n_side=8,
    step=6.0,
    photons=1e6,
    seed=0,
    poisson=True,
    defocus=30e-6,
    phase=0.8,
    jitter=0.5,
    model_defocus_error=0.0,
    astigmatism=0.0,
    coma=0.0,
    second_mode=0.0,
    mode_shift=2.0,
    scale_range=None,
    position_error_m=None,
):
    """Raster scan (step ``step`` pixels, spot ~40 px: ~85 % overlap) of a smooth object.

    Parameters
    ----------
    n_side : scan points per side
    step : scan step (pixels); ``jitter`` (pixels): uniform random offsets of the true scan
    photons : photons per frame (before the per-frame scales)
    seed : seed of the object, scan, noise and errors
    poisson : add Poisson noise
    defocus : true defocus (m)
    phase : rms object phase (rad)
    model_defocus_error : relative defocus error of the engine's probe model (0.15: +15 %)
    astigmatism, coma : aberrations (rad at the pupil edge) of the true probe only
    second_mode : power fraction of a second incoherent true mode (partial coherence: the
        probe displaced by ``mode_shift`` pixels along the diagonal); 0 for one mode
    scale_range : (lo, hi) uniform random true per-frame intensity scales; None: all 1
    position_error_m : (lo, hi) magnitudes (m) of the random errors of the given positions
        (random directions); None: the given positions are the true ones

    Returns
    -------
    Synthetic
    """
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])  # errors and scales: keep the default data as is
    size = int(N + step * (n_side - 1) + 16)
    obj = make_object((size, size), seed, phase)
    first = aberrated_probe(defocus, astigmatism, coma)
    modes = first[None]
    if second_mode > 0:
        d = mode_shift / np.sqrt(2.0)
        other = fourier_shift(first, d, d).astype(np.complex64)
        modes = np.stack([np.sqrt(1 - second_mode) * first, np.sqrt(second_mode) * other])
    modes = (modes * np.float32(np.sqrt(photons))).astype(np.complex64)
    g = np.arange(n_side) * step + 8
    yy, xx = np.meshgrid(g, g, indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1) + rng.uniform(-jitter, jitter, (n_side**2, 2))
    scales = np.ones(len(pos))
    if scale_range is not None:
        scales = extra.uniform(scale_range[0], scale_range[1], len(pos))
    given = pos.copy()
    if position_error_m is not None:
        r = extra.uniform(position_error_m[0], position_error_m[1], len(pos)) / PIXEL
        angle = extra.uniform(0, 2 * np.pi, len(pos))
        given = pos + r[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    op = PtychoOperator(pos, (N, N), (size, size), subpixel=16)
    inten = op.intensities(obj, modes, centred=False) * scales[:, None, None].astype(np.float32)
    if poisson:
        inten = rng.poisson(inten).astype(np.float32)
    inten = inten.astype(np.float32)
    model_defocus = defocus * (1 + model_defocus_error)
    model = zone_plate_probe(ZonePlate(), ENERGY, model_defocus, N, PIXEL)
    model *= np.float32(np.sqrt(inten.sum(axis=(1, 2)).mean()))  # as recon.prepare does
    return Synthetic(
        obj, modes[0], pos, inten, op, modes, given, scales, model[None], model_defocus
    )


def ptychogram(s: Synthetic, dark_level=100.0, cpp=2.0, seed=0, zone_plate=True) -> Ptychogram:
    """Raw-camera version of a synthetic data set (centred frames, dark, gain) with the
    given positions and the probe model's defocus."""
    rng = np.random.default_rng(seed)
    frames = np.fft.fftshift(s.intensities, axes=(-2, -1)) * cpp + dark_level
    frames = np.rint(frames + rng.normal(0, 0.3, frames.shape)).astype(np.uint16)
    assert abs(object_pixel_size_m(ENERGY, DISTANCE, N, DET_PIXEL) - PIXEL) < 1e-15
    zp = ZonePlate()
    given = s.positions if s.given is None else s.given
    return Ptychogram(
        frames=frames,
        positions_m=given * PIXEL,
        energy_ev=ENERGY,
        distance_m=DISTANCE,
        pixel_m=DET_PIXEL,
        dark=np.full(frames.shape[1:], dark_level, np.float32),
        counts_per_photon=cpp,
        zone_plate={
            "outer_diameter": zp.outer_diameter,
            "outermost_zone_width": zp.outermost_zone_width,
            "central_stop_diameter": zp.central_stop_diameter,
            "defocus": s.model_defocus,
        }
        if zone_plate
        else None,
    )
