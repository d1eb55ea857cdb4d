"""``/api/dose``: the samples' accumulated dose maps (the dose ledger in Tiled).

``GET /api/dose`` lists the samples with a map; ``GET /api/dose/{sample}`` returns one map
in stage coordinates (µm) with its peak and the runs that added to it, pixels merged into
their maximum above ``max_side`` a side (the peak is kept). An unknown sample is a 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from recon.dose_map import coarsened
from services.api.deps import Tiled
from services.dose_ledger import DoseLedger

router = APIRouter(prefix="/api/dose", tags=["dose"])


@router.get("")
def dose_samples(tiled: Tiled) -> dict[str, Any]:
    """``{"samples": [names]}``: the samples the ledger holds a map of."""
    return {"samples": DoseLedger(tiled.client()).samples()}


@router.get("/{sample}")
def dose_map(
    sample: str, tiled: Tiled, max_side: int = Query(300, ge=8, le=2000)
) -> dict[str, Any]:
    """The sample's dose map: ``x_um``, ``y_um`` (pixel centres), ``dose_gray`` (rows y,
    columns x), ``max_gray`` and where it is, ``pixel_um``, ``runs``, ``units``."""
    found = DoseLedger(tiled.client()).read_node(sample)
    if found is None:
        raise KeyError(f"no dose map of sample {sample!r}")
    full, md = found
    shown = coarsened(full, max_side)
    y, x = shown.coordinates_m()
    values = shown.values
    peak = divmod(int(values.argmax()), values.shape[1]) if values.size else (0, 0)
    return {
        "sample": sample,
        "units": "Gy",
        "x_um": (x * 1e6).tolist(),
        "y_um": (y * 1e6).tolist(),
        "dose_gray": values.tolist(),
        "max_gray": float(full.values.max()) if full.values.size else 0.0,
        "max_at_um": [float(x[peak[1]] * 1e6), float(y[peak[0]] * 1e6)] if values.size else None,
        "pixel_um": shown.pixel_m * 1e6,
        "full_shape": list(full.values.shape),
        "runs": list(md.get("runs") or []),
        "updated": md.get("updated"),
    }
