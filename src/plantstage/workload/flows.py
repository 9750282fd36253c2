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


# -- Multi-step flows (step timing, wait-until-visible, end-to-end latency) ----------------
# The step helpers are imported inside the functions: plantstage.workload.steps imports this
# module for FlowError, and this file must stay importable on its own.


async def _on_hand(client, tenant: str, item: str) -> int:
    return int(_check(await client.get(f"/api/{tenant}/on-hand/{item}"))["qty"] or 0)


async def work_order_to_stock(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    """Work order → production confirmation → stock update visible in the app's API."""
    from plantstage.workload.steps import record_e2e, step, wait_until

    if not tenant.finished:
        raise FlowError("no_finished_items")
    t, item = tenant.code, rng.choice(tenant.finished)
    good = rng.randint(1, 5)
    async with step("create-work-order"):
        wo = _check(await client.post(f"/api/{t}/work-orders",
                                      json={"item_code": item, "qty": good}))["number"]
    async with step("read-stock"):
        before = await _on_hand(client, t, item)
    sent = datetime.now(UTC)  # the event time: when the line reports the quantity
    async with step("confirm"):
        body = _check(await client.post(f"/api/{t}/confirmations", json={
            "message_id": f"ws-{t}-{ref}", "work_order": wo, "good_qty": good, "scrap_qty": 0,
            "sent_at": sent.isoformat(), "lot": None}))
    if body.get("status") != "posted":
        raise FlowError("confirmation_not_posted")

    async def stock_moved() -> bool:
        # Finished goods are never consumed, so on-hand only grows: at least our quantity.
        return await _on_hand(client, t, item) >= before + good

    await wait_until(stock_moved, name="stock-updated", timeout=wf.timeout)
    record_e2e((datetime.now(UTC) - sent).total_seconds())
    return {"work_orders_created": 1, "confirmations_posted": 1, "stock_updates_visible": 1}


async def purchase_to_receipt(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    """Purchase order → advance shipping notice → goods receipt, visible in the ledger.

    With a supplier-portal twin in the run, the purchase order goes to the twin, which
    acknowledges it and ships (issues the ASN) after its lead time; the flow waits for the ASN,
    posts the goods receipt per ASN line to the app and waits until the app's database (or, with
    none bound, its API) shows it booked. Without a twin the flow plays the supplier itself.
    End-to-end latency: ASN issued → receipt visible.
    """
    from plantstage.workload.steps import current, query, record_e2e, step, wait_until

    items = tenant.raw or tenant.finished
    if not items:
        raise FlowError("no_items")
    t, po = tenant.code, f"PO-{ref}"
    lines = [{"item_code": rng.choice(items), "qty": rng.randint(5, 50)}
             for _ in range(wf.lines)]
    supplier = current().resources.twins.get("supplier-portal")
    if supplier is not None:
        async with step("purchase-order"):
            r = await client.post(f"{supplier}/purchase-orders",
                                  json={"tenant": t, "po_number": po, "lines": lines})
            _check(r, (200, 202))

        async def shipped() -> dict | None:
            r = await client.get(f"{supplier}/asns", params={"tenant": t})
            if r.status_code != 200:
                return None  # the twin's own faults: keep waiting until the timeout
            return next((a for a in r.json() if a.get("po_number") == po), None)

        # The supplier's lead time is seconds; the app's own wait stays wf.timeout.
        asn = await wait_until(shipped, name="asn", timeout=wf.timeout + 10)
        lines = [ln for ln in asn["lines"] if ln["qty"] > 0]
        asn_no = asn["asn"]
    else:
        asn_no = f"ASN-{ref}"
    shipped_at = datetime.now(UTC)
    async with step("goods-receipt"):
        for i, line in enumerate(lines):
            _check(await client.post(f"/api/{t}/inventory/adjustments", json={
                "item_code": line["item_code"], "qty": line["qty"],
                "reason": f"GR {po}/{i} {asn_no}"}))
    n = len(lines)
    if current().resources.database_url is not None:
        async def booked() -> bool:
            rows = await query("SELECT COUNT(*) FROM inventory_ledger WHERE ref LIKE :p",
                               p=f"GR {po}/%")
            return rows[0][0] >= n
    else:
        async def booked() -> bool:
            return not lines or await _on_hand(client, t, lines[-1]["item_code"]) is not None

    await wait_until(booked, name="receipt-booked", timeout=wf.timeout)
    record_e2e((datetime.now(UTC) - shipped_at).total_seconds())
    return {"purchase_orders": 1, "goods_receipts": 1, "receipt_lines": n,
            "via_supplier_twin": int(supplier is not None)}


async def mrp_run(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    """An MRP-style batch job: read stock and open work orders, plan work orders for shortages.

    The iteration's latency is the job's duration (``workload.<phase>.mrp-run.p95_ms``).
    """
    from plantstage.workload.steps import step

    if not tenant.finished:
        raise FlowError("no_finished_items")
    t = tenant.code
    items = rng.sample(tenant.finished, min(wf.items, len(tenant.finished)))
    async with step("read-open-work-orders"):
        open_wos = _check(await client.get(f"/api/{t}/work-orders?status=released&limit=1000"))
    planned: dict[str, int] = {}
    for w in open_wos:
        planned[w["item_code"]] = planned.get(w["item_code"], 0) + w["qty"] - w["qty_done"]
    async with step("read-stock"):
        stock = {i: await _on_hand(client, t, i) for i in items}
    created = 0
    async with step("plan-work-orders"):
        for item in items:
            target = rng.randint(20, 80)  # this run's safety stock for the item
            short = target - stock[item] - planned.get(item, 0)
            if short > 0:
                _check(await client.post(f"/api/{t}/work-orders",
                                         json={"item_code": item, "qty": short}))
                created += 1
    return {"mrp_runs": 1, "mrp_items_checked": len(items), "work_orders_planned": created}


async def retry_storm(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    """An integration retry storm: one confirmation sent ``burst`` times at once, with retries.

    Exactly one copy may post. Copies posted more than once count as ``storm_double_posted``
    (and, with the database bound, ledger postings beyond one as ``storm_duplicate_postings``).
    """
    import asyncio

    from plantstage.workload.steps import current, query, step

    if not tenant.work_orders:
        raise FlowError("no_released_work_orders")
    t = tenant.code
    msg = {"message_id": f"rs-{t}-{ref}", "work_order": rng.choice(tenant.work_orders),
           "good_qty": rng.randint(1, 5), "scrap_qty": 0,
           "sent_at": datetime.now(UTC).isoformat(), "lot": None}
    retries = 0

    async def send() -> str:
        nonlocal retries
        for attempt in range(4):  # an integration layer retrying with backoff
            try:
                r = await client.post(f"/api/{t}/confirmations", json=msg)
                if r.status_code < 500:
                    return _check(r).get("status", "")
            except FlowError:
                raise
            except Exception:  # noqa: BLE001 - transport trouble is what a retry is for
                if attempt == 3:
                    raise
            retries += 1
            await asyncio.sleep(0.05 * 2 ** attempt)
        raise FlowError("storm_gave_up")

    async with step("storm"):
        statuses = await asyncio.gather(*(send() for _ in range(wf.burst)))
    posted = statuses.count("posted")
    extra = {"storm_messages": len(statuses), "storm_retries": retries,
             "storm_double_posted": max(0, posted - 1)}
    if posted == 0:
        raise FlowError("storm_not_posted")
    if current().resources.database_url is not None:
        async with step("count-postings"):
            rows = await query("SELECT COUNT(*) FROM inventory_ledger WHERE source = "
                               "'confirmation' AND ref = :m", m=msg["message_id"])
        extra["storm_duplicate_postings"] = max(0, rows[0][0] - 1)
    return extra


# -- Confirmations through the MES line twin (MQTT) --------------------------------------
# While a rehearsal runs an MES line twin, the twins step attaches it here. The flow asks the
# twin to produce on one of the tenant's work orders; the twin publishes the confirmation over
# MQTT with its faults, redelivers what the app does not acknowledge, and reports the acks.

_mes_channel: Any = None


def attach_mes_twin(channel: Any) -> None:
    """Route ``mqtt-confirmation`` through ``channel`` (an object with ``async confirm``)."""
    global _mes_channel
    _mes_channel = channel


async def mqtt_confirmation(client, tenant: TenantData, wf, rng: random.Random, ref: str):
    """The MES line twin confirms production over MQTT; the app must post it exactly once."""
    channel = _mes_channel
    if channel is None:
        raise FlowError("no_mes_twin")
    if not tenant.work_orders:
        raise FlowError("no_released_work_orders")
    out = await channel.confirm(tenant.code, rng.choice(tenant.work_orders), ref)
    if out is None:  # the twin itself failed: a twin failure, not the app's error
        return {"twin_unavailable": 1}
    acks = out.get("acks", [])
    extra = {"confirmations_sent": 1, "confirmations_posted": int(out.get("status") == "posted"),
             "mqtt_deliveries": out.get("deliveries", 0)}
    if out.get("deliveries", 0) > 1:
        extra["redelivered"] = 1
        extra["redelivery_accepted_as_new"] = int(acks.count("posted") > 1)
    if out.get("status") is None:
        raise FlowError("no_ack")
    if out.get("status") == "rejected":
        raise FlowError("rejected")
    return extra


FLOWS = {
    "sales-order-import": sales_order_import,
    "production-confirmation": production_confirmation,
    "inventory-adjustment": inventory_adjustment,
    "work-order-to-stock": work_order_to_stock,
    "purchase-to-receipt": purchase_to_receipt,
    "mrp-run": mrp_run,
    "retry-storm": retry_storm,
    "mqtt-confirmation": mqtt_confirmation,
}
