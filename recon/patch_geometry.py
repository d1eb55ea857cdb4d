"""Where each frame of a chunk sits in the object: integer corners and sub-pixel bins.

:class:`PatchGeometry` is built once per chunk by the engine and handed to every kernel of
:mod:`recon.kernels` (which re-exports it); the index arrays the generic kernels need are
made on first use and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from recon.backend import get_xp


@dataclass
class PatchGeometry:
    """Integer corners and sub-pixel bins of the frames of one chunk.

    Attributes
    ----------
    corners : (M, 2) int64 top-left object pixel (row, col) of each frame's patch
    bins : (M,) int64 index of each frame's sub-pixel shift bin
    n : (ny, nx) frame shape
    obj_shape : (H, W) object shape
    """

    corners: Any
    bins: Any
    n: tuple[int, int]
    obj_shape: tuple[int, int]
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def xp(self) -> ModuleType:
        return get_xp(self.corners)

    def rows_cols(self) -> tuple[Any, Any]:
        """Broadcastable (M, n, 1) row and (M, 1, n) column indices into the object."""
        if "rc" not in self._cache:
            xp = self.xp
            ny, nx = self.n
            rows = self.corners[:, 0, None, None] + xp.arange(ny)[None, :, None]
            cols = self.corners[:, 1, None, None] + xp.arange(nx)[None, None, :]
            self._cache["rc"] = (rows, cols)
        return self._cache["rc"]

    def flat_index(self) -> Any:
        """(M, n, n) int64 flat indices of every patch pixel into the object."""
        if "flat" not in self._cache:
            rows, cols = self.rows_cols()
            self._cache["flat"] = rows * self.obj_shape[1] + cols
        return self._cache["flat"]

    def bin_order(self, n_bins: int) -> tuple[Any, Any]:
        """The frames grouped by bin: ``(order, starts)``, int64, bin ``b``'s frames at
        ``order[starts[b]:starts[b + 1]]`` in increasing index (``starts``: B + 1 entries)."""
        if "order" not in self._cache:
            xp = self.xp
            order = xp.argsort(self.bins, kind="stable").astype(np.int64)
            counts = xp.bincount(self.bins, minlength=n_bins)[:n_bins]
            starts = xp.zeros(n_bins + 1, np.int64)
            starts[1:] = xp.cumsum(counts)
            self._cache["order"] = (order, starts)
        return self._cache["order"]

    def bin_members(self, n_bins: int) -> list[Any]:
        """For each bin, the indices of the chunk's frames that use it."""
        if "members" not in self._cache:
            xp = self.xp
            self._cache["members"] = [xp.nonzero(self.bins == b)[0] for b in range(n_bins)]
        return self._cache["members"]
