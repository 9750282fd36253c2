"""WMS twin: an HTTP API for goods movements and stock per location, stateful, with
callbacks to the app when a movement is put away.

* ``POST /movements`` ``{tenant, ref, item_code, qty, kind?, location?}`` → 201 (200 with
  ``duplicate: true`` when the ``ref`` was booked already — the WMS is idempotent per ref);
* ``GET /stock?tenant=T[&item_code=I]`` → quantity per location;
* ``GET /movements?tenant=T`` → the booked movements;
* callbacks: ``POST {app}/api/{tenant}/wms/events`` ``{movement_id, ref, status, location}``
  after ``putaway_s`` seconds (when ``callbacks`` is on and the app URL is known).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from plantstage.twins.base import Twin, serve_http, stop_http
from plantstage.twins.http import FaultMiddleware

SETTINGS = {"locations", "putaway_s", "callbacks", "callback_timeout"}


@dataclass
class Movement:
    id: int
    tenant: str
    ref: str
    item_code: str
    qty: int
    kind: str
    location: str
    status: str = "booked"


class WmsTwin(Twin):
    kind = "wms"
    links = ("http", "callbacks")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(SETTINGS)
        self.locations: list[str] = list(self.setting("locations", ["RCV-01", "STOR-A", "STOR-B"],
                                                      list))
        self.putaway_s = float(self.setting("putaway_s", 0.2, float))
        self.callbacks = self.setting("callbacks", True, bool)
        self.callback_timeout = float(self.setting("callback_timeout", 5.0, float))
        self.movements: dict[tuple[str, str], Movement] = {}
        self.stock: dict[tuple[str, str, str], int] = {}  # (tenant, item, location) -> qty
        self._ids = itertools.count(1)
        self.stats = {"movements": 0, "duplicate_refs": 0, "callbacks_sent": 0,
                      "callbacks_failed": 0}
        self._server = self._task = None
        self.port = 0
        self._http: httpx.AsyncClient | None = None

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.callback_timeout)
        self._server, self._task, self.port = await serve_http(self._asgi(), self.spec.port,
                                                               self.name)

    async def _stop(self) -> None:
        await stop_http(self._server, self._task)
        if self._http is not None:
            await self._http.aclose()

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://127.0.0.1:{self.port}"}

    def state(self) -> dict[str, Any]:
        return {**self.stats, "locations": len(self.locations),
                "stock_lines": sum(1 for v in self.stock.values() if v)}

    def signals(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.stats.items()}

    # -- domain -----------------------------------------------------------------------------------
    def book(self, tenant: str, ref: str, item_code: str, qty: int, kind: str = "receipt",
             location: str | None = None) -> tuple[Movement, bool]:
        existing = self.movements.get((tenant, ref))
        if existing is not None:
            self.stats["duplicate_refs"] += 1
            return existing, True
        loc = location or self.locations[0]
        sign = -1 if kind == "issue" else 1
        m = Movement(next(self._ids), tenant, ref, item_code, qty, kind, loc)
        self.movements[(tenant, ref)] = m
        key = (tenant, item_code, loc)
        self.stock[key] = self.stock.get(key, 0) + sign * qty
        self.stats["movements"] += 1
        self.messages += 1
        if kind == "receipt":
            self.spawn(self._putaway(m), "putaway")
        return m, False

    async def _putaway(self, m: Movement) -> None:
        await asyncio.sleep(self.putaway_s)
        target = self.locations[1 + m.id % (len(self.locations) - 1)] \
            if len(self.locations) > 1 else m.location
        src = (m.tenant, m.item_code, m.location)
        dst = (m.tenant, m.item_code, target)
        self.stock[src] = self.stock.get(src, 0) - m.qty
        self.stock[dst] = self.stock.get(dst, 0) + m.qty
        m.location, m.status = target, "put-away"
        await self._callback(m)

    async def _callback(self, m: Movement) -> None:
        base = self.env.app_url() if self.callbacks else None
        if not base or self._http is None:
            return
        d = self.faults.decide("callbacks", m.ref)
        if d.outage or d.drop:
            return
        if d.delay:
            await asyncio.sleep(d.delay)
        body = {"movement_id": m.id, "ref": m.ref, "status": m.status, "location": m.location,
                "item_code": m.item_code, "qty": m.qty}
        for _ in range(d.copies):
            try:
                r = await self._http.post(f"{base}/api/{m.tenant}/wms/events", json=body)
                ok = r.status_code < 300
            except httpx.HTTPError:
                ok = False
            self.stats["callbacks_sent" if ok else "callbacks_failed"] += 1

    def _asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def health(_r: Request) -> JSONResponse:
            ok, why = self.healthy()
            return JSONResponse({"status": "ok" if ok else why, "twin": self.kind},
                                status_code=200 if ok else 503)

        async def state(_r: Request) -> JSONResponse:
            return JSONResponse(self.state())

        async def movements(r: Request) -> JSONResponse:
            if r.method == "GET":
                t = r.query_params.get("tenant")
                return JSONResponse([vars(m) for m in self.movements.values()
                                     if t in (None, m.tenant)])
            try:
                b = await r.json()
                qty = int(b["qty"])
                m, dup = self.book(str(b["tenant"]), str(b["ref"]), str(b["item_code"]), qty,
                                   str(b.get("kind", "receipt")), b.get("location"))
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "need tenant, ref, item_code, qty"},
                                    status_code=422)
            return JSONResponse({"movement_id": m.id, "status": m.status, "duplicate": dup},
                                status_code=200 if dup else 201)

        async def stock(r: Request) -> JSONResponse:
            t, item = r.query_params.get("tenant"), r.query_params.get("item_code")
            out: dict[str, dict[str, int]] = {}
            for (tt, i, loc), q in sorted(self.stock.items()):
                if t in (None, tt) and item in (None, i) and q:
                    out.setdefault(i, {})[loc] = q
            return JSONResponse(out)

        app = Starlette(routes=[Route("/health", health), Route("/state", state),
                                Route("/movements", movements, methods=["GET", "POST"]),
                                Route("/stock", stock)])
        return FaultMiddleware(app, self.faults, "http")
