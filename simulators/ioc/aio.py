"""asyncio helpers of the simulated IOC: restart a task, hang, follow a timed trajectory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

#: Period of readback updates while moving (s).
TICK_S = 0.02
#: Fraction of a move after which a stalled axis stops.
STALL_FRACTION = 0.3


def cancel(task: asyncio.Task | None) -> bool:
    """Cancel ``task`` when it still runs; True when it did."""
    running = task is not None and not task.done()
    if running:
        task.cancel()
    return running


def restart(task: asyncio.Task | None, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
    """Cancel ``task`` when it still runs and start ``coro`` in its place."""
    cancel(task)
    return asyncio.get_running_loop().create_task(coro)


async def hang() -> None:
    """Wait forever (a stalled axis, a hung camera) until cancelled."""
    while True:
        await asyncio.sleep(3600)


async def follow(
    duration: float, update: Callable[[float], Awaitable[None]], *, stalled: bool = False
) -> None:
    """Call ``update(t)`` every :data:`TICK_S` for ``duration`` seconds of a move.

    A stalled move hangs (:func:`hang`) after :data:`STALL_FRACTION` of its duration and
    never returns. The last tick is cut short so the move ends when its trajectory does.
    """
    t0 = time.monotonic()
    while True:
        t = time.monotonic() - t0
        if stalled and t >= STALL_FRACTION * duration:
            await hang()
        if t >= duration:
            return
        await update(t)
        await asyncio.sleep(min(TICK_S, max(duration - t, 0.001)))
