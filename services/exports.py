"""Exports of ptychograms and stacks for other programs.

* CXI, one file per ptychogram (:func:`export_cxi`), as PyNX ``pynx-cxipty`` and PtyPy
  read them (:func:`recon.cxi.write_cxi`);
* NeXus ``NXstxm`` stacks of OD images with their energies for aXis2000 and MANTiS
  (:func:`write_nxstxm`, :func:`read_nxstxm`, checked by :func:`validate_nxstxm`);
* TIFF stacks (:func:`write_tiff_stack`, ``tifffile``) and CSV spectra
  (:func:`write_spectra_csv`).

Imports (CXI files and HERMES folders as runs) are in :mod:`services.imports`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.cxi import Ptychogram, write_cxi

# ---------------------------------------------------------------------------------------------
# CXI
# ---------------------------------------------------------------------------------------------


def cxi_name(index: int, p: Ptychogram) -> str:
    """File name of ptychogram ``index``: ``p0003_192.00eV_LH.cxi``."""
    pol = f"_{p.polarization}" if p.polarization else ""
    return f"p{index:04d}_{p.energy_ev:.2f}eV{pol}.cxi"


def export_cxi(ptychograms: Sequence[Ptychogram], directory: str | Path) -> list[Path]:
    """Write each ptychogram to its own CXI file in ``directory``; returns the paths."""
    directory = Path(directory)
    return [write_cxi(directory / cxi_name(i, p), p) for i, p in enumerate(ptychograms)]


# ---------------------------------------------------------------------------------------------
# NeXus NXstxm
# ---------------------------------------------------------------------------------------------

#: Required content of an NXstxm entry (NeXus application definition NXstxm):
#: path -> NX_class of the group, or None for a field.
NXSTXM_REQUIRED: dict[str, str | None] = {
    "": "NXentry",
    "title": None,
    "start_time": None,
    "end_time": None,
    "definition": None,
    "instrument": "NXinstrument",
    "instrument/source": "NXsource",
    "instrument/source/type": None,
    "instrument/source/name": None,
    "instrument/source/probe": None,
    "instrument/monochromator": "NXmonochromator",
    "instrument/monochromator/energy": None,
    "instrument/detector": "NXdetector",
    "instrument/detector/data": None,
    "instrument/sample_x": "NXdetector",
    "instrument/sample_x/data": None,
    "instrument/sample_y": "NXdetector",
    "instrument/sample_y/data": None,
    "sample": "NXsample",
    "sample/rotation_angle": None,
    "data": "NXdata",
    "data/stxm_scan_type": None,
    "data/data": None,
    "data/energy": None,
    "data/sample_x": None,
    "data/sample_y": None,
    "control": "NXmonitor",
    "control/data": None,
}


def _cls(node: Any) -> str:
    v = node.attrs.get("NX_class", "")
    return v.decode() if isinstance(v, bytes) else str(v)


def _text(value: Any) -> str:
    v = value[()] if hasattr(value, "shape") else value
    return v.decode() if isinstance(v, bytes) else str(v)


def write_nxstxm(
    path: str | Path,
    od: np.ndarray,
    energies: Sequence[float],
    pixel_m: float,
    *,
    title: str = "sptycho OD stack",
    sample_name: str = "sample",
    i0: Sequence[float] | None = None,
    start_time: str = "1970-01-01T00:00:00Z",
    end_time: str | None = None,
) -> Path:
    """Write an OD stack as a NeXus ``NXstxm`` "sample image" stack (aXis2000, MANTiS).

    Parameters
    ----------
    path : output file (``.nxs`` or ``.h5``)
    od : (K, H, W) float optical density, one image per energy
    energies : (K,) energies (eV)
    pixel_m : image pixel size (m); ``sample_x``/``sample_y`` are written in micrometres
    title, sample_name : descriptive strings
    i0 : (K,) incident intensity per energy for ``control/data`` (default ones)
    start_time, end_time : ISO 8601 times

    Returns
    -------
    the path
    """
    od = np.asarray(od, dtype=np.float32)
    e = np.asarray(energies, dtype=np.float64)
    if od.ndim != 3 or od.shape[0] != len(e):
        raise ValueError(f"need a (K, H, W) stack with K = {len(e)} energies, got {od.shape}")
    k, h, w = od.shape
    x_um = (np.arange(w) - (w - 1) / 2) * pixel_m * 1e6
    y_um = (np.arange(h) - (h - 1) / 2) * pixel_m * 1e6
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry1"
        f.attrs["NX_class"] = "NXroot"
        f.attrs["creator"] = "sptycho"
        entry = f.create_group("entry1")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        entry["title"] = title
        entry["start_time"] = start_time
        entry["end_time"] = end_time or start_time
        entry["definition"] = "NXstxm"
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        src = inst.create_group("source")
        src.attrs["NX_class"] = "NXsource"
        src["type"] = "Synchrotron X-ray Source"
        src["name"] = "sptycho"
        src["probe"] = "x-ray"
        mono = inst.create_group("monochromator")
        mono.attrs["NX_class"] = "NXmonochromator"
        mono["energy"] = e
        mono["energy"].attrs["units"] = "eV"
        det = inst.create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = od
        det["data"].attrs["units"] = "optical density"
        for name, values in (("sample_x", x_um), ("sample_y", y_um)):
            g = inst.create_group(name)
            g.attrs["NX_class"] = "NXdetector"
            g["data"] = values
            g["data"].attrs["units"] = "um"
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        sample["rotation_angle"] = 0.0
        sample["name"] = sample_name
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        data.attrs["axes"] = ["energy", "sample_y", "sample_x"]
        data.attrs["energy_indices"] = 0
        data.attrs["sample_y_indices"] = 1
        data.attrs["sample_x_indices"] = 2
        data["stxm_scan_type"] = "sample image stack"
        data["data"] = h5py.SoftLink("/entry1/instrument/detector/data")
        data["energy"] = h5py.SoftLink("/entry1/instrument/monochromator/energy")
        data["sample_x"] = h5py.SoftLink("/entry1/instrument/sample_x/data")
        data["sample_y"] = h5py.SoftLink("/entry1/instrument/sample_y/data")
        control = entry.create_group("control")
        control.attrs["NX_class"] = "NXmonitor"
        control["data"] = np.ones(k) if i0 is None else np.asarray(i0, dtype=np.float64)
    return path


def validate_nxstxm(path: str | Path) -> list[str]:
    """Problems of an ``NXstxm`` file against the required fields of the definition.

    Checks every ``NXentry`` whose ``definition`` is ``NXstxm``: the required groups (with
    their ``NX_class``) and fields of :data:`NXSTXM_REQUIRED`, that ``data/data`` has
    the dimensions (n_E, n_y, n_x) of ``energy``, ``sample_y``, ``sample_x`` (or (n_E, n_x)
    for a line or (n_E,) for a point), that ``control/data`` has n_E values and that the
    scan type is one the definition lists.

    Returns
    -------
    list of one-line problems; empty when the file is valid
    """
    problems: list[str] = []
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return [f"{path} is not an HDF5 file ({err})"]
    with f:
        entries = [k for k in f if isinstance(f[k], h5py.Group) and _cls(f[k]) == "NXentry"]
        stxm = [
            k for k in entries if "definition" in f[k] and _text(f[k]["definition"]) == "NXstxm"
        ]
        if not stxm:
            return ["no NXentry with definition NXstxm"]
        for name in stxm:
            entry = f[name]
            for rel, cls in NXSTXM_REQUIRED.items():
                if not rel:
                    continue
                if rel not in entry:
                    problems.append(f"/{name}/{rel} is missing")
                    continue
                node = entry[rel]
                if cls is not None:
                    if not isinstance(node, h5py.Group):
                        problems.append(f"/{name}/{rel} must be a group")
                    elif _cls(node) != cls:
                        problems.append(f"/{name}/{rel} has NX_class {_cls(node)!r}, not {cls}")
                elif not isinstance(node, h5py.Dataset):
                    problems.append(f"/{name}/{rel} must be a field")
            if problems:
                continue
            data = entry["data"]
            scan = _text(data["stxm_scan_type"])
            if scan not in STXM_SCAN_TYPES:
                problems.append(f"/{name}/data/stxm_scan_type {scan!r} is not an NXstxm scan type")
            n_e = int(data["energy"].shape[0]) if data["energy"].ndim else 1
            n_x = int(data["sample_x"].shape[0]) if data["sample_x"].ndim else 1
            n_y = int(data["sample_y"].shape[0]) if data["sample_y"].ndim else 1
            shape = tuple(data["data"].shape)
            allowed = {(n_e, n_y, n_x), (n_e, n_x), (n_e,)}
            if shape not in allowed:
                problems.append(
                    f"/{name}/data/data has shape {shape}, expected ({n_e}, {n_y}, {n_x})"
                )
            if entry["instrument/monochromator/energy"].shape != data["energy"].shape:
                problems.append(f"/{name}/instrument/monochromator/energy differs from data/energy")
            if int(np.size(entry["control/data"])) != n_e:
                problems.append(f"/{name}/control/data must hold {n_e} values (one per energy)")
    return problems


#: ``stxm_scan_type`` values of the NXstxm definition.
STXM_SCAN_TYPES = (
    "sample point spectrum",
    "sample line spectrum",
    "sample image",
    "sample image stack",
    "sample focus",
    "sample line focus",
    "osa image",
    "osa focus",
    "detector image",
    "generic scan",
)


def read_nxstxm(path: str | Path) -> dict[str, np.ndarray]:
    """Read an NXstxm stack: ``data`` (K, H, W), ``energy`` (K,), ``sample_x`` (W,),
    ``sample_y`` (H,) and ``control`` (K,), all float64 except ``data`` (as stored)."""
    with h5py.File(path, "r") as f:
        name = next(
            k
            for k in f
            if isinstance(f[k], h5py.Group)
            and "definition" in f[k]
            and _text(f[k]["definition"]) == "NXstxm"
        )
        e = f[name]
        return {
            "data": e["data/data"][()],
            "energy": np.asarray(e["data/energy"][()], np.float64),
            "sample_x": np.asarray(e["data/sample_x"][()], np.float64),
            "sample_y": np.asarray(e["data/sample_y"][()], np.float64),
            "control": np.asarray(e["control/data"][()], np.float64),
        }


# ---------------------------------------------------------------------------------------------
# TIFF and CSV
# ---------------------------------------------------------------------------------------------


def write_tiff_stack(
    path: str | Path, stack: np.ndarray, energies: Sequence[float] | None = None
) -> Path:
    """Write a (K, H, W) float32 stack as a multi-page TIFF; energies go in the first
    page's description as JSON (``{"energies_ev": [...]}``)."""
    import tifffile

    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 3:
        raise ValueError(f"need a (K, H, W) stack, got shape {stack.shape}")
    meta = {"energies_ev": [float(x) for x in energies] if energies is not None else None}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path, stack, description=json.dumps(meta), metadata=None, photometric="minisblack"
    )
    return path


def read_tiff_stack(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(K, H, W) stack and (K,) energies (or None) of :func:`write_tiff_stack`."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        stack = tif.asarray()
        desc = tif.pages[0].description
    if stack.ndim == 2:
        stack = stack[None]
    try:
        energies = json.loads(desc).get("energies_ev")
    except (ValueError, AttributeError):
        energies = None
    return stack, None if energies is None else np.asarray(energies, np.float64)


def write_spectra_csv(
    path: str | Path, energies: Sequence[float], spectra: dict[str, Sequence[float]]
) -> Path:
    """Write spectra as CSV: a header ``energy_ev,<name>,...`` and one row per energy."""
    e = np.asarray(energies, dtype=np.float64)
    cols = {k: np.asarray(v, dtype=np.float64) for k, v in spectra.items()}
    for k, v in cols.items():
        if v.shape != e.shape:
            raise ValueError(f"spectrum {k!r} has {v.size} values for {e.size} energies")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["energy_ev", *cols])
        for i, energy in enumerate(e):
            w.writerow([repr(float(energy)), *(repr(float(v[i])) for v in cols.values())])
    return path


def read_spectra_csv(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(K,) energies and {name: (K,) spectrum} of :func:`write_spectra_csv`."""
    with Path(path).open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][0] != "energy_ev":
        raise ValueError(f"{path} is not a spectra CSV (first column must be energy_ev)")
    values = np.asarray([[float(x) for x in r] for r in rows[1:]], dtype=np.float64)
    values = values.reshape(-1, len(rows[0]))
    return values[:, 0], {name: values[:, i + 1] for i, name in enumerate(rows[0][1:])}
