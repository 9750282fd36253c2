"""Supplier-portal twin: takes purchase orders over HTTP, acknowledges them, and issues an
advance shipping notice (ASN) after a seeded lead time.

* ``POST /purchase-orders`` ``{tenant, po_number, lines: [{item_code, qty}]}`` → 202 ack;
* ``GET /purchase-orders/{po_number}`` → status (acknowledged → shipped);
* ``GET /asns?tenant=T`` → ASNs issued so far;
* callbacks: ``POST {app}/api/{tenant}/asns`` with the ASN when ``callbacks`` is on.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import httpx

from plantstage.twins.base import Twin, serve_http, stop_http
from plantstage.twins.http import FaultMiddleware

SETTINGS = {"lead_time_s", "lead_time_sigma", "fill_rate", "callbacks"}


class SupplierPortalTwin(Twin):
    kind = "supplier-portal"
    links = ("http", "callbacks")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(SETTINGS)
        self.lead_time_s = float(self.setting("lead_time_s", 1.0, float))
        self.sigma = float(self.setting("lead_time_sigma", 0.3, float))
        self.fill_rate = float(self.setting("fill_rate", 1.0, float))
        self.callbacks = self.setting("callbacks", False, bool)
        self.rng = random.Random(f"{self.spec.seed}:{self.name}")
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}
        self.asns: list[dict[str, Any]] = []
        self._server = self._task = None
        self.port = 0
        self._http: httpx.AsyncClient | None = None

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(timeout=5.0)
        self._server, self._task, self.port = await serve_http(self._asgi(), self.spec.port,
                                                               self.name)

    async def _stop(self) -> None:
        await stop_http(self._server, self._task)
        if self._http is not None:
            await self._http.aclose()

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://127.0.0.1:{self.port}"}

    def state(self) -> dict[str, Any]:
        return {"purchase_orders": len(self.orders), "asns": len(self.asns),
                "open": sum(1 for o in self.orders.values() if o["status"] != "shipped")}

    def signals(self) -> dict[str, float]:
        return {"purchase_orders": float(len(self.orders)), "asns": float(len(self.asns))}

    def take_order(self, tenant: str, po: str, lines: list[dict[str, Any]]) -> tuple[dict, bool]:
        if (tenant, po) in self.orders:
            return self.orders[(tenant, po)], True
        lead = self.lead_time_s * math.exp(self.rng.gauss(0.0, self.sigma))
        order = {"tenant": tenant, "po_number": po, "status": "acknowledged",
                 "lines": lines, "promised_in_s": round(lead, 3)}
        self.orders[(tenant, po)] = order
        self.messages += 1
        self.spawn(self._ship(order, lead), "shipping")
        return order, False

    async def _ship(self, order: dict[str, Any], lead: float) -> None:
        await asyncio.sleep(lead)
        asn = {"asn": f"ASN-{len(self.asns) + 1:06d}", "tenant": order["tenant"],
               "po_number": order["po_number"],
               "lines": [{"item_code": ln["item_code"],
                          "qty": int(int(ln["qty"]) * self.fill_rate)} for ln in order["lines"]]}
        self.asns.append(asn)
        order["status"] = "shipped"
        base = self.env.app_url() if self.callbacks else None
        if base and self._http is not None:
            d = self.faults.decide("callbacks", asn["asn"])
            if d.outage or d.drop:
                return
            await asyncio.sleep(d.delay)
            for _ in range(d.copies):
                try:
                    await self._http.post(f"{base}/api/{order['tenant']}/asns", json=asn)
                except httpx.HTTPError:
                    pass

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

        async def orders(r: Request) -> JSONResponse:
            try:
                b = await r.json()
                lines = [{"item_code": str(ln["item_code"]), "qty": int(ln["qty"])}
                         for ln in b["lines"]]
                order, dup = self.take_order(str(b["tenant"]), str(b["po_number"]), lines)
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "need tenant, po_number, lines"}, status_code=422)
            return JSONResponse({"ack": "accepted", "duplicate": dup, **order},
                                status_code=200 if dup else 202)

        async def one(r: Request) -> JSONResponse:
            po = r.path_params["po"]
            for (_, number), o in self.orders.items():
                if number == po:
                    return JSONResponse(o)
            return JSONResponse({"error": "unknown purchase order"}, status_code=404)

        async def asns(r: Request) -> JSONResponse:
            t = r.query_params.get("tenant")
            return JSONResponse([a for a in self.asns if t in (None, a["tenant"])])

        app = Starlette(routes=[Route("/health", health), Route("/state", state),
                                Route("/purchase-orders", orders, methods=["POST"]),
                                Route("/purchase-orders/{po}", one), Route("/asns", asns)])
        return FaultMiddleware(app, self.faults, "http")
