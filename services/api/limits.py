"""A limit on request bodies, enforced while they are read (an ASGI middleware).

A request whose ``Content-Length`` is above the limit is refused with 413 before any of its
body is read; a body without a length (chunked) is read into memory only up to the limit
and refused as soon as one more byte arrives. The app behind sees the body as usual.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _content_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (None when absent); raises ValueError if invalid."""
    for name, value in scope.get("headers") or []:
        if name.lower() == b"content-length":
            length = int(value.decode("latin-1").strip())
            if length < 0:
                raise ValueError(length)
            return length
    return None


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse HTTP request bodies larger than ``max_bytes`` with 413.

    Parameters
    ----------
    app : the ASGI app behind
    max_bytes : largest body accepted (bytes)

    Examples
    --------
    >>> app.add_middleware(BodyLimit, max_bytes=1_000_000)   # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp, max_bytes: int = 1_000_000) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self, size: str) -> str:
        return f"request body too large ({size}): the limit is {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            length = _content_length(scope)
        except ValueError:
            await _answer(send, 400, "invalid Content-Length header")
            return
        if length is not None and length > self.max_bytes:
            await _answer(send, 413, self._too_large(f"{length} bytes"))
            return
        body, outcome = await self._read(receive)
        if outcome == "too large":
            await _answer(send, 413, self._too_large(f"more than {self.max_bytes} bytes"))
        elif outcome == "complete":
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes, str]:
        """The body and how reading it ended: ``complete``, ``too large`` (reading stopped
        at the first chunk past the limit) or ``gone`` (the client disconnected)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"", "gone"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", "too large"
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), "complete"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then whatever the client sends next
    (the disconnect a streaming response waits for)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
