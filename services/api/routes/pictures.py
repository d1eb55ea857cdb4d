"""``GET /api/runs/{uid}/results/{index}/{kind}.png``: a reconstruction as a picture.

``kind`` is ``amplitude``, ``phase`` or ``probe``; ``thumb`` asks for the small picture
without colour bar. Pictures are cached until the result is rewritten (its ``updated``
stamp is part of the cache key).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services.api import catalog
from services.api.deps import Pictures, Tiled
from services.api.images import Picture, png_response, render

router = APIRouter(prefix="/api/runs", tags=["pictures"])

#: colour map and colour bar label of each kind of picture
STYLES = {
    "amplitude": ("gray", "|O|"),
    "phase": ("twilight_shifted", "phase (rad)"),
    "probe": ("magma", "|P|"),
}


@router.get("/{uid}/results/{index}/{kind}.png")
def result_png(
    uid: str, index: int, kind: str, tiled: Tiled, pictures: Pictures, thumb: bool = False
) -> Response:
    """The amplitude, phase or probe picture of result ``index`` (box in ``X-Image-Box``)."""
    client, key = tiled.client(), tiled.results_key
    stamp = catalog.result_node(client, uid, index, key).metadata.get("updated")

    def make() -> Picture:
        image, pixel, md = catalog.result_image(client, uid, index, kind, key)
        what = f"{md.get('energy_ev', 0):.1f} eV {md.get('polarization', '')}"
        cmap, label = STYLES[kind]
        title = what if thumb else f"{kind}, {what}, it {md.get('iterations', 0)}"
        return render(
            image, pixel_size_m=pixel, title=title, cmap=cmap, label=label, thumbnail=thumb
        )

    cache_key = ("result", uid, index, kind, thumb, stamp)
    return png_response(pictures.get_or_render(cache_key, make))
