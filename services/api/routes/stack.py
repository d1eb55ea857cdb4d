"""``/api/runs/{uid}/stack`` and ``/spectrum``: the stack analysis of a run.

- ``GET /api/runs/{uid}/stack``: its metadata, energies and how many maps it holds
- ``GET /api/runs/{uid}/stack/{map}/{j}.png``: od, phase, xld or xmcd map ``j`` as a
  picture (cached until the analysis is rewritten)
- ``GET /api/runs/{uid}/spectrum?x0=&y0=&x1=&y1=``: OD spectra of a region (fractions of
  the image's width and height, from the top left)

The metadata and the pictures are read once per change of the run however many pages ask
(:mod:`services.api.run_views`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.api import catalog
from services.api.deps import Pictures, Tiled, Views
from services.api.images import Picture, png_response, render

router = APIRouter(prefix="/api/runs", tags=["stack"])

#: colour bar label of each map; xld and xmcd are shown symmetric about zero
LABELS = {"od": "OD", "phase": "phase (rad)", "xld": "ΔOD", "xmcd": "asymmetry"}
CMAPS = {"od": "viridis", "phase": "twilight_shifted"}  # the dichroism maps: RdBu_r


@router.get("/{uid}/stack")
def stack(uid: str, tiled: Tiled, views: Views) -> dict[str, Any]:
    """The stack analysis' metadata, its energies and how many xld / xmcd maps it holds."""

    def read() -> dict[str, Any]:
        node = catalog.stack_node(tiled.client(), uid, tiled.results_key)
        md = dict(node.metadata)
        energies = catalog.child(node, "energies")
        md["energies"] = [] if energies is None else [float(e) for e in energies.read()]
        md["maps"] = {}
        for name in ("xld", "xmcd"):
            maps = catalog.child(node, name)
            if maps is not None:
                md["maps"][name] = int(maps.shape[0])
        return catalog._jsonable(md)

    return views.get(uid, "stack", read)


@router.get("/{uid}/stack/{name}/{index}.png")
def stack_png(
    uid: str,
    name: str,
    index: int,
    tiled: Tiled,
    pictures: Pictures,
    views: Views,
    thumb: bool = False,
) -> Response:
    """Map ``index`` of ``name`` (od, phase, xld or xmcd) as a picture."""
    stamp = stack(uid, tiled, views).get("updated")

    def make() -> Picture:
        image, pixel, energy, tag = catalog.stack_map(
            tiled.client(), uid, name, index, tiled.results_key
        )
        return render(
            image,
            pixel_size_m=pixel,
            title=f"{name.upper()} {energy:.1f} eV {tag}",
            cmap=CMAPS.get(name, "RdBu_r"),
            label=LABELS[name],
            symmetric=name in ("xld", "xmcd"),
            thumbnail=thumb,
        )

    cache_key = ("stack", uid, name, index, thumb, stamp)
    picture = views.get(uid, cache_key, lambda: pictures.get_or_render(cache_key, make))
    return png_response(picture)


@router.get("/{uid}/spectrum")
def spectrum(
    uid: str,
    tiled: Tiled,
    x0: float = Query(..., ge=0, le=1),
    y0: float = Query(..., ge=0, le=1),
    x1: float = Query(..., ge=0, le=1),
    y1: float = Query(..., ge=0, le=1),
) -> dict[str, Any]:
    """OD spectra of the region (from the stack analysis, or else from the results)."""
    return catalog.spectrum(tiled.client(), uid, (x0, y0, x1, y1), tiled.results_key)
