"""``WS /ws``: live messages to the page (:mod:`services.api.live` says which).

A new subscriber first gets ``{"type": "hello", "runs": [...], "scan": {...}}`` (the
runs the watcher follows, newest first, and the scan controller's state), then every
message the hub publishes, until the page goes away.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from services.api.deps import Controller, LiveHub, LiveWatcher

router = APIRouter(tags=["live"])


@router.websocket("/ws")
async def live(
    websocket: WebSocket, hub: LiveHub, watcher: LiveWatcher, controller: Controller
) -> None:
    await websocket.accept()
    queue = hub.subscribe()
    try:
        runs_now = [s["summary"] for s in (watcher.state if watcher else {}).values()][::-1]
        hello = {
            "type": "hello",
            "runs": runs_now,
            "scan": controller.state() if controller else {"state": "unavailable"},
        }
        await websocket.send_text(json.dumps(hello))

        async def forward() -> None:
            while True:
                await websocket.send_text(await queue.get())

        async def until_closed() -> None:  # notice a closed page at once, not at the next
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

        tasks = {asyncio.create_task(forward()), asyncio.create_task(until_closed())}
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.exception()  # retrieved: a closed socket is the normal end
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        hub.unsubscribe(queue)
