"""The per-frame projection family: ePIE and rPIE (placeholder until written)."""

from __future__ import annotations

from typing import Any

#: Algorithms of the per-frame family.
PIE_NAMES = ("EPIE", "RPIE")


def pie_iteration(engine: Any, name: str) -> float:
    raise NotImplementedError(name)
