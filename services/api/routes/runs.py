"""``/api/runs``: the newest runs, one run's detail, its positions and its results' metadata.

Unknown runs, ptychograms or results are 404s (the catalog raises ``KeyError``, which the
app turns into one line). One run's answers are read from Tiled once per change of the run,
whatever the number of pages asking (:mod:`services.api.run_views`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from services.api import catalog
from services.api.deps import Tiled, Views

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("")
def runs(tiled: Tiled, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    """The newest ``limit`` runs, newest first."""
    return catalog.list_runs(tiled.client(), limit)


@router.get("/{uid}")
def run(uid: str, tiled: Tiled, views: Views) -> dict[str, Any]:
    """Geometry, dose, progress and results of one run."""
    return views.get(
        uid, "detail", lambda: catalog.run_detail(tiled.client(), uid, tiled.results_key)
    )


@router.get("/{uid}/positions/{index}")
def positions(uid: str, index: int, tiled: Tiled, views: Views) -> dict[str, Any]:
    """Planned and measured positions (µm) of ptychogram ``index``."""
    return views.get(
        uid, ("positions", index), lambda: catalog.positions(tiled.client(), uid, index)
    )


@router.get("/{uid}/results/{index}")
def result(uid: str, index: int, tiled: Tiled, views: Views) -> dict[str, Any]:
    """A reconstruction's metadata (without its history) and its LLK curve."""
    return result_answer(uid, index, tiled, views)


def result_answer(uid: str, index: int, tiled: Tiled, views: Views) -> dict[str, Any]:
    """``GET /api/runs/{uid}/results/{index}``'s answer (kept until the run changes)."""

    def read() -> dict[str, Any]:
        client, key = tiled.client(), tiled.results_key
        node = catalog.result_node(client, uid, index, key)
        md = dict(node.metadata)
        md.pop("history", None)
        llk = catalog.llk_of(node)
        return catalog._jsonable({"index": index, **md, "llk": llk})

    return views.get(uid, ("result", index), read)
