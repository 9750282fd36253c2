"""Built-in business flows for the sample plant's API (order import, confirmations, stock)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx


class FlowError(Exception):
    """An iteration failed; ``kind`` groups errors in the signals (http_422, duplicate …)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


@dataclass
class TenantData:
    code: str
    finished: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    work_orders: list[str] = field(default_factory=list)


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    r = await client.get(path)
    if r.status_code != 200:
        raise FlowError(f"http_{r.status_code}")
    return r.json()


async def load_tenant_data(client: httpx.AsyncClient, tenant: str) -> TenantData:
    """Read the master data a tenant's flows draw from (items, customers, open orders)."""
    d = TenantData(tenant)
    items = f"/api/{tenant}/items?limit=200&kind="
    d.finished = [i["code"] for i in await _get(client, items + "finished")]
    d.raw = [i["code"] for i in await _get(client, items + "raw")]
    d.customers = [c["code"] for c in await _get(client, f"/api/{tenant}/customers?limit=200")]
    d.work_orders = [w["number"] for w in
                     await _get(client, f"/api/{tenant}/work-orders?status=released&limit=200")]
    return d


def _check(r: httpx.Response, ok: tuple[int, ...] = (200, 201)) -> dict:
    if r.status_code not in ok:
        raise FlowError(f"http_{r.status_code}")
    return r.json()


async def sales_order_import(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    orders = [
        {
            "external_ref": f"PS-{ref}-{o}",
            "customer_code": rng.choice(tenant.customers),
            "lines": [
                {"item_code": rng.choice(tenant.finished), "qty": rng.randint(1, 20),
                 "unit_price": round(rng.uniform(5, 500), 2)}
                for _ in range(wf.lines)
            ],
        }
        for o in range(wf.orders)
    ]
    body = _check(await client.post(f"/api/{tenant.code}/sales-orders/import",
                                    json={"orders": orders}))
    return {"orders_imported": body.get("imported", 0), "lines_imported": body.get("lines", 0)}


async def production_confirmation(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    if not tenant.work_orders:
        raise FlowError("no_released_work_orders")
    msg = {
        "message_id": f"ps-{tenant.code}-{ref}",
        "work_order": rng.choice(tenant.work_orders),
        "good_qty": rng.randint(1, 10),
        "scrap_qty": rng.randint(0, 1),
        "sent_at": datetime.now(UTC).isoformat(),
        "lot": None,
    }
    first = _check(await client.post(f"/api/{tenant.code}/confirmations", json=msg))
    extra = {"confirmations_sent": 1, "confirmations_posted": int(first.get("status") == "posted")}
    if rng.random() < wf.redeliver:
        # The MES did not see our acknowledgement in time and sends the same message again.
        again = _check(await client.post(f"/api/{tenant.code}/confirmations", json=msg))
        extra["redelivered"] = 1
        extra["redelivery_accepted_as_new"] = int(again.get("status") == "posted")
    return extra


async def inventory_adjustment(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    item = rng.choice(tenant.raw or tenant.finished)
    _check(await client.post(f"/api/{tenant.code}/inventory/adjustments",
                             json={"item_code": item, "qty": rng.choice([-3, -1, 1, 2, 5]),
                                   "reason": f"cycle count {ref}"}))
    return {"inventory_updates": 1}


FLOWS = {
    "sales-order-import": sales_order_import,
    "production-confirmation": production_confirmation,
    "inventory-adjustment": inventory_adjustment,
}
