"""The dose ledger: each sample's accumulated dose map, kept in Tiled across a beamtime.

Layout in the catalog root::

    dose/                     container, metadata {"kind": "dose ledger"}
    dose/<sample name>        float64 array (ny, nx): dose in Gy on a grid in stage
                              coordinates, metadata {"units": "Gy", "origin_m": [y, x]
                              (centre of pixel [0, 0]), "pixel_m", "axes": ["y", "x"],
                              "spot_m": the finest spot stamped, "runs": [uids that added
                              to it], "max_gray", "updated"}

The math lives in :mod:`recon.dose_map`; this module only reads and writes it. The
RunEngine adds each scan's exposures as they are taken (:mod:`services.dose_recorder`);
the plans read it to refuse a scan over budget (:mod:`plans.dose_check`); the page shows
it (``GET /api/dose/{sample}``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recon.dose_map import DoseMap, add_exposures, default_pixel_m, empty_map
from services.worker.tiled_io import put_array

#: Key of the ledger's container in the catalog root.
LEDGER_KEY = "dose"


def map_metadata(dose: DoseMap, runs: list[str], spot_m: float | None) -> dict[str, Any]:
    """The metadata of a sample's map node (JSON values)."""
    return {
        "units": "Gy",
        "origin_m": [float(dose.origin_m[0]), float(dose.origin_m[1])],
        "pixel_m": float(dose.pixel_m),
        "axes": ["y", "x"],
        "spot_m": spot_m,
        "runs": list(runs),
        "max_gray": float(dose.values.max()) if dose.values.size else 0.0,
        "updated": time.time(),
    }


def map_from_node(node: Any) -> tuple[DoseMap, dict[str, Any]]:
    """The :class:`DoseMap` and metadata of a sample's array node."""
    md = dict(node.metadata)
    values = np.asarray(node.read(), dtype=np.float64)
    origin = tuple(float(v) for v in md["origin_m"])
    return DoseMap(values, origin, float(md["pixel_m"])), md


class DoseLedger:
    """Read and add to the samples' dose maps in Tiled.

    Parameters
    ----------
    client : a writable tiled client of the catalog root, or None to make one with
        ``connect`` at the first use (a session whose Tiled answers later)
    connect : makes the client
    key : the ledger's container in the root
    """

    def __init__(
        self,
        client: Any = None,
        *,
        connect: Callable[[], Any] | None = None,
        key: str = LEDGER_KEY,
    ) -> None:
        if client is None and connect is None:
            raise ValueError("DoseLedger needs a tiled client or a way to connect")
        self._client = client
        self._connect = connect
        self.key = key
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The tiled client of the catalog root (made at the first call)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _container(self, create: bool) -> Any | None:
        root = self.client()
        if self.key in root:
            return root[self.key]
        if not create:
            return None
        return root.create_container(self.key, metadata={"kind": "dose ledger"})

    def samples(self) -> list[str]:
        """Names of the samples with a map."""
        container = self._container(create=False)
        return [] if container is None else list(container.keys())

    def read_node(self, sample: str) -> tuple[DoseMap, dict[str, Any]] | None:
        """The sample's map and its metadata, None when it has none."""
        container = self._container(create=False)
        if container is None or sample not in container:
            return None
        return map_from_node(container[sample])

    def read(self, sample: str) -> DoseMap | None:
        """The sample's accumulated dose map, None when it has none yet."""
        found = self.read_node(sample)
        return None if found is None else found[0]

    def add(
        self,
        sample: str,
        positions_m: np.ndarray,
        spot_m: float,
        dose_gray: np.ndarray | float,
        uid: str | None = None,
    ) -> DoseMap:
        """Add exposures to the sample's map and write it back.

        Parameters
        ----------
        sample : the sample's name (its key)
        positions_m : (N, 2) spot centres (y, x) in stage coordinates (m)
        spot_m : spot diameter (m)
        dose_gray : single-exposure dose (Gy), one for all or one per exposure
        uid : the run the exposures belong to (listed in the metadata)

        Returns
        -------
        DoseMap
            The map as written.
        """
        with self._lock:
            container = self._container(create=True)
            if sample in container:
                node = container[sample]
                before, md = map_from_node(node)
            else:
                node, md = None, {}
                before = empty_map(default_pixel_m(spot_m))
            after = add_exposures(before, positions_m, spot_m, dose_gray)
            runs = list(md.get("runs") or [])
            if uid and uid not in runs:
                runs.append(uid)
            finest = min(x for x in (md.get("spot_m"), spot_m) if x is not None)
            metadata = map_metadata(after, runs, finest)
            values = np.ascontiguousarray(after.values)
            if node is None:
                container.write_array(values, key=sample, metadata=metadata)
            else:  # the map only grows: written in place, the metadata after it
                put_array(container, sample, values, node).update_metadata(metadata=metadata)
            return after
