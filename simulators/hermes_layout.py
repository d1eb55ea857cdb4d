"""Write simulated ptychograms in the HERMES (SOLEIL) layout, with their ground truth.

The layout is the one :mod:`recon.hermes` reads (PyNX's ``pynx-hermespty.py``): a
description ``.hdf5`` with ``/entry1/camera/{sample_x, sample_y, energy}`` (um, eV), one
sample ``.nxs`` per energy and one dark ``.nxs`` with the frames in ``/entry/scan_data``.
The camera frames are stored in the camera's orientation, i.e. the inverse of PyNX's
HERMES ``detector_orientation=1,1,1``, so that reading them back gives the simulator's
frames exactly. The layout has no place for the detector distance or pixel size: the
importer takes them from its command line.

``truth.h5`` in the same folder holds the ground truth, one group ``nrjXX`` per energy::

    nrjXX/object         (H, W) complex64 sample transmission
    nrjXX/phase          (H, W) float32 its phase (rad)
    nrjXX/positions_px   (N, 2) float64 top-left patch corners in ``object`` pixels
    nrjXX attrs          energy_ev, object_pixel_size (m), frame_size, distance_m, pixel_m
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from recon.hermes import CAMERA, SCAN_DATA
from simulators.dataset import Simulation, SimulationParams, acquire

TRUTH_FILE = "truth.h5"


@dataclass
class HermesFolder:
    """What :func:`simulate_hermes` wrote: the description, samples, dark and truth."""

    description: Path
    samples: list[Path] = field(default_factory=list)
    dark: Path | None = None
    truth: Path | None = None
    n_frames: int = 0
    frame_size: int = 0
    distance_m: float = 0.0
    pixel_m: float = 0.0


def to_camera(frames: np.ndarray) -> np.ndarray:
    """Frames (..., ny, nx) in the CXI orientation -> the HERMES camera's orientation
    (inverse of transpose, flip up-down, flip left-right)."""
    return np.ascontiguousarray(np.swapaxes(frames[..., ::-1, ::-1], -1, -2))


def write_frames(path: Path, frames: np.ndarray, name: str) -> Path:
    """A ``.nxs`` file with ``frames`` as the dataset ``/entry/scan_data/<name>``."""
    with h5py.File(path, "w") as h:
        h.attrs["NX_class"] = "NXroot"
        h.create_group("entry").attrs["NX_class"] = "NXentry"
        data = h.create_group(SCAN_DATA)
        data.attrs["NX_class"] = "NXcollection"
        data.create_dataset(name, data=frames, chunks=(1, *frames.shape[1:]), compression="gzip")
    return path


def write_description(
    path: Path, positions_m: np.ndarray, energies_ev: Sequence[float] | float
) -> Path:
    """The description ``.hdf5``: raster axes (x fastest) when the positions are such a
    grid, else the full per-point coordinates; positions (N, 2) (y, x) in metres."""
    y, x = positions_m[:, 0] * 1e6, positions_m[:, 1] * 1e6
    ax_x, ax_y = np.unique(x), np.unique(y)
    yy, xx = np.meshgrid(ax_y, ax_x, indexing="ij")
    grid = ax_x.size * ax_y.size == len(x)
    if grid and np.array_equal(xx.ravel(), x) and np.array_equal(yy.ravel(), y):
        x, y = ax_x, ax_y
    with h5py.File(path, "w") as h:
        h.create_group("entry1").attrs["NX_class"] = "NXentry"
        cam = h.create_group(CAMERA)
        cam.attrs["NX_class"] = "NXcollection"
        for key, value, unit in (("sample_x", x, "um"), ("sample_y", y, "um")):
            cam.create_dataset(key, data=np.asarray(value, np.float64))
            cam[key].attrs["units"] = unit
        cam.create_dataset("energy", data=np.asarray(energies_ev, np.float64))
        cam["energy"].attrs["units"] = "eV"
    return path


def write_truth(path: Path, sims: Sequence[Simulation]) -> Path:
    """``truth.h5`` (see the module docstring) for the simulations, one group per energy."""
    with h5py.File(path, "w") as h:
        h.attrs["sample"] = sims[0].params.sample
        h.attrs["seed"] = sims[0].params.seed
        for k, sim in enumerate(sims, start=1):
            g = h.create_group(f"nrj{k:02d}")
            g.create_dataset("object", data=sim.obj.astype(np.complex64))
            g.create_dataset("phase", data=np.angle(sim.obj).astype(np.float32))
            g.create_dataset("positions_px", data=sim.positions_px)
            g.attrs["energy_ev"] = sim.params.energy_ev
            g.attrs["object_pixel_size"] = sim.pixel_m
            g.attrs["frame_size"] = sim.params.frame_size
            g.attrs["distance_m"] = sim.params.distance_m
            g.attrs["pixel_m"] = sim.detector.pixel_m * sim.binning
    return path


def simulate_hermes(
    folder: str | Path,
    energies_ev: Sequence[float] | None = None,
    *,
    date: str = "20240101",
    scan: int = 1,
    progress: Callable[[int, int], None] | None = None,
    **kwargs: object,
) -> HermesFolder:
    """Simulate one scan into a HERMES folder (and ``truth.h5``).

    Parameters
    ----------
    folder : output folder (created)
    energies_ev : energies of a stack (``Stack_...`` files); None: one image at
        ``kwargs["energy_ev"]`` (``Image_...`` files)
    date, scan : used in the file names (``YYYYMMDD``, scan number)
    progress : called as ``progress(done, total)`` after each frame, over all energies
    **kwargs : :class:`simulators.dataset.SimulationParams` fields (same scan at each energy)

    Returns
    -------
    HermesFolder with the paths written
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stack = energies_ev is not None
    energies = [float(e) for e in energies_ev] if stack else [float(kwargs.pop("energy_ev", 192.0))]
    kwargs.pop("energy_ev", None)
    sims = [Simulation(SimulationParams(energy_ev=e, **kwargs)) for e in energies]
    for s in sims[1:]:
        if not np.allclose(s.positions_m, sims[0].positions_m):
            raise ValueError("the scan positions differ between energies")
    kind = "stack" if stack else "image"
    prefix = f"{kind}_{date}_{scan:03d}"
    out = HermesFolder(description=folder / f"{kind.capitalize()}_{date}_{scan:03d}.hdf5")
    total = sum(s.n_points for s in sims)
    for k, sim in enumerate(sims):
        done = k * sim.n_points

        def step(i: int, _n: int, done: int = done) -> None:
            if progress:
                progress(done + i, total)

        frames, darks = acquire(sim, step)
        name = f"{prefix}_nrj{k + 1:02d}_000001.nxs" if stack else f"{prefix}_000001.nxs"
        out.samples.append(write_frames(folder / name, to_camera(frames), f"{prefix}_image"))
        if k == 0:  # one dark per scan; PyNX drops its first frame
            darks = np.concatenate([sims[0].dark_frame()[None].astype(darks.dtype), darks])
            out.dark = write_frames(
                folder / f"{prefix}_dark_000001.nxs", to_camera(darks), f"{prefix}_image"
            )
    write_description(out.description, sims[0].positions_m, energies if stack else energies[0])
    out.truth = write_truth(folder / TRUTH_FILE, sims)
    out.n_frames, out.frame_size = sims[0].n_points, sims[0].params.frame_size
    out.distance_m = sims[0].params.distance_m
    out.pixel_m = sims[0].detector.pixel_m * sims[0].binning
    return out


def truth_on_result_grid(
    truth_path: str | Path, number: int, positions: np.ndarray, obj_shape: tuple[int, int]
) -> np.ndarray:
    """The true object of energy ``nrj<number>`` cut to a reconstruction's grid.

    Parameters
    ----------
    truth_path : ``truth.h5`` of :func:`simulate_hermes`
    number : energy number (1-based, as in the file names)
    positions : (N, 2) float64 probe centres (row, col) in the reconstruction's object, the
        frames in the simulated order (a result file's ``positions``)
    obj_shape : (H, W) of the reconstructed object

    Returns
    -------
    (H, W) complex64 truth on the reconstruction's pixels (integer offset; 1 outside)
    """
    with h5py.File(truth_path, "r") as h:
        g = h[f"nrj{number:02d}"]
        obj = g["object"][()]
        centres = g["positions_px"][()] + g.attrs["frame_size"] // 2
    offset = np.round(np.mean(centres - np.asarray(positions), axis=0)).astype(int)
    out = np.ones(obj_shape, np.complex64)
    top, left = int(offset[0]), int(offset[1])
    rows = slice(max(0, top), min(obj.shape[0], top + obj_shape[0]))
    cols = slice(max(0, left), min(obj.shape[1], left + obj_shape[1]))
    out[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = obj[rows, cols]
    return out
