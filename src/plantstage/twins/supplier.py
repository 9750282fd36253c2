"""Supplier-portal twin: takes purchase orders over HTTP, acknowledges them, and issues an
advance shipping notice (ASN) after a seeded lead time. Routes, field names and the quantity
(a decimal with a unit) are the contract the spec declares (docs/twins.md).

Route roles: ``order`` (the app places a purchase order: 202, or 200 with ``duplicate: true``),
``order_status`` (one order, its path names ``{order}``), ``asns`` (ASNs issued so far,
``?<tenant field>=T``). Field roles: ``tenant``, ``order`` (the order number), ``lines``
(each with ``item`` and ``qty``), ``asn`` (the ASN number), ``status``.
With ``contract.callback`` each ASN is also sent to the app.
"""

from __future__ import annotations

import asyncio
import math
import random
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import httpx

from plantstage.spec.twins import SETTINGS as KIND_SETTINGS
from plantstage.twins.base import Twin, serve_http, stop_http
from plantstage.twins.contract import ContractError, Quantity, dumps, get_path, parse_json
from plantstage.twins.http import ContractHttp, FaultMiddleware

SETTINGS = KIND_SETTINGS["supplier-portal"]
ROLES = ("tenant", "order", "lines", "item", "qty", "unit", "asn", "status")


class SupplierPortalTwin(Twin):
    kind = "supplier-portal"
    links = ("http", "callbacks")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(SETTINGS)
        self.http = ContractHttp(self, ROLES)
        self.lead_time_s = float(self.setting("lead_time_s", 1.0, float))
        self.sigma = float(self.setting("lead_time_sigma", 0.3, float))
        self.fill_rate = Decimal(str(self.setting("fill_rate", 1.0, float)))
        self.callbacks = self.setting("callbacks", True, bool)
        self.rng = random.Random(f"{self.spec.seed}:{self.name}")
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}
        self.asns: list[dict[str, Any]] = []
        self.stats.update({"purchase_orders": 0, "asns": 0, "refused": 0,
                           "callbacks_sent": 0, "callbacks_failed": 0})
        self._server = self._task = None
        self.port = 0
        self._client: httpx.AsyncClient | None = None

    async def _start(self) -> None:
        self._client = httpx.AsyncClient(timeout=5.0)
        self._server, self._task, self.port = await serve_http(self._asgi(), self.spec.port,
                                                               self.name)

    async def _stop(self) -> None:
        await stop_http(self._server, self._task)
        if self._client is not None:
            await self._client.aclose()

    def endpoints(self) -> dict[str, str]:
        return {"http": f"http://127.0.0.1:{self.port}"}

    def state(self) -> dict[str, Any]:
        return {"purchase_orders": len(self.orders), "asns": len(self.asns),
                "open": sum(1 for o in self.orders.values() if o["status"] != "shipped")}

    def take_order(self, tenant: str, po: str, lines: list[dict[str, Any]]) -> tuple[dict, bool]:
        """``lines``: ``[{"item": …, "qty": Quantity}]``; returns (order record, duplicate)."""
        if (tenant, po) in self.orders:
            return self.orders[(tenant, po)], True
        lead = self.lead_time_s * math.exp(self.rng.gauss(0.0, self.sigma))
        order = {"tenant": tenant, "order": po, "status": "acknowledged", "lines": lines,
                 "promised_in_s": round(lead, 3)}
        self.orders[(tenant, po)] = order
        self.messages += 1
        self.stats["purchase_orders"] += 1
        self.spawn(self._ship(order, lead), "shipping")
        return order, False

    def _out(self, rec: dict[str, Any]) -> dict[str, Any]:
        """An order or ASN in the contract's field names."""
        out = self.http.write({k: v for k, v in rec.items() if k != "lines"})
        lines_field = self.http.fields["lines"]
        out[lines_field] = [self.http.write(ln) for ln in rec["lines"]]
        return out

    async def _ship(self, order: dict[str, Any], lead: float) -> None:
        await asyncio.sleep(lead)
        lines = []
        for ln in order["lines"]:
            q: Quantity = ln["qty"]
            # A short shipment sends whole declared units (floor), never more than ordered.
            shipped = (q.value * self.fill_rate).quantize(Decimal(1).scaleb(-q.decimals),
                                                          rounding=ROUND_FLOOR)
            lines.append({"item": ln["item"],
                          "qty": Quantity(shipped, q.unit, q.decimals, q.encoding)})
        asn = {"asn": f"ASN-{len(self.asns) + 1:06d}", "tenant": order["tenant"],
               "order": order["order"], "lines": lines}
        self.asns.append(asn)
        self.stats["asns"] += 1
        order["status"] = "shipped"
        if self.callbacks and self.http.contract.callback is not None:
            env = {k: v for k, v in asn.items() if k != "lines"}
            ok = await self.http.callback(self._client, env, self._out(asn), asn["asn"])
            if ok is not None:
                self.stats["callbacks_sent" if ok else "callbacks_failed"] += 1

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

        async def order(r: Request) -> Response:
            try:
                body = parse_json(await r.body())
                got = self.http.read(body, dict(r.path_params), ("tenant", "order", "lines"))
                if why := self.http.missing(got, ("tenant", "order", "lines")):
                    raise ContractError(why, where=f["lines"])
                lines = []
                for ln in got["lines"]:
                    item = get_path(ln, f["item"])
                    unit = get_path(ln, f["unit"]) if "unit" in self.http.contract.fields \
                        else None
                    lines.append({"item": str(item),
                                  "qty": self.http.qty(get_path(ln, f["qty"]), unit)})
            except ContractError as exc:
                self.stats["refused"] += 1
                return js({"error": exc.message}, 422)
            except (ValueError, KeyError, TypeError):
                self.stats["refused"] += 1
                return js({"error": f"need {f['tenant']}, {f['order']}, {f['lines']} "
                                    f"[{{{f['item']}, {f['qty']}}}]"}, 422)
            rec, dup = self.take_order(str(got["tenant"]), str(got["order"]), lines)
            return js({"ack": "accepted", "duplicate": dup, **self._out(rec)},
                      200 if dup else 202)

        async def one(r: Request) -> Response:
            po = r.path_params.get("order")
            for (_, number), o in self.orders.items():
                if number == po:
                    return js(self._out(o))
            return js({"error": "unknown purchase order"}, 404)

        async def asns(r: Request) -> Response:
            t = r.path_params.get("tenant", r.query_params.get(f["tenant"]))
            return js([self._out(a) for a in self.asns if t in (None, a["tenant"])])

        routes = [Route("/health", health), Route("/state", state)]
        routes += self.http.routes({"order": order, "order_status": one, "asns": asns})
        return FaultMiddleware(Starlette(routes=routes), self.faults, "http",
                               stats=self.stats)
