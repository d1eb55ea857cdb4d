"""The HDF5 file of an acquisition series, as NDFileHDF5 writes it in Stream mode (SWMR).

Frames go to ``/entry/data/data`` (shape ``(frames, n, n)``), the beam state of each frame to
``/entry/instrument/NDAttributes/<key>`` (float64, one value per frame).
"""

from __future__ import annotations

import h5py
import numpy as np

from simulators.ioc.physics import BeamState

#: Beam state fields written with every frame.
ATTRIBUTES = (
    "energy_ev",
    "sample_x_m",
    "sample_y_m",
    "zp_z_m",
    "flux_ph_s",
    "shutter_open",
)


class FrameFile:
    """One HDF5 file of an acquisition series, written in SWMR mode.

    Parameters
    ----------
    path : file to create
    n : frame width and height (pixels)
    dtype : frame dtype (uint16 or uint32)
    """

    def __init__(self, path: str, n: int, dtype: np.dtype) -> None:
        self.path = path
        self.h5 = h5py.File(path, "w", libver="latest")
        data = self.h5.require_group("entry/data")
        self.data = data.create_dataset(
            "data", shape=(0, n, n), maxshape=(None, n, n), chunks=(1, n, n), dtype=dtype
        )
        attrs = self.h5.require_group("entry/instrument/NDAttributes")
        self.attrs = {
            key: attrs.create_dataset(key, shape=(0,), maxshape=(None,), dtype="f8")
            for key in ATTRIBUTES
        }
        self.h5.swmr_mode = True
        self.count = 0

    def append(self, frame: np.ndarray, state: BeamState) -> None:
        """Write one frame and its beam state at record ``count``, then flush for readers.

        A record that exists already (the client rewound ``count``) is overwritten.
        """
        i = self.count
        if frame.shape != self.data.shape[1:]:
            raise ValueError(f"frame shape {frame.shape} differs from {self.data.shape[1:]}")
        if self.data.shape[0] < i + 1:
            self.data.resize(i + 1, axis=0)
            for dset in self.attrs.values():
                dset.resize(i + 1, axis=0)
        self.data[i] = frame
        for key, dset in self.attrs.items():
            dset[i] = float(getattr(state, key))
        self.h5.flush()
        self.count = i + 1

    def rewind(self, record: int) -> None:
        """Write the next frame at ``record`` (0 <= record <= count)."""
        if not 0 <= record <= self.count:
            raise ValueError(f"record {record} is outside 0..{self.count}")
        self.count = record

    def close(self) -> None:
        """Cut the datasets to ``count`` records (rejected frames go) and close the file."""
        if self.data.shape[0] > self.count:
            self.data.resize(self.count, axis=0)
            for dset in self.attrs.values():
                dset.resize(self.count, axis=0)
        self.h5.close()
