"""Pure functions of the worker: events to ptychograms, dark selection, bad frames, frames
without beam, optics.

Nothing here talks to Tiled, so all of it is tested with plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.probe import ZonePlate

#: Raw counts at which one pixel of a 16-bit sCMOS saturates (before binning).
SENSOR_FULL_SCALE = 2**16 - 1


@dataclass
class PtychogramRows:
    """The events of one ptychogram seen so far.

    Attributes
    ----------
    index : ptychogram number in the run
    rows : (M,) int64 row numbers in the primary stream, ascending
    positions_m : (M, 2) float64 probe positions (y, x) in metres
    energy_ev : mean energy readback of the rows (eV)
    polarization : polarization readback of the first row
    first_time : time stamp of the first row (s since the epoch)
    i0 : (M,) float64 incident flux recorded with each row, or None when the stream has no
        I0 column
    """

    index: int
    rows: np.ndarray
    positions_m: np.ndarray
    energy_ev: float
    polarization: str
    first_time: float
    i0: np.ndarray | None = None


def group_ptychograms(table: dict[str, Any], i0_key: str = "beam_i0") -> dict[int, PtychogramRows]:
    """Group primary-stream events by their ``ptychogram`` index.

    Parameters
    ----------
    table : columns of the primary stream, each a 1-D sequence of the same length:
        ``ptychogram`` (int), ``sample_fx`` and ``sample_fy`` (fine stage readbacks in um,
        the probe position on the sample, x along columns, y along rows),
        ``optics_energy`` (eV), ``polarization_readback`` (str) and ``time`` (s), and
        optionally ``i0_key`` (incident flux)
    i0_key : the incident-flux column (absent: the groups' ``i0`` is None)

    Returns
    -------
    {index: PtychogramRows} in ascending index order
    """
    index = np.asarray(table["ptychogram"], dtype=np.int64)
    fx = np.asarray(table["sample_fx"], dtype=np.float64)
    fy = np.asarray(table["sample_fy"], dtype=np.float64)
    energy = np.asarray(table["optics_energy"], dtype=np.float64)
    pol = np.asarray(table.get("polarization_readback", [""] * len(index)))
    times = np.asarray(table.get("time", np.zeros(len(index))), dtype=np.float64)
    i0 = np.asarray(table[i0_key], dtype=np.float64) if i0_key in table else None
    out: dict[int, PtychogramRows] = {}
    for k in np.unique(index):
        rows = np.nonzero(index == k)[0]
        out[int(k)] = PtychogramRows(
            index=int(k),
            rows=rows,
            positions_m=np.stack([fy[rows], fx[rows]], axis=1) * 1e-6,
            energy_ev=float(np.mean(energy[rows])),
            polarization=str(pol[rows[0]]) if len(pol) else "",
            first_time=float(times[rows[0]]),
            i0=None if i0 is None else i0[rows],
        )
    return out


@dataclass
class I0Check:
    """Which frames had too little beam to be data.

    Attributes
    ----------
    low : (M,) bool frames to leave out
    threshold : I0 below which a frame is left out (in the monitor's units)
    median : median I0 of the frames with I0 > 0 (0 when there is none)
    """

    low: np.ndarray
    threshold: float
    median: float


def low_i0_frames(
    i0: np.ndarray, fraction: float = 0.5, minimum: float = 0.0, reference: np.ndarray | None = None
) -> I0Check:
    """Frames whose incident flux is too low: below ``fraction`` x the median I0, or below
    ``minimum``; with either threshold above 0, I0 <= 0 or not finite too (no beam at all).

    Parameters
    ----------
    i0 : (M,) I0 of the frames to judge
    fraction : relative threshold (0: none)
    minimum : absolute threshold (0: none)
    reference : (K,) I0 values the median is taken over (default: ``i0``); only values
        > 0 count, so a beam dump lasting a third of a ptychogram does not lower it

    Returns
    -------
    I0Check; nothing is low when both thresholds are 0

    Examples
    --------
    >>> low_i0_frames(np.array([1e8, 0.0, 1.1e8, 3e7])).low.tolist()
    [False, True, False, True]
    """
    values = np.asarray(i0, dtype=np.float64)
    ref = values if reference is None else np.asarray(reference, dtype=np.float64)
    positive = ref[np.isfinite(ref) & (ref > 0)]
    median = float(np.median(positive)) if positive.size else 0.0
    threshold = max(fraction * median, minimum)
    if fraction <= 0 and minimum <= 0:
        return I0Check(np.zeros(values.shape, bool), 0.0, median)
    finite = np.isfinite(values)
    low = (
        ~finite | (np.where(finite, values, 0.0) <= 0) | (np.where(finite, values, 0.0) < threshold)
    )
    return I0Check(low, threshold, median)


def select_dark_series(
    dark_times: np.ndarray, primary_times: np.ndarray, first_time: float
) -> np.ndarray:
    """Rows of the dark stream to average for a ptychogram that starts at ``first_time``.

    Dark frames come in series (one per dark policy step); two dark frames belong to the
    same series when no primary event lies between them. The latest series that ended
    before the ptychogram's first frame is chosen; when none did, the first series of the
    run (the only one there is for ``dark: once`` taken late).

    Parameters
    ----------
    dark_times : (D,) time stamps of the dark events
    primary_times : (P,) time stamps of the primary events
    first_time : time stamp of the ptychogram's first event

    Returns
    -------
    (K,) int64 rows of the dark stream, empty when there are no dark frames
    """
    dark_times = np.asarray(dark_times, dtype=np.float64)
    if dark_times.size == 0:
        return np.zeros(0, np.int64)
    primary = np.sort(np.asarray(primary_times, dtype=np.float64))
    order = np.argsort(dark_times, kind="stable")
    t = dark_times[order]
    # series number: how many primary events came before each dark frame
    before = np.searchsorted(primary, t, side="left")
    series_start = np.concatenate([[True], before[1:] != before[:-1]])
    series_id = np.cumsum(series_start) - 1
    earlier = t < first_time
    chosen = series_id[earlier].max() if earlier.any() else 0
    return np.sort(order[series_id == chosen]).astype(np.int64)


@dataclass
class FrameCheck:
    """Frames converted for the reconstruction and what was wrong with them.

    Attributes
    ----------
    frames : (M, ny, nx) float32 raw counts, NaN where a pixel is NaN, infinite or saturated
    bad : (ny, nx) bool pixels that were bad in any of these frames
    nan_frames, saturated_frames : how many frames had NaN/infinite or saturated pixels
    nan_pixels, saturated_pixels : how many pixels were flagged for each reason
    messages : one line per problem, for the result's metadata
    """

    frames: np.ndarray
    bad: np.ndarray
    nan_frames: int = 0
    saturated_frames: int = 0
    nan_pixels: int = 0
    saturated_pixels: int = 0
    messages: list[str] = field(default_factory=list)


def check_frames(
    frames: np.ndarray,
    saturation: float | None,
    first_row: int = 0,
    index: int = 0,
    rows: np.ndarray | None = None,
) -> FrameCheck:
    """Flag NaN, infinite and saturated pixels (masked, never fatal).

    Parameters
    ----------
    frames : (M, ny, nx) raw frames, any numeric dtype
    saturation : counts at or above which a pixel is saturated (None: no check)
    first_row : primary-stream row of the first frame (for the messages)
    index : ptychogram number (for the messages)
    rows : (M,) primary-stream rows of the frames when they are not consecutive from
        ``first_row`` (for the messages)

    Returns
    -------
    FrameCheck with float32 frames in which every bad pixel is NaN
    """
    raw = np.asarray(frames)
    if raw.ndim == 2:
        raw = raw[None]
    out = raw.astype(np.float32)
    nan = ~np.isfinite(out)
    sat = np.zeros_like(nan) if saturation is None else (np.where(nan, 0, out) >= saturation)
    out[nan | sat] = np.nan
    nan_frames = np.nonzero(nan.reshape(len(out), -1).any(axis=1))[0]
    sat_frames = np.nonzero(sat.reshape(len(out), -1).any(axis=1))[0]
    row_of = np.arange(len(out)) + first_row if rows is None else np.asarray(rows, np.int64)
    messages = [
        f"ptychogram {index}: {which.size} frame(s) with {what} pixels "
        f"(rows {', '.join(str(int(row_of[i])) for i in which[:5])}"
        f"{'...' if which.size > 5 else ''}): {int(bad.any(axis=0).sum())} pixel(s) masked"
        for which, what, bad in ((nan_frames, "NaN/inf", nan), (sat_frames, "saturated", sat))
        if which.size
    ]
    return FrameCheck(
        frames=out,
        bad=(nan | sat).any(axis=0),
        nan_frames=int(nan_frames.size),
        saturated_frames=int(sat_frames.size),
        nan_pixels=int(nan.any(axis=0).sum()),
        saturated_pixels=int(sat.any(axis=0).sum()),
        messages=messages,
    )


def saturation_counts(geometry: dict[str, Any], configured: float | None = None) -> float | None:
    """Counts at which a binned pixel saturates: the configured value, else a 16-bit sensor
    times the binning squared (binned pixels sum their raw pixels)."""
    if configured is not None:
        return float(configured)
    binning = int(geometry.get("binning") or 1)
    return float(SENSOR_FULL_SCALE * binning**2)


def continuous_blur_m(geometry: dict[str, Any]) -> float:
    """The probe's travel during one exposure of a continuous-motion fly scan (m), from the
    run's ``geometry.acquisition``; 0 for step and fly-step scans (or no zone plate)."""
    acq = geometry.get("acquisition") or {}
    if acq.get("motion") != "continuous" or not geometry.get("zone_plate"):
        return 0.0
    try:
        return max(float(acq.get("blur_m") or 0.0), 0.0)
    except (TypeError, ValueError):
        return 0.0


def zone_plate_for(geometry: dict[str, Any], energy_ev: float) -> dict[str, float] | None:
    """The CXI ``zone_plate`` dict of a run's geometry, with the defocus that gives the
    run's spot size at ``energy_ev`` (the plan keeps the spot at every energy)."""
    zp = geometry.get("zone_plate")
    spot = geometry.get("spot_m")
    if not zp or not spot:
        return None
    try:
        optics = ZonePlate(
            outer_diameter=float(zp["outer_diameter"]),
            outermost_zone_width=float(zp["outermost_zone_width"]),
            central_stop_diameter=float(zp.get("central_stop_diameter", 0.0)),
        )
        defocus = optics.defocus_m(float(spot), energy_ev)
    except (KeyError, ValueError, TypeError):
        return None
    return {
        "outer_diameter": optics.outer_diameter,
        "outermost_zone_width": optics.outermost_zone_width,
        "central_stop_diameter": optics.central_stop_diameter,
        "defocus": defocus,
    }


def counts_per_photon_for(
    start: dict[str, Any], configured: float | None = None
) -> tuple[float, str | None]:
    """Detector gain: the configured value, else ``counts_per_photon`` of the start document
    (top level or in ``geometry``), else 1.0 (AP does not depend on the scale).

    Returns
    -------
    (counts per photon, a note for the result's messages or None)
    """
    if configured is not None:
        return float(configured), None
    for holder in (start, start.get("geometry") or {}):
        value = holder.get("counts_per_photon")
        if isinstance(value, int | float) and value > 0:
            return float(value), None
    return 1.0, "counts per photon unknown: frames used in counts (1 count = 1 photon)"
