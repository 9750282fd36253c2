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
                 drop_hold: float = 30.0, stats: Any = None):
        self.app = app
        self.faults = faults
        self.link = link
        self.drop_hold = drop_hold
        self._seq = itertools.count(1)
        self.requests = 0
        #: The twin's counters: ``requests`` counts every call, answered or faulted (503s too),
        #: so call amplification (retry storms) shows in ``twins.<component>.<phase>.requests``.
        self.stats = stats
        if stats is not None:
            stats.setdefault("requests", 0)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ("/health", "/state"):
            await self.app(scope, receive, send)
            return
        self.requests += 1
        if self.stats is not None:
            self.stats["requests"] = self.stats.get("requests", 0) + 1
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


class ContractHttp:
    """What the HTTP twins share: roles read from the app's requests by the contract's field
    names, records written back in those names, and callbacks to the app."""

    def __init__(self, twin: Any, roles: tuple[str, ...]):
        from plantstage.twins.base import TwinError

        c = twin.spec.contract
        if c is None or not c.routes:
            raise TwinError(f"a {twin.kind} twin needs contract.routes",
                            where=f"{twin.where}.contract", hint="see docs/twins.md")
        self.twin = twin
        self.contract = c
        self.roles = roles
        #: role → field name in the app's JSON (a.b for nested); default: the role itself.
        self.fields = {r: c.fields.get(r, r) for r in roles}
        self.qty_spec = c.quantities.get("qty")

    def read(self, body: Any, path_params: dict[str, str], roles: tuple[str, ...] | None = None
             ) -> dict[str, Any]:
        """The roles found in a request (path parameters first, then body fields)."""
        from plantstage.twins.contract import get_path

        out: dict[str, Any] = {}
        for role in roles or self.roles:
            if role in path_params:
                out[role] = path_params[role]
                continue
            try:
                out[role] = get_path(body, self.fields[role])
            except KeyError:
                pass
        return out

    def qty(self, raw: Any, unit: Any = None) -> Any:
        """A request's quantity as declared (ContractError when it does not fit)."""
        from plantstage.twins.contract import ContractError, quantity

        q = quantity(raw, self.qty_spec, self.fields["qty"])
        if unit is not None and str(unit) != q.unit:
            raise ContractError(f"{self.fields['qty']} is in {unit}, the contract says {q.unit}",
                                where=self.fields.get("unit", "unit"),
                                hint="plantstage converts no units")
        return q

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record (role → value) in the contract's field names (nested where dotted)."""
        from plantstage.twins.contract import set_path

        out: dict[str, Any] = {}
        for role, value in record.items():
            set_path(out, self.fields.get(role, role), value)
        return out

    def routes(self, handlers: dict[str, Any]) -> list[Any]:
        """Starlette routes for the declared roles (paths use the same {name} syntax)."""
        from starlette.routing import Route

        out = []
        for role, r in self.contract.routes.items():
            if role in handlers:
                out.append(Route(r.path, handlers[role], methods=[r.method]))
        return out

    def missing(self, got: dict[str, Any], required: tuple[str, ...]) -> str | None:
        lack = [self.fields[r] for r in required if r not in got]
        return f"need {', '.join(lack)}" if lack else None

    async def callback(self, client: Any, env: dict[str, Any], default_body: Any,
                       key: str) -> bool | None:
        """Call the app back as declared (None: no callback due); faults on ``callbacks``."""
        import httpx

        from plantstage.twins.contract import TextTemplate, dumps, render_value

        cb = self.contract.callback
        base = self.twin.env.app_url()
        if cb is None or not base or client is None:
            return None
        d = self.twin.faults.decide("callbacks", key)
        if d.outage or d.drop:
            return None
        if d.delay:
            await asyncio.sleep(d.delay)
        env = {**env, "app": base.rstrip("/")}
        url = TextTemplate(cb.url).render(env)
        body = dumps(render_value(cb.body, env) if cb.body is not None else default_body)
        ok = False
        for _ in range(d.copies):
            try:
                r = await client.request(cb.method, url, content=body,
                                         headers={"content-type": "application/json"})
                ok = r.status_code < 300
            except httpx.HTTPError:
                ok = False
        return ok
