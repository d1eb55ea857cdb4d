"""``GET /api/runs/{uid}/results/{index}/{kind}.png``: a reconstruction as a picture.

``kind`` is ``amplitude``, ``phase`` or ``probe``; ``thumb`` asks for the small picture
without colour bar. Pictures are cached until the result is rewritten (its ``updated``
stamp is part of the cache key); pages asking at once for a new picture share one render.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from services.api import catalog
from services.api.deps import Pictures, Tiled, Views
from services.api.images import Picture, png_response, render
from services.api.routes.runs import result_answer

router = APIRouter(prefix="/api/runs", tags=["pictures"])

#: colour map and colour bar label of each kind of picture
STYLES = {
    "amplitude": ("gray", "|O|"),
    "phase": ("twilight_shifted", "phase (rad)"),
    "probe": ("magma", "|P|"),
}


@router.get("/{uid}/results/{index}/{kind}.png")
def result_png(
    uid: str,
    index: int,
    kind: str,
    tiled: Tiled,
    pictures: Pictures,
    views: Views,
    thumb: bool = False,
) -> Response:
    """The amplitude, phase or probe picture of result ``index`` (box in ``X-Image-Box``)."""
    stamp = result_answer(uid, index, tiled, views).get("updated")

    def make() -> Picture:
        image, pixel, md = catalog.result_image(tiled.client(), uid, index, kind, tiled.results_key)
        what = f"{md.get('energy_ev', 0):.1f} eV {md.get('polarization', '')}"
        cmap, label = STYLES[kind]
        title = what if thumb else f"{kind}, {what}, it {md.get('iterations', 0)}"
        return render(
            image, pixel_size_m=pixel, title=title, cmap=cmap, label=label, thumbnail=thumb
        )

    cache_key = ("result", uid, index, kind, thumb, stamp)
    picture = views.get(uid, cache_key, lambda: pictures.get_or_render(cache_key, make))
    return png_response(picture)
