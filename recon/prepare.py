"""From raw CXI frames to what the engines need: photons, mask, positions, initial probe.

Steps (:func:`prepare`):

1. photons = (frames - dark) / counts_per_photon; values below ``threshold`` photons set to 0;
2. NaN / infinite pixels and saturated pixels (at the integer type's maximum or above
   ``saturation``) are masked (in every frame) and counted in the report;
3. the centre of the diffraction (centre of mass of the mean frame) is found and the frames
   are cropped (or binned) around it to ``frame_size``;
4. the object pixel is ``lambda z / (n p)`` for the frames after cropping/binning; positions
   (y, x) in metres become top-left patch corners in object pixels with a margin;
5. the initial probe comes from the file's illumination, else from the zone plate optics,
   else from the data (inverse FFT of the square root of the mean frame inside a disc); it is
   scaled so that ``sum |P|^2`` equals the mean number of photons per frame.

Intensities and mask are returned in FFT order (zero frequency at [0, 0]) so the inner loop
of the engines has no shifts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.cxi import CXIError, Ptychogram
from recon.geometry import object_pixel_size_m
from recon.probe import ZonePlate, zone_plate_probe


@dataclass
class PreparedData:
    """Data ready for :class:`recon.algorithms.Engine` (NumPy arrays).

    Attributes
    ----------
    intensities : (N, n, n) float32 photons, FFT order
    mask : (n, n) bool, True on bad pixels, FFT order
    corners_px : (N, 2) float64 top-left patch corners in object pixels (row, col); the
        probe centres are ``corners_px + n // 2``
    obj_shape : (H, W)
    probe : (K, n, n) complex64 initial probe modes, centred
    pixel_size_m : object pixel size (m)
    energy_ev : photon energy (eV)
    origin_px : (2,) float64; corner = position_m / pixel_size_m + origin_px
    scale : (N,) float32 per-frame intensity scale (monitor), ones when unknown
    window : (y0, x0, size, binning) of the crop in the raw frame (for added frames)
    report : what preparation did (counts of masked pixels, centre, probe source, ...)
    """

    intensities: np.ndarray
    mask: np.ndarray
    corners_px: np.ndarray
    obj_shape: tuple[int, int]
    probe: np.ndarray
    pixel_size_m: float
    energy_ev: float
    origin_px: np.ndarray
    scale: np.ndarray
    window: tuple[int, int, int, int]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_size(self) -> int:
        return int(self.intensities.shape[-1])


@dataclass
class Calibration:
    """How raw frames turn into photons (kept to prepare frames added later)."""

    dark: np.ndarray | None
    counts_per_photon: float
    threshold: float
    saturation: float | None
    window: tuple[int, int, int, int]
    mask: np.ndarray  # (n, n) bool, centred, after crop/bin


def to_photons(
    frames: np.ndarray,
    dark: np.ndarray | None,
    counts_per_photon: float,
    threshold: float = 0.5,
    saturation: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Raw counts to photons, with bad pixels found.

    Parameters
    ----------
    frames : (N, ny, nx) raw frames (any numeric dtype)
    dark : (ny, nx) averaged dark frame (counts) or None
    counts_per_photon : detector gain
    threshold : photons below this are set to 0
    saturation : counts at or above which a pixel is saturated; default: the maximum of an
        integer dtype, none for floats

    Returns
    -------
    photons : (N, ny, nx) float32, 0 on bad pixels
    bad : (ny, nx) bool, True where any frame is NaN/inf or saturated
    counts : {"nan": pixels with NaN/inf, "saturated": saturated pixels}
    """
    if counts_per_photon <= 0:
        raise CXIError(f"counts_per_photon must be > 0, got {counts_per_photon}")
    raw = np.asarray(frames)
    if saturation is None and np.issubdtype(raw.dtype, np.integer):
        saturation = float(np.iinfo(raw.dtype).max)
    photons = raw.astype(np.float32)
    finite = np.isfinite(photons)
    nan_px = ~finite.all(axis=0)
    sat_px = np.zeros(raw.shape[1:], bool)
    if saturation is not None:
        sat_px = (np.where(finite, photons, 0) >= saturation).any(axis=0) & ~nan_px
    if dark is not None:
        photons -= np.asarray(dark, dtype=np.float32)
    photons *= np.float32(1.0 / counts_per_photon)
    bad = nan_px | sat_px
    photons[:, bad] = 0
    photons[~np.isfinite(photons)] = 0
    photons[photons < threshold] = 0
    return photons, bad, {"nan": int(nan_px.sum()), "saturated": int(sat_px.sum())}


def diffraction_centre(photons: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    """Centre of mass (row, col) of the mean frame, bad pixels excluded."""
    mean = np.where(bad, 0, photons.mean(axis=0, dtype=np.float64))
    total = mean.sum()
    if total <= 0:
        return (photons.shape[1] // 2, photons.shape[2] // 2)
    y, x = np.indices(mean.shape)
    return float((mean * y).sum() / total), float((mean * x).sum() / total)


def crop_window(
    shape: tuple[int, int], centre: tuple[float, float], size: int, binning: int = 1
) -> tuple[int, int, int, int]:
    """Window (y0, x0, size, binning) of ``size * binning`` raw pixels centred on ``centre``.

    Raises
    ------
    CXIError
        If the window is larger than the frames.
    """
    span = size * binning
    if span > shape[0] or span > shape[1]:
        raise CXIError(
            f"frame size {size} x binning {binning} = {span} is larger than the frames "
            f"{shape[0]}x{shape[1]}"
        )
    y0 = int(round(centre[0])) - span // 2
    x0 = int(round(centre[1])) - span // 2
    y0 = min(max(y0, 0), shape[0] - span)
    x0 = min(max(x0, 0), shape[1] - span)
    return y0, x0, size, binning


def apply_window(a: np.ndarray, window: tuple[int, int, int, int], reduce: str = "sum") -> Any:
    """Crop ``a`` (..., ny, nx) to the window and bin it (``sum`` or ``any`` for masks)."""
    y0, x0, size, b = window
    span = size * b
    out = a[..., y0 : y0 + span, x0 : x0 + span]
    if b == 1:
        return np.ascontiguousarray(out)
    out = out.reshape(*out.shape[:-2], size, b, size, b)
    return out.any(axis=(-3, -1)) if reduce == "any" else out.sum(axis=(-3, -1))


def positions_to_pixels(
    positions_m: np.ndarray, pixel_m: float, frame_size: int, margin: int = 8
) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """Probe positions (y, x) metres -> top-left patch corners in object pixels.

    Returns
    -------
    corners : (N, 2) float64
    obj_shape : (H, W) holding every patch plus ``margin`` pixels on each side
    origin_px : (2,) float64 with ``corner = position / pixel + origin``
    """
    p = np.asarray(positions_m, dtype=np.float64) / pixel_m
    origin = margin - p.min(axis=0)
    corners = p + origin
    extent = np.ceil(corners.max(axis=0)).astype(int) + frame_size + margin + 1
    return corners, (int(extent[0]), int(extent[1])), origin


def fit_probe(probe: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop or zero-pad a (ny, nx) probe to (n, n)."""
    out = np.zeros((n, n), np.complex64)
    ny, nx = probe.shape
    sy, sx = min(ny, n), min(nx, n)
    oy, ox = (ny - sy) // 2, (nx - sx) // 2
    ty, tx = (n - sy) // 2, (n - sx) // 2
    out[ty : ty + sy, tx : tx + sx] = probe[oy : oy + sy, ox : ox + sx]
    return out


def probe_from_data(mean_photons: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Probe estimate: inverse FFT of sqrt(mean centred frame), inside a disc support.

    Parameters
    ----------
    mean_photons : (n, n) mean frame, centred
    bad : (n, n) bool bad pixels (set to 0)

    Returns
    -------
    (n, n) complex64 centred probe (unnormalised)
    """
    n = mean_photons.shape[0]
    amp = np.sqrt(np.where(bad, 0, np.maximum(mean_photons, 0)))
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(amp), norm="ortho"))
    y, x = np.indices(probe.shape)
    inten = np.abs(probe) ** 2
    # support: disc holding ~95 % of the power, at least n/8 and at most n/2.5 in radius
    r = np.hypot(y - n // 2, x - n // 2)
    order = np.argsort(r.ravel())
    cum = np.cumsum(inten.ravel()[order])
    radius = r.ravel()[order][np.searchsorted(cum, 0.95 * cum[-1])]
    radius = float(np.clip(radius, n / 8, n / 2.5))
    disc = np.clip(radius + 0.5 - r, 0, 1)
    return (probe * disc).astype(np.complex64)


def initial_probe(
    p: Ptychogram,
    n: int,
    pixel_m: float,
    mean_photons: np.ndarray,
    bad: np.ndarray,
    modes: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Initial probe modes and where the first came from.

    Returns
    -------
    probe : (modes, n, n) complex64, ``sum |P|^2`` over modes = mean photons per frame
    source : "illumination", "zone_plate" or "data"
    """
    probe = None
    source = "data"
    if p.illumination is not None:
        probe = fit_probe(np.asarray(p.illumination, np.complex64), n)
        source = "illumination"
    elif p.zone_plate and {"outer_diameter", "outermost_zone_width"} <= set(p.zone_plate):
        zp = p.zone_plate
        try:
            optics = ZonePlate(
                outer_diameter=zp["outer_diameter"],
                outermost_zone_width=zp["outermost_zone_width"],
                central_stop_diameter=zp.get("central_stop_diameter", 0.0),
            )
            probe = zone_plate_probe(optics, p.energy_ev, zp.get("defocus", 0.0), n, pixel_m)
            source = "zone_plate"
        except ValueError:
            probe = None
    if probe is None or not np.isfinite(probe).all() or not np.abs(probe).max() > 0:
        probe = probe_from_data(mean_photons, bad)
        source = "data"
    photons = float(mean_photons[~bad].sum())
    probe = probe * np.float32(math.sqrt(max(photons, 1e-12) / float(np.sum(np.abs(probe) ** 2))))
    out = np.empty((modes, n, n), np.complex64)
    out[0] = probe
    rng = np.random.default_rng(seed)
    for k in range(1, modes):
        # weaker modes: the main mode times a smooth random phase/amplitude, 5 % of the power
        field = np.fft.ifft2(
            np.fft.fft2(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
            * (np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n))) < 4.0 / n)
        )
        mode = probe * field
        out[k] = mode * np.float32(math.sqrt(0.05 * photons / float(np.sum(np.abs(mode) ** 2))))
    if modes > 1:
        out *= np.float32(math.sqrt(photons / float(np.sum(np.abs(out) ** 2))))
    return out, source


def prepare(
    p: Ptychogram,
    frame_size: int | None = None,
    binning: int = 1,
    threshold: float = 0.5,
    saturation: float | None = None,
    probe_modes: int = 1,
    margin: int = 8,
    seed: int = 0,
) -> tuple[PreparedData, Calibration]:
    """Prepare a ptychogram for reconstruction (see the module docstring).

    Parameters
    ----------
    p : the ptychogram
    frame_size : frame size after cropping/binning (default: the largest that fits)
    binning : detector binning factor applied after cropping ``frame_size * binning`` pixels
    threshold : photons below this are set to 0
    saturation : raw counts at which a pixel saturates (default: integer dtype maximum)
    probe_modes : number of incoherent probe modes
    margin : object pixels around the outermost patches
    seed : seed of the extra probe modes

    Returns
    -------
    (PreparedData, Calibration)

    Raises
    ------
    CXIError
        When the frames cannot be used (e.g. frame size too large, all-zero data).
    """
    if binning < 1:
        raise CXIError(f"binning must be >= 1, got {binning}")
    if probe_modes < 1:
        raise CXIError(f"probe modes must be >= 1, got {probe_modes}")
    photons, bad, counts = to_photons(
        p.frames, p.dark, p.counts_per_photon, threshold=threshold, saturation=saturation
    )
    bad = bad | np.asarray(p.mask, bool)
    ny, nx = photons.shape[1:]
    centre = diffraction_centre(photons, bad)
    if frame_size is None:
        frame_size = min(ny, nx) // binning
        if frame_size % 2:
            frame_size -= 1
    if frame_size < 8:
        raise CXIError(f"frame size {frame_size} is too small (>= 8 pixels)")
    window = crop_window((ny, nx), centre, frame_size, binning)
    photons = apply_window(photons, window).astype(np.float32)
    bad = apply_window(bad, window, reduce="any")
    photons[:, bad] = 0
    if not photons.any():
        raise CXIError("no photons in the frames after dark subtraction and thresholding")
    det_pixel = p.pixel_m * binning
    pixel = object_pixel_size_m(p.energy_ev, p.distance_m, frame_size, det_pixel)
    corners, obj_shape, origin = positions_to_pixels(p.positions_m, pixel, frame_size, margin)
    mean = photons.mean(axis=0)
    probe, source = initial_probe(p, frame_size, pixel, mean, bad, probe_modes, seed)
    report = {
        "frames": int(photons.shape[0]),
        "nan_pixels": counts["nan"],
        "saturated_pixels": counts["saturated"],
        "masked_pixels": int(bad.sum()),
        "centre": centre,
        "window": window,
        "probe_source": source,
        "mean_photons": float(mean.sum()),
        "object_pixel_m": pixel,
    }
    data = PreparedData(
        intensities=np.fft.ifftshift(photons, axes=(-2, -1)),
        mask=np.fft.ifftshift(bad),
        corners_px=corners,
        obj_shape=obj_shape,
        probe=probe,
        pixel_size_m=pixel,
        energy_ev=p.energy_ev,
        origin_px=origin,
        scale=np.ones(photons.shape[0], np.float32),
        window=window,
        report=report,
    )
    calib = Calibration(
        dark=p.dark,
        counts_per_photon=p.counts_per_photon,
        threshold=threshold,
        saturation=saturation,
        window=window,
        mask=bad,
    )
    return data, calib


def prepare_more(
    frames: np.ndarray, calib: Calibration, dtype_hint: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Prepare frames that arrive later with the calibration of the first ones.

    Returns
    -------
    intensities : (M, n, n) float32 photons, FFT order
    bad : (n, n) bool newly found bad pixels (centred, after the window)
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    photons, bad, _ = to_photons(
        frames, calib.dark, calib.counts_per_photon, calib.threshold, calib.saturation
    )
    photons = apply_window(photons, calib.window).astype(np.float32)
    bad = apply_window(bad, calib.window, reduce="any")
    photons[:, bad | calib.mask] = 0
    return np.fft.ifftshift(photons, axes=(-2, -1)), bad
