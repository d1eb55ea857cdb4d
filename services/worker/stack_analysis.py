"""Stack analysis of a run's finished reconstructions, written back into Tiled.

When ptychograms of a run are done, the worker reads their objects from
``<run>/<results_key>/pNNNN``, puts them on one pixel grid (the object pixel scales with
the wavelength), aligns them (sub-pixel drift correction), converts them to optical density
and phase, forms XLD (``OD(LV) - OD(LH)``) and XMCD (``(OD(CR) - OD(CL)) / (OD(CR) +
OD(CL))``) maps where the polarizations pair up at one energy (:mod:`recon.stack`), and
writes a container ``<run>/<results_key>/stack`` next to the results:

=============  ===============  =================================================
array          shape, dtype     meaning
=============  ===============  =================================================
``od``         (K, H, W) f4     aligned optical density, one image per ptychogram
``phase``      (K, H, W) f4     aligned phase (rad), zero on the I0 region
``shifts``     (K, 2) f8        drift correction applied (dy, dx pixels)
``energies``   (K,) f8          energy of each image (eV)
``i0_mask``    (H, W) u1        sample-free region that gave I0
``xld``        (P, H, W) f4     XLD maps, energies in metadata ``xld_energies``
``xmcd``       (Q, H, W) f4     XMCD maps, energies in metadata ``xmcd_energies``
=============  ===============  =================================================

Metadata: ``kind: stack``, ``status`` (done or failed), ``indices`` (the ptychograms used),
``polarizations``, ``pixel_size_m``, ``xld_energies``, ``xmcd_energies``, ``updated``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from recon.stack import StackAnalysis, analyze_stack, resample_to_grid
from services.worker.tiled_io import put_array

log = logging.getLogger("sptycho.worker")

STACK_KEY = "stack"


def result_nodes(run: Any, key: str = "recon") -> list[tuple[int, Any]]:
    """(index, node) of the per-ptychogram results ``<run>/<key>/pNNNN`` of a run, by index.

    Other children of the results container (the ``stack`` analysis) are left out.
    """
    try:
        return indexed_results(run[key].items())
    except KeyError:
        return []


def indexed_results(children: Iterable[tuple[str, Any]]) -> list[tuple[int, Any]]:
    """(index, node) of the ``pNNNN`` results among a results container's (name, node)
    children, by index."""
    found = [(int(n[1:]), node) for n, node in children if n[:1] == "p" and n[1:].isdigit()]
    return sorted(found, key=lambda t: t[0])


def done_results(client: Any, uid: str, key: str = "recon") -> list[tuple[int, dict[str, Any]]]:
    """(index, metadata) of the finished (``status: done``) results of a run, by index."""
    out = []
    for index, node in result_nodes(client[uid], key):
        md = dict(node.metadata)
        if md.get("status") == "done" and "object" in node:
            out.append((index, md))
    return out


def analyze_run(
    client: Any, uid: str, key: str = "recon", *, min_images: int = 2
) -> StackAnalysis | None:
    """Analyse the finished reconstructions of one run and write ``<run>/<key>/stack``.

    Parameters
    ----------
    client : writable tiled client of the catalog root
    uid : the run's uid
    key : the run's results container
    min_images : do nothing with fewer finished ptychograms

    Returns
    -------
    the analysis, or None when there were too few results
    """
    results = done_results(client, uid, key)
    if len(results) < min_images:
        return None
    container = client[uid][key]
    objects = [np.asarray(container[f"p{i:04d}"]["object"].read()) for i, _ in results]
    pixels = [float(md.get("pixel_size_m") or 1.0) for _, md in results]
    energies = [float(md.get("energy_ev") or 0.0) for _, md in results]
    pols = [str(md.get("polarization") or "") for _, md in results]
    grid = resample_to_grid(objects, pixels)
    res = analyze_stack(grid, energies, pols)
    if STACK_KEY not in container:
        container.create_container(STACK_KEY, metadata={"kind": "stack", "status": "running"})
    node = client[uid][key][STACK_KEY]
    arrays = {
        "od": res.od,
        "phase": res.phase,
        "shifts": res.shifts.astype(np.float64),
        "energies": res.energies.astype(np.float64),
        "i0_mask": res.i0_mask.astype(np.uint8),
    }
    if res.xld.size:
        arrays["xld"] = res.xld
    if res.xmcd.size:
        arrays["xmcd"] = res.xmcd
    for name, value in arrays.items():
        put_array(node, name, value)
    node.update_metadata(
        metadata={
            "kind": "stack",
            "status": "done",
            "indices": [i for i, _ in results],
            "polarizations": res.polarizations,
            "pixel_size_m": max(pixels),
            "xld_energies": [float(e) for e in res.xld_energies],
            "xmcd_energies": [float(e) for e in res.xmcd_energies],
            "updated": time.time(),
        }
    )
    return res


def analyze_run_safely(client: Any, uid: str, key: str = "recon") -> StackAnalysis | None:
    """:func:`analyze_run` that logs a failure instead of raising (for the worker loop)."""
    try:
        return analyze_run(client, uid, key)
    except Exception as err:  # noqa: BLE001 - analysis must never stop the worker
        log.warning("run %s stack analysis failed: %s", uid[:8], err)
        return None
