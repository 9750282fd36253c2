"""Faults for HTTP twins, as ASGI middleware: latency, outage (503), drop, slow consumer,
corrupt bodies. Decisions are keyed by the request's sequence number on the link."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from plantstage.twins.faults import FaultInjector, corrupt_payload


class FaultMiddleware:
    """Wraps an ASGI app; ``/health`` and ``/state`` are never disturbed."""

    def __init__(self, app: Any, faults: FaultInjector, link: str = "http",
                 drop_hold: float = 30.0):
        self.app = app
        self.faults = faults
        self.link = link
        self.drop_hold = drop_hold
        self._seq = itertools.count(1)
        self.requests = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ("/health", "/state"):
            await self.app(scope, receive, send)
            return
        self.requests += 1
        key = f"{scope['method']} {scope['path']} #{next(self._seq)}"
        d = self.faults.decide(self.link, key)
        if d.outage:
            await _plain(send, 503, b"twin: outage window (unreachable)")
            return
        if d.delay:
            await asyncio.sleep(d.delay)
        if d.drop:
            # The request is swallowed: no answer until the caller gives up.
            await asyncio.sleep(self.drop_hold)
            await _plain(send, 504, b"twin: dropped")
            return
        if not d.corrupt:
            await self.app(scope, receive, send)
            return

        async def corrupting_send(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": corrupt_payload(message.get("body", b""), key)}
            elif message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message["headers"]
                                                  if k.lower() != b"content-length"]}
            await send(message)

        await self.app(scope, receive, corrupting_send)


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
