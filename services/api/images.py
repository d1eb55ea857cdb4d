"""PNG pictures of reconstructions: colour bar, scale bar in nm, and where the image lies.

The pictures are cached (:class:`PictureCache`) and served by :func:`png_response`.

Rendering uses Matplotlib's object API (no pyplot state), so threads may render at once.
Every picture comes with the box the image occupies in the PNG (fractions of its width and
height from the top-left corner) so that the page can turn a click into array coordinates.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from starlette.responses import Response


@dataclass(frozen=True)
class Picture:
    """A rendered PNG and the image's box in it.

    Attributes
    ----------
    png : the PNG file's bytes
    box : (left, top, right, bottom) of the image area, fractions of the PNG's size
    """

    png: bytes
    box: tuple[float, float, float, float]


def nice_length(span: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) close to a fifth of ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 0.0
    target = span / 5.0
    power = 10.0 ** math.floor(math.log10(target))
    for step in (5.0, 2.0, 1.0):
        if step * power <= target:
            return step * power
    return power


def _scale_label(length_nm: float) -> str:
    if length_nm >= 1000:
        return f"{length_nm / 1000:g} µm"
    return f"{length_nm:g} nm"


def render(
    image: np.ndarray,
    *,
    pixel_size_m: float | None = None,
    title: str = "",
    cmap: str = "gray",
    label: str = "",
    symmetric: bool = False,
    thumbnail: bool = False,
) -> Picture:
    """Render a 2-D real image as a PNG with a colour bar and a scale bar.

    Parameters
    ----------
    image : (H, W) real array
    pixel_size_m : pixel size (m); a scale bar in nm or µm is drawn when given
    title : title above the image
    cmap : Matplotlib colour map
    label : colour bar label (units)
    symmetric : colour limits symmetric about zero (dichroism maps)
    thumbnail : small picture, no colour bar, title only

    Returns
    -------
    Picture
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"expected a 2-D image, got shape {data.shape}")
    finite = data[np.isfinite(data)]
    if finite.size:
        lo, hi = np.percentile(finite, [0.5, 99.5])
    else:
        lo, hi = 0.0, 1.0
    if symmetric:
        hi = max(abs(lo), abs(hi)) or 1.0
        lo = -hi
    elif hi <= lo:
        hi = lo + 1.0
    size = (1.9, 2.0) if thumbnail else (4.6, 4.0)
    fig = Figure(figsize=size, dpi=100)
    canvas = FigureCanvasAgg(fig)
    if thumbnail:
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.84))
    else:
        ax = fig.add_axes((0.03, 0.05, 0.74, 0.85))
    shown = ax.imshow(
        np.nan_to_num(data, nan=lo),
        cmap=cmap,
        vmin=lo,
        vmax=hi,
        interpolation="nearest",
        origin="upper",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8 if thumbnail else 10)
    if not thumbnail:
        cax = fig.add_axes((0.80, 0.05, 0.04, 0.85))
        bar = fig.colorbar(shown, cax=cax)
        bar.set_label(label, fontsize=9)
        bar.ax.tick_params(labelsize=8)
    h, w = data.shape
    if pixel_size_m and pixel_size_m > 0 and not thumbnail:
        length_nm = nice_length(w * pixel_size_m * 1e9)
        if length_nm > 0:
            bar_px = length_nm * 1e-9 / pixel_size_m
            x0, y0 = 0.05 * w, 0.93 * h
            ax.add_patch(Rectangle((x0, y0), bar_px, 0.02 * h, color="white", ec="black", lw=0.5))
            ax.text(
                x0 + bar_px / 2,
                y0 - 0.015 * h,
                _scale_label(length_nm),
                color="white",
                ha="center",
                va="bottom",
                fontsize=8,
                fontweight="bold",
            )
    canvas.draw()
    fig_w, fig_h = canvas.get_width_height()
    bbox = ax.get_window_extent()
    box = (bbox.x0 / fig_w, 1 - bbox.y1 / fig_h, bbox.x1 / fig_w, 1 - bbox.y0 / fig_h)
    out = io.BytesIO()
    canvas.print_png(out)
    return Picture(out.getvalue(), tuple(round(v, 5) for v in box))


class PictureCache:
    """The last rendered pictures, keyed by what they show and when it was written.

    Parameters
    ----------
    size : how many pictures are kept (the least recently used go first)
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Picture] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> Picture | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key: Hashable, picture: Picture) -> None:
        with self.lock:
            self.items[key] = picture
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def get_or_render(self, key: Hashable, make: Callable[[], Picture]) -> Picture:
        """The cached picture of ``key``, or ``make()``'s (then cached)."""
        picture = self.get(key)
        if picture is None:
            picture = make()
            self.put(key, picture)
        return picture


def png_response(picture: Picture) -> Response:
    """``picture`` as an uncached PNG response with its image box in ``X-Image-Box``."""
    return Response(
        picture.png,
        media_type="image/png",
        headers={
            "X-Image-Box": ",".join(f"{v:.5f}" for v in picture.box),
            "Cache-Control": "no-store",
            "Access-Control-Expose-Headers": "X-Image-Box",
        },
    )
