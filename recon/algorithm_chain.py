"""Algorithm chains such as ``"AP**150,ML**50"``: parsing, running, and the DM fallback.

A chain is a list of ``(algorithm, iterations)`` steps run left to right on one
:class:`recon.algorithms.Engine`. A difference-map or RAAR stage is watched by a
:class:`DivergenceGuard`; when it diverges its best state is restored and the rest of that
stage runs as alternating projections. ``"auto"`` (a chain chosen from the data) is resolved
by :mod:`recon.auto_chain` before parsing.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine

from recon.algorithms import ALGORITHMS

log = logging.getLogger(__name__)

#: Algorithms watched by the divergence guard (they fall back to AP).
GUARDED = ("DM", "RAAR")
_STEP = re.compile(r"^\s*([A-Za-z]+)\s*(?:\*\*\s*(\d+))?\s*$")


#: The chain chosen from the data (:mod:`recon.auto_chain`).
AUTO = "auto"


def is_auto(text: str | None) -> bool:
    """True for ``"auto"`` (any case, spaces around)."""
    return (text or "").strip().lower() == AUTO


def check_algorithm(text: str) -> str:
    """``text`` when it is ``"auto"`` or a chain :func:`parse_algorithm` accepts.

    Raises
    ------
    ValueError
        With one line saying what is wrong.
    """
    if not is_auto(text):
        parse_algorithm(text)
    return text


def parse_algorithm(text: str) -> list[tuple[str, int]]:
    """Parse a chain such as ``"AP**150,ML**50"`` into ``[("AP", 150), ("ML", 50)]``.

    Steps run left to right (``,`` or ``;`` between them); ``"AP"`` alone means one
    iteration. Algorithms: AP, DM, RAAR, EPIE, RPIE, ML (any case).

    Raises
    ------
    ValueError
        For an empty chain, an unknown algorithm or a zero count.
    """
    if is_auto(text):
        raise ValueError("'auto' is a chain chosen from the data: see recon.auto_chain")
    parts = [p for p in re.split(r"[,;]", text or "") if p.strip()]
    if not parts:
        raise ValueError(f"empty algorithm string {text!r}: use e.g. 'AP**150,ML**50'")
    steps = []
    for part in parts:
        m = _STEP.match(part)
        if not m or m.group(1).upper() not in ALGORITHMS:
            raise ValueError(
                f"bad algorithm step {part.strip()!r} in {text!r}: use NAME**n with NAME one "
                f"of {', '.join(ALGORITHMS)} (or the whole chain 'auto')"
            )
        n = int(m.group(2)) if m.group(2) is not None else 1
        if n < 1:
            raise ValueError(f"iteration count must be >= 1 in {part.strip()!r}")
        steps.append((m.group(1).upper(), n))
    return steps


class DivergenceGuard:
    """Detects a diverging iteration from its history of normalised Poisson deviances.

    Divergence: a non-finite value, or ``patience`` consecutive values above ``factor``
    times the best value seen so far.
    """

    def __init__(self, factor: float = 3.0, patience: int = 5) -> None:
        self.factor = factor
        self.patience = patience
        self.best = math.inf
        self.bad = 0

    def update(self, deviance: float) -> bool:
        """Record one value; True when the iteration is diverging."""
        if not math.isfinite(deviance):
            return True
        if deviance < self.best:
            self.best = deviance
        self.bad = self.bad + 1 if deviance > self.factor * self.best else 0
        return self.bad >= self.patience


def run_chain(
    engine: Engine,
    steps: list[tuple[str, int]],
    callback: Any = None,
) -> list[str]:
    """Run a parsed algorithm chain on ``engine``; DM and RAAR fall back to AP when they
    diverge.

    Parameters
    ----------
    engine : the engine
    steps : output of :func:`parse_algorithm`
    callback : called as ``callback(engine)`` after every iteration

    Returns
    -------
    messages : what happened that a user should know (e.g. the DM fallback)
    """
    messages = []
    for name, count in steps:
        for msg in run_stage(engine, name, count, callback):
            messages.append(msg)
    return messages


def run_stage(
    engine: Engine, name: str, count: int, callback: Any = None, new_stage: bool = True
) -> list[str]:
    """Run ``count`` iterations of one algorithm (see :func:`run_chain`).

    ``new_stage=False`` continues a stage started by an earlier call (the guard keeps its
    history, and a stage that fell back to AP stays on AP).

    Parameters
    ----------
    engine : the engine to iterate
    name : one of :data:`recon.algorithms.ALGORITHMS`
    count : iterations
    callback : called with the engine after each iteration
    new_stage : start a new stage (True) or continue the last one

    Returns
    -------
    messages : what happened that a user should know (a DM or RAAR fallback to AP)
    """
    name = name.upper()
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}: use one of {', '.join(ALGORITHMS)}")
    messages = []
    if new_stage or engine.stage_state.get("name") != name:
        engine.stage_state = {
            "name": name,
            "guard": DivergenceGuard(engine.opts.dm_guard_factor, engine.opts.dm_guard_patience),
            "best": None,
            "current": name,
        }
    st = engine.stage_state
    guard = st["guard"]
    for _ in range(count):
        guarded = st["current"] in GUARDED
        # the deviance an iteration returns is that of the state it started from
        before = engine.snapshot() if guarded else None
        value = engine.iterate(st["current"])
        if guarded:
            if math.isfinite(value) and value <= guard.best:
                st["best"] = before
            if guard.update(value):
                msg = (
                    f"{name} diverged at iteration {engine.iteration} (deviance {value:.4g}, "
                    f"best {guard.best:.4g}); restored the best {name} state and falling back "
                    f"to AP for the rest of this {name} stage"
                )
                log.info(msg)
                messages.append(msg)
                engine.messages.append(msg)
                if st["best"] is not None:
                    engine.restore(st["best"])
                st["current"] = "AP"
        if callback is not None:
            callback(engine)
    return messages
