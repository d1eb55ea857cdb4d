"""The live page, its locally served Plotly bundle, and ``GET /api/health``.

The page's other assets are mounted under ``/static`` by the app factory, after this
router (its Plotly route lies under ``/static`` too and must be matched first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import FileResponse

from services.api.deps import Controller, Settings, is_operator

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["page"])


def plotly_bundle() -> Path:
    """The Plotly.js bundle shipped inside the ``plotly`` Python package (served locally).

    Raises
    ------
    RuntimeError
        If the package holds no bundle.
    """
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly.min.js not found in {path.parent}: reinstall plotly")
    return path


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/static/vendor/plotly.min.js", include_in_schema=False)
def plotly_js(request: Request) -> FileResponse:
    return FileResponse(request.app.state.plotly_bundle, media_type="text/javascript")


@router.get("/api/health")
def health(
    settings: Settings, controller: Controller, x_api_key: str | None = Header(None)
) -> dict[str, Any]:
    """Whether scans can be run here; operators also learn the Tiled URI."""
    out: dict[str, Any] = {
        "status": "ok",
        "beamline": controller is not None,
        "operator_actions": controller is not None and settings.key is not None,
    }
    if is_operator(settings, x_api_key):  # where the data live is for operators only
        out["tiled_uri"] = settings.tiled_uri
    return out
