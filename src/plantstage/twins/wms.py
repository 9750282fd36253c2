"""WMS twin: an HTTP API for goods movements and stock per location, stateful, with
callbacks to the app when a movement is put away. Its routes, field names, quantity (a
decimal with a unit) and callback are the contract the spec declares (docs/twins.md).

Route roles: ``book`` (the app books a movement: 201, or 200 with ``duplicate: true`` when its
``ref`` was booked already — the WMS is idempotent per ref), ``list`` (the booked movements,
``?<tenant field>=T``), ``stock`` (quantity per item and location). Field roles: ``tenant``,
``ref``, ``item``, ``qty``, ``unit`` (checked against the declared unit), ``kind``
(``issue`` takes stock out; anything else, by default ``receipt``, puts it in and is put away
after ``putaway_s``), ``location``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from plantstage.spec.twins import SETTINGS as KIND_SETTINGS
from plantstage.twins.base import Twin, serve_http, stop_http
from plantstage.twins.contract import ContractError, Quantity, dumps, parse_json
from plantstage.twins.http import ContractHttp, FaultMiddleware

SETTINGS = KIND_SETTINGS["wms"]
ROLES = ("tenant", "ref", "item", "qty", "unit", "kind", "location")


@dataclass
class Movement:
    id: int
    tenant: str
    ref: str
    item: str
    qty: Quantity
    kind: str
    location: str
    status: str = "booked"

    def record(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "ref": self.ref, "item": self.item, "qty": self.qty,
                "kind": self.kind, "location": self.location}


class WmsTwin(Twin):
    kind = "wms"
    links = ("http", "callbacks")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(SETTINGS)
        self.http = ContractHttp(self, ROLES)
        self.locations: list[str] = list(self.setting("locations", ["RCV-01", "STOR-A", "STOR-B"],
                                                      list))
        self.putaway_s = float(self.setting("putaway_s", 0.2, float))
        self.callbacks = self.setting("callbacks", True, bool)
        self.callback_timeout = float(self.setting("callback_timeout", 5.0, float))
        self.movements: dict[tuple[str, str], Movement] = {}
        self.stock: dict[tuple[str, str, str], Decimal] = {}  # (tenant, item, location) -> qty
        self._received: list[tuple[str, Any]] = []  # (tenant, body as the app sent it)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.stats.update({"movements": 0, "duplicate_refs": 0, "refused": 0,
                           "callbacks_sent": 0, "callbacks_failed": 0})
        self._server = self._task = None
        self.port = 0
        self._client: httpx.AsyncClient | None = None

    async def _start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.callback_timeout)
        self._server, self._task, self.port = await serve_http(self._asgi(), self.spec.port,
                                                               self.name)

    async def _stop(self) -> None:
        await stop_http(self._server, self._task)
        if self._client is not None:
            await self._client.aclose()

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://127.0.0.1:{self.port}"}

    def state(self) -> dict[str, Any]:
        return {**self.stats, "locations": len(self.locations),
                "stock_lines": sum(1 for v in self.stock.values() if v)}

    def received(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """What the app sent to the ``book`` route, in order, exactly as sent (decimals
        exact), duplicates included; only ``tenant``'s when given."""
        with self._lock:
            return [body for t, body in self._received if tenant in (None, t)]

    # -- domain -----------------------------------------------------------------------------------
    def book(self, tenant: str, ref: str, item: str, qty: Quantity, kind: str = "receipt",
             location: str | None = None) -> tuple[Movement, bool]:
        existing = self.movements.get((tenant, ref))
        if existing is not None:
            self.stats["duplicate_refs"] += 1
            return existing, True
        loc = location or self.locations[0]
        m = Movement(next(self._ids), tenant, ref, item, qty, kind, loc)
        self.movements[(tenant, ref)] = m
        key = (tenant, item, loc)
        sign = -1 if kind == "issue" else 1
        self.stock[key] = self.stock.get(key, Decimal(0)) + sign * qty.value
        self.stats["movements"] += 1
        self.messages += 1
        if kind != "issue":
            self.spawn(self._putaway(m), "putaway")
        return m, False

    async def _putaway(self, m: Movement) -> None:
        await asyncio.sleep(self.putaway_s)
        target = self.locations[1 + m.id % (len(self.locations) - 1)] \
            if len(self.locations) > 1 else m.location
        src = (m.tenant, m.item, m.location)
        dst = (m.tenant, m.item, target)
        self.stock[src] = self.stock.get(src, Decimal(0)) - m.qty.value
        self.stock[dst] = self.stock.get(dst, Decimal(0)) + m.qty.value
        m.location, m.status = target, "put-away"
        if not self.callbacks:
            return
        env = {**m.record(), "id": m.id, "status": m.status}
        ok = await self.http.callback(
            self._client, env, self.http.write({**m.record(), "status": m.status}) |
            {"id": m.id}, m.ref)
        if ok is not None:
            self.stats["callbacks_sent" if ok else "callbacks_failed"] += 1

    def _qty(self, v: Decimal) -> Quantity:
        q = self.http.qty_spec
        return Quantity(v, q.unit, q.decimals, q.encoding.value)

    def _asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        f = self.http.fields

        def js(body: Any, status: int = 200) -> Response:
            return Response(dumps(body), status_code=status, media_type="application/json")

        async def health(_r: Request) -> JSONResponse:
            ok, why = self.healthy()
            return JSONResponse({"status": "ok" if ok else why, "twin": self.kind},
                                status_code=200 if ok else 503)

        async def state(_r: Request) -> JSONResponse:
            return JSONResponse(self.state())

        async def book(r: Request) -> Response:
            try:
                body = parse_json(await r.body())
            except ValueError:
                self.stats["refused"] += 1
                return js({"error": "the body is not JSON"}, 422)
            got = self.http.read(body, dict(r.path_params))
            if why := self.http.missing(got, ("tenant", "ref", "item", "qty")):
                self.stats["refused"] += 1
                return js({"error": why}, 422)
            try:
                qty = self.http.qty(got["qty"], got.get("unit"))
            except ContractError as exc:
                self.stats["refused"] += 1
                return js({"error": exc.message}, 422)
            tenant = str(got["tenant"])
            with self._lock:
                self._received.append((tenant, body))
            loc = got.get("location")
            m, dup = self.book(tenant, str(got["ref"]), str(got["item"]), qty,
                               str(got.get("kind") or "receipt"),
                               None if loc is None else str(loc))
            return js({"id": m.id, "status": m.status, "duplicate": dup}, 200 if dup else 201)

        async def listing(r: Request) -> Response:
            t = r.path_params.get("tenant", r.query_params.get(f["tenant"]))
            return js([self.http.write({**m.record(), "status": m.status}) | {"id": m.id}
                       for m in self.movements.values() if t in (None, m.tenant)])

        async def stock(r: Request) -> Response:
            t = r.path_params.get("tenant", r.query_params.get(f["tenant"]))
            item = r.query_params.get(f["item"])
            out: dict[str, dict[str, Quantity]] = {}
            for (tt, i, loc), q in sorted(self.stock.items()):
                if t in (None, tt) and item in (None, i) and q:
                    out.setdefault(i, {})[loc] = self._qty(q)
            return js(out)

        routes = [Route("/health", health), Route("/state", state)]
        routes += self.http.routes({"book": book, "list": listing, "stock": stock})
        return FaultMiddleware(Starlette(routes=routes), self.faults, "http",
                               stats=self.stats)
