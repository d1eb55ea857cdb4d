"""Read ptychograms in the HERMES (SOLEIL) layout that PyNX's ``pynx-hermespty.py`` reads.

A HERMES folder holds, per scan (``<date>`` as ``YYYYMMDD``, ``<scan>`` a number)::

    Image_<date>_<scan>.hdf5                 description: one energy
    image_<date>_<scan>_000001.nxs           sample frames
    image_<date>_<scan>_dark_000001.nxs      dark frames

or, for an energy stack::

    Stack_<date>_<scan>.hdf5                 description of the whole stack
    stack_<date>_<scan>_nrjXX_000001.nxs     sample frames of energy XX (01, 02, ...)
    stack_<date>_<scan>_dark_000001.nxs      dark frames, one file for the stack

As PyNX reads them:

* ``/entry1/camera/sample_x`` and ``sample_y`` (micrometres) are either the two axes of a
  raster, meshed row by row with x fastest (point ``i + j * n_x`` at
  ``(sample_x[i], sample_y[j])``), or the full per-point coordinates (PyNX's
  ``real_coordinates``); :func:`read_positions` tells them apart by their lengths;
* ``/entry1/camera/energy`` (eV) holds one value per energy; file ``nrjXX`` is energy
  ``XX - 1`` of that array;
* the frames are the first dataset of the ``/entry/scan_data`` group of a ``.nxs`` file,
  whatever its name; the first dark frame is dropped (PyNX: "not a good one") and the
  others averaged;
* the camera frames are turned to the CXI orientation by PyNX's HERMES default
  ``detector_orientation=1,1,1``: transpose, then flip up-down, then flip left-right;
* PyNX passes ``sample_x``/``sample_y`` to the engine exactly as it passes a CXI file's
  ``translation[0:2]``, so they become the CXI translation (x, y) one to one.

The files hold neither the detector distance nor the pixel size (PyNX takes both from its
command line), so :func:`read_hermes` takes them as arguments. Frames are returned raw,
with the averaged dark, as :class:`recon.cxi.Ptychogram` wants them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from recon.cxi import CXIError, Ptychogram
from recon.probe import ZonePlate

CAMERA = "entry1/camera"
SCAN_DATA = "entry/scan_data"
#: PyNX's HERMES default: transpose, flip up-down, flip left-right.
PYNX_ORIENTATION = (True, True, True)
_DESCRIPTION = re.compile(r"^(stack|image)_([^_]+)_(\d+)\.hdf5$", re.IGNORECASE)


class HermesError(CXIError):
    """A HERMES folder that cannot be read; the message is one line naming the problem."""


@dataclass
class HermesScan:
    """The files of one HERMES scan.

    Attributes
    ----------
    kind : "stack" or "image"
    date, number : from the file names (``number`` as an int)
    description : the ``.hdf5`` description file
    dark : the dark ``.nxs`` file
    samples : sample ``.nxs`` files, in energy order (one for an image)
    energy_indices : 0-based index into ``/entry1/camera/energy`` of each sample file
    """

    kind: str
    date: str
    number: int
    description: Path
    dark: Path
    samples: list[Path] = field(default_factory=list)
    energy_indices: list[int] = field(default_factory=list)


def find_scans(folder: str | Path) -> list[HermesScan]:
    """Scans in a HERMES folder, by scan number.

    Raises
    ------
    HermesError
        When the folder is missing, holds no description file, or a scan lacks its dark or
        sample files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HermesError(f"no such folder: {folder}")
    scans = []
    for path in sorted(folder.iterdir()):
        m = _DESCRIPTION.match(path.name)
        if m:
            scans.append(_scan_files(folder, path, m.group(1).lower(), m.group(2), m.group(3)))
    if not scans:
        raise HermesError(f"no HERMES description file (Stack_*.hdf5 or Image_*.hdf5) in {folder}")
    return sorted(scans, key=lambda s: s.number)


def _scan_files(folder: Path, description: Path, kind: str, date: str, num: str) -> HermesScan:
    prefix = f"{kind}_{date}_{num}_"
    names = [p.name for p in folder.iterdir() if p.suffix == ".nxs" and p.name.startswith(prefix)]
    darks = sorted(n for n in names if re.fullmatch(re.escape(prefix) + r"dark_\d+\.nxs", n))
    if not darks:
        raise HermesError(f"no dark file {prefix}dark_000001.nxs for {description.name}")
    scan = HermesScan(kind, date, int(num), description, folder / darks[0])
    if kind == "stack":
        found = []
        for n in names:
            m = re.fullmatch(re.escape(prefix) + r"nrj(\d+)_\d+\.nxs", n)
            if m:
                found.append((int(m.group(1)), n))
        for index, n in sorted(found):
            if index < 1:
                raise HermesError(f"{n}: energy numbers start at nrj01")
            scan.samples.append(folder / n)
            scan.energy_indices.append(index - 1)
    else:
        found_img = sorted(n for n in names if re.fullmatch(re.escape(prefix) + r"\d+\.nxs", n))
        scan.samples = [folder / n for n in found_img[:1]]
        scan.energy_indices = [0] * len(scan.samples)
    if not scan.samples:
        raise HermesError(f"no sample .nxs file for {description.name} in {folder}")
    return scan


def first_dataset(path: str | Path, group: str = SCAN_DATA) -> np.ndarray:
    """The first dataset (in the group's order) of ``group`` in a ``.nxs`` file.

    Returns
    -------
    (N, ny, nx) array as stored (a single 2-D frame becomes (1, ny, nx))
    """
    try:
        with h5py.File(path, "r") as h:
            g = h.get(group)
            if not isinstance(g, h5py.Group):
                raise HermesError(f"{Path(path).name}: no group /{group}")
            names = [k for k in g if isinstance(g.get(k), h5py.Dataset)]
            if not names:
                raise HermesError(f"{Path(path).name}: /{group} holds no dataset")
            data = np.asarray(g[names[0]][()])
    except OSError as err:
        raise HermesError(f"{Path(path).name} is not an HDF5/NeXus file ({err})") from None
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise HermesError(f"{Path(path).name}: frames have shape {data.shape}, not (N, ny, nx)")
    return data


def _camera(description: Path, name: str) -> np.ndarray:
    try:
        with h5py.File(description, "r") as h:
            d = h.get(f"{CAMERA}/{name}")
            if not isinstance(d, h5py.Dataset):
                raise HermesError(f"{description.name}: missing /{CAMERA}/{name}")
            return np.atleast_1d(np.asarray(d[()], dtype=np.float64))
    except OSError as err:
        raise HermesError(f"{description.name} is not an HDF5 file ({err})") from None


def read_positions(description: str | Path, n_frames: int) -> np.ndarray:
    """Probe positions of a scan from its description file.

    ``sample_x``/``sample_y`` are full per-point coordinates when both have ``n_frames``
    values, else the axes of a raster (x fastest) when ``len(x) * len(y) == n_frames``.

    Returns
    -------
    (n_frames, 2) float64 positions (y, x) in metres

    Raises
    ------
    HermesError
        When neither reading gives ``n_frames`` positions.
    """
    description = Path(description)
    x = _camera(description, "sample_x") * 1e-6
    y = _camera(description, "sample_y") * 1e-6
    if x.size == n_frames and y.size == n_frames:
        pos = np.stack([y, x], axis=1)
    elif x.size * y.size == n_frames:
        yy, xx = np.meshgrid(y, x, indexing="ij")  # row j holds every x: x fastest
        pos = np.stack([yy.ravel(), xx.ravel()], axis=1)
    else:
        raise HermesError(
            f"{description.name}: {n_frames} frames but sample_x/sample_y give "
            f"{x.size} x {y.size} grid points (or {min(x.size, y.size)} coordinates)"
        )
    if not np.isfinite(pos).all():
        raise HermesError(f"{description.name}: sample_x/sample_y hold NaN or infinite values")
    return pos


def orient(frames: np.ndarray, orientation: Sequence[bool] = PYNX_ORIENTATION) -> np.ndarray:
    """Camera frames (..., ny, nx) turned by PyNX's ``detector_orientation`` flags
    (transpose, flip up-down, flip left-right, in that order)."""
    transpose, flipud, fliplr = (bool(f) for f in orientation)
    if transpose:
        frames = np.swapaxes(frames, -1, -2)
    if flipud:
        frames = frames[..., ::-1, :]
    if fliplr:
        frames = frames[..., ::-1]
    return np.ascontiguousarray(frames)


def read_dark(path: str | Path) -> np.ndarray:
    """(ny, nx) float32 averaged dark of a dark ``.nxs`` file, its first frame dropped
    when there are several (as PyNX does)."""
    darks = first_dataset(path)
    if darks.shape[0] > 1:
        darks = darks[1:]
    return darks.mean(axis=0, dtype=np.float64).astype(np.float32)


def read_hermes(
    folder: str | Path,
    distance_m: float,
    pixel_m: float,
    *,
    scan: int | None = None,
    energies_ev: Sequence[float] | None = None,
    orientation: Sequence[bool] = PYNX_ORIENTATION,
    counts_per_photon: float = 1.0,
    polarization: str = "",
    zone_plate: ZonePlate | None = None,
    spot_m: float | None = None,
) -> list[Ptychogram]:
    """Ptychograms (one per energy) of a HERMES scan.

    Parameters
    ----------
    folder : the HERMES folder
    distance_m, pixel_m : sample-detector distance and detector pixel pitch (m)
    scan : scan number; needed only when the folder holds several scans
    energies_ev : energies that replace the description's (one per sample file)
    orientation : PyNX ``detector_orientation`` flags (default: HERMES's ``1,1,1``)
    counts_per_photon : detector gain (counts per photon)
    polarization : LH, LV, CL, CR or "" when unknown
    zone_plate : the zone plate optics (the initial probe of the reconstruction); HERMES
        files do not hold them
    spot_m : spot diameter on the sample (m); with ``zone_plate``, sets the defocus at each
        energy (0, in focus, when None)

    Returns
    -------
    list of Ptychogram with raw frames (N, ny, nx) in the stored dtype and the averaged dark

    Raises
    ------
    HermesError
        For a missing folder or file, a frame count that does not match the positions, an
        energy index outside the description, or a bad distance / pixel size.
    """
    if not (distance_m > 0 and pixel_m > 0):
        raise HermesError("the detector distance and pixel size must be given and > 0")
    s = select_scan(find_scans(folder), scan)
    energies = _camera(s.description, "energy")
    if energies_ev is not None:
        if len(energies_ev) != len(s.samples):
            raise HermesError(f"{len(energies_ev)} energies given for {len(s.samples)} files")
        chosen = [float(e) for e in energies_ev]
    else:
        bad = [i + 1 for i in s.energy_indices if i >= energies.size]
        if bad:
            raise HermesError(
                f"{s.description.name} lists {energies.size} energies: none for nrj{bad[0]:02d}"
            )
        chosen = [float(energies[i]) for i in s.energy_indices]
    dark = orient(read_dark(s.dark), orientation)
    out = []
    for path, energy in zip(s.samples, chosen, strict=True):
        frames = first_dataset(path)
        positions = read_positions(s.description, frames.shape[0])
        frames = orient(frames, orientation)
        if dark.shape != frames.shape[1:]:
            raise HermesError(
                f"dark frames {dark.shape} do not match {path.name} {frames.shape[1:]}"
            )
        out.append(
            Ptychogram(
                zone_plate=_optics(zone_plate, spot_m, energy),
                frames=frames,
                positions_m=positions,
                energy_ev=energy,
                distance_m=float(distance_m),
                pixel_m=float(pixel_m),
                dark=dark,
                counts_per_photon=counts_per_photon,
                polarization=polarization,
            )
        )
    return out


def _optics(zp: ZonePlate | None, spot_m: float | None, energy_ev: float) -> dict | None:
    """The CXI ``zone_plate`` fields of ``zp`` with the defocus giving ``spot_m``."""
    if zp is None:
        return None
    try:
        defocus = zp.defocus_m(spot_m, energy_ev) if spot_m else 0.0
    except ValueError as err:
        raise HermesError(str(err)) from None
    return {
        "outer_diameter": zp.outer_diameter,
        "outermost_zone_width": zp.outermost_zone_width,
        "central_stop_diameter": zp.central_stop_diameter,
        "defocus": defocus,
    }


def select_scan(scans: list[HermesScan], number: int | None) -> HermesScan:
    """The scan ``number``, or the only one when ``number`` is None."""
    if number is None:
        if len(scans) > 1:
            found = ", ".join(str(s.number) for s in scans)
            raise HermesError(f"the folder holds scans {found}: choose one")
        return scans[0]
    for s in scans:
        if s.number == number:
            return s
    raise HermesError(f"no scan {number} in the folder ({', '.join(str(s.number) for s in scans)})")
