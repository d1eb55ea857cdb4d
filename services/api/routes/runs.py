"""``/api/runs``: the newest runs, one run's detail, its positions and its results' metadata.

Unknown runs, ptychograms or results are 404s (the catalog raises ``KeyError``, which the
app turns into one line).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from services.api import catalog
from services.api.deps import Tiled

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("")
def runs(tiled: Tiled, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    """The newest ``limit`` runs, newest first."""
    return catalog.list_runs(tiled.client(), limit)


@router.get("/{uid}")
def run(uid: str, tiled: Tiled) -> dict[str, Any]:
    """Geometry, dose, progress and results of one run."""
    return catalog.run_detail(tiled.client(), uid, tiled.results_key)


@router.get("/{uid}/positions/{index}")
def positions(uid: str, index: int, tiled: Tiled) -> dict[str, Any]:
    """Planned and measured positions (µm) of ptychogram ``index``."""
    return catalog.positions(tiled.client(), uid, index)


@router.get("/{uid}/results/{index}")
def result(uid: str, index: int, tiled: Tiled) -> dict[str, Any]:
    """A reconstruction's metadata (without its history) and its LLK curve."""
    client, key = tiled.client(), tiled.results_key
    md = dict(catalog.result_node(client, uid, index, key).metadata)
    md.pop("history", None)
    return catalog._jsonable({"index": index, **md, "llk": catalog.llk(client, uid, index, key)})
