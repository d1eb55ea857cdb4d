"""Read and write ptychograms as CXI 1.6 (HDF5) files, as PyNX and PtyPy read them.

Layout (paths under ``/entry_1``)::

    instrument_1/detector_1/data            (N, ny, nx) raw frames, centred, dark offset in them
    instrument_1/detector_1/distance        sample-detector distance (m)
    instrument_1/detector_1/x_pixel_size    detector pixel pitch after binning (m)
    instrument_1/detector_1/y_pixel_size
    instrument_1/detector_1/mask            (ny, nx) uint8, non-zero = bad pixel
    instrument_1/detector_1/dark            (ny, nx) float32, averaged dark frame
    instrument_1/detector_1/counts_per_photon   (extension) detector counts per photon
    instrument_1/source_1/energy            photon energy (J)
    instrument_1/source_1/illumination      optional (ny, nx) complex initial probe
    instrument_1/zone_plate_1/{outer_diameter, outermost_zone_width,
                               central_stop_diameter, defocus}   optional optics (m)
    sample_1/geometry_1/translation         (3, N) x, y, z probe position on the sample (m)
    instrument_1/name                       instrument name (PyNX reads it)
    data_1/data, data_1/translation         soft links to the two above
    simulation_1/...                        optional ground truth written by the simulator

``translation`` is written in PyNX's (3, N) layout; the standard (N, 3) is read too.
Positions are returned as (N, 2) (y, x) in metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.geometry import EV_J

CXI_VERSION = 160
DETECTOR = "entry_1/instrument_1/detector_1"
SOURCE = "entry_1/instrument_1/source_1"
ZONE_PLATE = "entry_1/instrument_1/zone_plate_1"
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
SIMULATION = "entry_1/simulation_1"
ZONE_PLATE_FIELDS = ("outer_diameter", "outermost_zone_width", "central_stop_diameter", "defocus")


class CXIError(ValueError):
    """A CXI file that cannot be used; the message is one line naming the problem."""


@dataclass
class Ptychogram:
    """One ptychographic scan at one energy and polarization.

    Attributes
    ----------
    frames : (N, ny, nx) raw detector frames (integer or float), zero frequency centred
    positions_m : (N, 2) float64 probe positions on the sample, (y, x) in metres
    energy_ev : photon energy (eV)
    distance_m : sample-detector distance (m)
    pixel_m : detector pixel pitch after binning (m)
    mask : (ny, nx) bool, True = bad pixel (never used)
    dark : (ny, nx) float32 averaged dark frame, or None
    counts_per_photon : detector counts per photon (1.0 when unknown)
    illumination : (ny, nx) complex64 initial probe, or None
    zone_plate : dict with the NXfresnel_zone_plate fields and ``defocus`` (m), or None
    polarization : LH, LV, CL, CR or "" when unknown
    truth : ground truth of a simulation (``object``, ``probe``, ``object_pixel_size``...)
    """

    frames: np.ndarray
    positions_m: np.ndarray
    energy_ev: float
    distance_m: float
    pixel_m: float
    mask: np.ndarray | None = None
    dark: np.ndarray | None = None
    counts_per_photon: float = 1.0
    illumination: np.ndarray | None = None
    zone_plate: dict[str, float] | None = None
    polarization: str = ""
    truth: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mask is None:
            self.mask = np.zeros(self.frames.shape[-2:], dtype=bool)
        validate(self)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def validate(p: Ptychogram) -> None:
    """Check shapes and values of a ptychogram; raise :class:`CXIError` on the first problem."""
    f = p.frames
    if f.ndim != 3:
        raise CXIError(f"frames must be 3-D (N, ny, nx), got shape {f.shape}")
    if f.shape[0] == 0:
        raise CXIError("the ptychogram has no frames")
    if f.shape[1] < 8 or f.shape[2] < 8:
        raise CXIError(f"frames of {f.shape[1]}x{f.shape[2]} pixels are too small")
    if np.issubdtype(f.dtype, np.floating) and not np.isfinite(f).all():
        bad = int(np.count_nonzero(~np.isfinite(f).reshape(f.shape[0], -1).all(axis=1)))
        raise CXIError(f"{bad} frame(s) contain NaN or infinite values")
    pos = np.asarray(p.positions_m)
    if pos.shape != (f.shape[0], 2):
        raise CXIError(f"positions have shape {pos.shape}, expected ({f.shape[0]}, 2)")
    if not np.isfinite(pos).all():
        raise CXIError("positions contain NaN or infinite values")
    if not (p.energy_ev > 0 and p.distance_m > 0 and p.pixel_m > 0):
        raise CXIError("energy, detector distance and pixel size must all be > 0")
    if p.mask is not None and p.mask.shape != f.shape[1:]:
        raise CXIError(f"mask shape {p.mask.shape} does not match frames {f.shape[1:]}")
    if p.dark is not None and p.dark.shape != f.shape[1:]:
        raise CXIError(f"dark shape {p.dark.shape} does not match frames {f.shape[1:]}")


def write_cxi(
    path: str | Path,
    p: Ptychogram,
    compression: str | None = "gzip",
    instrument: str = "sptycho simulated HERMES-like STXM",
) -> Path:
    """Write a ptychogram (and its ground truth, if any) to a CXI file; returns the path.

    ``translation`` is written as (3, N), the layout PyNX writes and reads; the reader
    accepts (N, 3) too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comp = {"compression": compression, "compression_opts": 1} if compression else {}
    with h5py.File(path, "w") as h:
        h.attrs["default"] = "entry_1"
        h.create_dataset("cxi_version", data=CXI_VERSION)
        entry = h.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("program_name", data="sptycho")
        det = h.create_group(DETECTOR)
        det.attrs["NX_class"] = "NXdetector"
        chunks = (1, *p.frames.shape[1:])
        det.create_dataset("data", data=p.frames, chunks=chunks, **comp)
        det.create_dataset("distance", data=float(p.distance_m))
        det.create_dataset("x_pixel_size", data=float(p.pixel_m))
        det.create_dataset("y_pixel_size", data=float(p.pixel_m))
        det.create_dataset("mask", data=np.asarray(p.mask, dtype=np.uint8))
        det.create_dataset("counts_per_photon", data=float(p.counts_per_photon))
        if p.dark is not None:
            det.create_dataset("dark", data=np.asarray(p.dark, dtype=np.float32))
        src = h.create_group(SOURCE)
        src.attrs["NX_class"] = "NXsource"
        src.create_dataset("energy", data=float(p.energy_ev) * EV_J)
        if p.polarization:
            src.create_dataset("polarization", data=p.polarization)
        if p.illumination is not None:
            src.create_dataset("illumination", data=np.asarray(p.illumination, np.complex64))
        if p.zone_plate:
            zp = h.create_group(ZONE_PLATE)
            zp.attrs["NX_class"] = "NXfresnel_zone_plate"
            for key in ZONE_PLATE_FIELDS:
                if key in p.zone_plate:
                    zp.create_dataset(key, data=float(p.zone_plate[key]))
        pos = np.asarray(p.positions_m, dtype=np.float64)
        # PyNX's layout (3, N): pynx-cxipty reads ``translation[0:2]`` as x, y.
        translation = np.stack([pos[:, 1], pos[:, 0], np.zeros(len(pos))], axis=0)
        h.create_dataset("entry_1/instrument_1/name", data=instrument)
        geo = h.create_group("entry_1/sample_1/geometry_1")
        geo.create_dataset("translation", data=translation)
        det["translation"] = h5py.SoftLink("/" + TRANSLATION)
        # CXI default detector orientation (top-left origin), as PyNX writes it.
        basis = np.zeros((2, 3), dtype=np.float32)
        basis[0, 1] = -p.pixel_m
        basis[1, 0] = -p.pixel_m
        det.create_dataset("basis_vectors", data=basis)
        data = h.create_group("entry_1/data_1")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        data["data"] = h5py.SoftLink("/" + DETECTOR + "/data")
        data["translation"] = h5py.SoftLink("/" + TRANSLATION)
        if p.truth:
            sim = h.create_group(SIMULATION)
            for key, value in p.truth.items():
                if isinstance(value, str) or np.isscalar(value):
                    sim.attrs[key] = value
                else:
                    sim.create_dataset(key, data=np.asarray(value), **comp)
    return path


def _read_translation(h: h5py.File, n_frames: int) -> np.ndarray:
    for key in (TRANSLATION, "entry_1/data_1/translation"):
        if (d := _dataset(h, key)) is not None:
            t = np.asarray(d[()], dtype=np.float64)
            break
    else:
        raise CXIError(f"missing dataset /{TRANSLATION}")
    if t.ndim == 2 and t.shape[0] == n_frames and t.shape[1] in (2, 3):
        x, y = t[:, 0], t[:, 1]
    elif t.ndim == 2 and t.shape[1] == n_frames and t.shape[0] in (2, 3):
        x, y = t[0], t[1]
    else:
        raise CXIError(
            f"translation has shape {t.shape}; expected ({n_frames}, 3) or (3, {n_frames})"
        )
    return np.stack([y, x], axis=1)


def _scalar(h: h5py.File, key: str) -> float:
    d = _dataset(h, key)
    if d is None:
        raise CXIError(f"missing dataset /{key}")
    value = np.asarray(d[()]).ravel()
    if value.size == 0:
        raise CXIError(f"dataset /{key} is empty")
    return float(value[0])


def read_cxi(path: str | Path, truth: bool = True) -> Ptychogram:
    """Read a CXI ptychogram.

    Parameters
    ----------
    path : CXI file
    truth : also read the simulator's ground truth group when present

    Raises
    ------
    CXIError
        If the file is missing, not HDF5, lacks a required dataset, or holds bad values.
    """
    path = Path(path)
    if path.is_dir():
        raise CXIError(f"{path} is a directory, not a CXI file")
    if not path.is_file():
        raise CXIError(f"no such file: {path}")
    try:
        h = h5py.File(path, "r")
    except OSError as err:
        raise CXIError(f"{path} is not an HDF5/CXI file ({_first_line(err)})") from None
    try:
        with h:
            fields = _read_fields(h, truth)
    except CXIError as err:
        raise CXIError(f"{path}: {err}") from None
    except (KeyError, OSError, ValueError, TypeError, IndexError, UnicodeDecodeError) as err:
        raise CXIError(f"{path}: unreadable CXI content ({_first_line(err)})") from None
    return _ptychogram(**fields)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _dataset(h: h5py.File, key: str) -> h5py.Dataset | None:
    """The dataset at ``key``; None when missing, a dangling link or not a dataset."""
    try:
        obj = h.get(key)
    except (KeyError, OSError):
        return None
    return obj if isinstance(obj, h5py.Dataset) else None


def _optional(h: h5py.File, key: str) -> np.ndarray | None:
    d = _dataset(h, key)
    return None if d is None else d[()]


def _read_fields(h: h5py.File, truth: bool) -> dict[str, Any]:
    """Everything :class:`Ptychogram` needs from an open CXI file (raises CXIError)."""
    found = (_dataset(h, k) for k in (DETECTOR + "/data", "entry_1/data_1/data"))
    data = next((d for d in found if d is not None), None)
    if data is None:
        raise CXIError(f"missing dataset /{DETECTOR}/data")
    frames = np.asarray(data[()])
    if frames.ndim == 2:
        frames = frames[None]
    mask, dark = _optional(h, DETECTOR + "/mask"), _optional(h, DETECTOR + "/dark")
    cpp_key = DETECTOR + "/counts_per_photon"
    illum = _optional(h, SOURCE + "/illumination")
    pol = _optional(h, SOURCE + "/polarization")
    zp = None
    if isinstance(h.get(ZONE_PLATE), h5py.Group):
        zp = {k: _scalar(h, f"{ZONE_PLATE}/{k}") for k in ZONE_PLATE_FIELDS if k in h[ZONE_PLATE]}
    gt: dict[str, Any] = {}
    if truth and isinstance(h.get(SIMULATION), h5py.Group):
        g = h[SIMULATION]
        gt.update({k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()})
        gt.update({k: g[k][()] for k in g})
    return dict(
        frames=frames,
        positions_m=_read_translation(h, frames.shape[0]),
        energy_ev=_scalar(h, SOURCE + "/energy") / EV_J,
        distance_m=_scalar(h, DETECTOR + "/distance"),
        pixel_m=_scalar(h, DETECTOR + "/x_pixel_size"),
        mask=None if mask is None else mask.astype(bool),
        dark=None if dark is None else dark.astype(np.float32),
        counts_per_photon=_scalar(h, cpp_key) if _dataset(h, cpp_key) is not None else 1.0,
        illumination=None if illum is None else illum.astype(np.complex64),
        zone_plate=zp,
        polarization=pol.decode() if isinstance(pol, bytes) else str(pol or ""),
        truth=gt,
    )


def _ptychogram(**fields: Any) -> Ptychogram:
    frames, dark = fields["frames"], fields["dark"]
    if dark is not None and dark.shape != frames.shape[1:] and dark.ndim == 3:
        fields["dark"] = dark.mean(axis=0).astype(np.float32)
    return Ptychogram(**fields)
