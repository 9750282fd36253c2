"""The sample plant's business flows, written against plantstage's public API only.

plantstage knows nothing of this app: the spec lists this module under ``plugins:``, declares the
tenant master data the flows read (``workload.tenant_data``: finished and raw items, customers,
released work orders) and gives each flow its ``params:``. See docs/flows.md.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from plantstage.api import FlowContext, FlowError, flow


def _pick(ctx: FlowContext, name: str) -> Any:
    values = ctx.tenant.data.get(name) or []
    if not values:
        raise FlowError(f"no_{name}")
    return ctx.rng.choice(values)


async def _on_hand(ctx: FlowContext, item: str) -> int:
    body = ctx.expect(await ctx.http.get(f"/api/{ctx.tenant.code}/on-hand/{item}"), 200)
    return int(body["qty"] or 0)


def _confirmation(ctx: FlowContext, prefix: str, work_order: str, good: int,
                  scrap: int = 0) -> dict[str, Any]:
    return {"message_id": f"{prefix}-{ctx.tenant.code}-{ctx.ref}", "work_order": work_order,
            "good_qty": good, "scrap_qty": scrap, "sent_at": datetime.now(UTC).isoformat(),
            "lot": None}


@flow("sales-order-import", description="An EDI batch of `orders` × `lines` sales orders.",
      signals={"orders_imported": "orders the app imported",
               "lines_imported": "order lines the app imported"})
async def sales_order_import(ctx: FlowContext) -> None:
    n_orders, n_lines = int(ctx.params.get("orders", 10)), int(ctx.params.get("lines", 5))
    rng = ctx.rng
    orders = [{
        "external_ref": f"PS-{ctx.ref}-{o}",
        "customer_code": _pick(ctx, "customers"),
        "lines": [{"item_code": _pick(ctx, "finished"), "qty": rng.randint(1, 20),
                   "unit_price": round(rng.uniform(5, 500), 2)} for _ in range(n_lines)],
    } for o in range(n_orders)]
    body = ctx.expect(await ctx.http.post(f"/api/{ctx.tenant.code}/sales-orders/import",
                                          json={"orders": orders}))
    ctx.count("orders_imported", body.get("imported", 0))
    ctx.count("lines_imported", body.get("lines", 0))


@flow("production-confirmation",
      description="A production confirmation over HTTP; a `redeliver` share is sent twice.",
      signals={"confirmations_sent": "confirmations sent",
               "confirmations_posted": "confirmations the app posted",
               "redelivered": "confirmations sent a second time",
               "redelivery_accepted_as_new": "second copies the app posted again (a defect)"})
async def production_confirmation(ctx: FlowContext) -> None:
    t = ctx.tenant.code
    msg = _confirmation(ctx, "ps", _pick(ctx, "work_orders"), ctx.rng.randint(1, 10),
                        ctx.rng.randint(0, 1))
    first = ctx.expect(await ctx.http.post(f"/api/{t}/confirmations", json=msg))
    ctx.count("confirmations_sent")
    ctx.count("confirmations_posted", int(first.get("status") == "posted"))
    if ctx.rng.random() < float(ctx.params.get("redeliver", 0.0)):
        # The MES did not see our acknowledgement in time and sends the same message again.
        again = ctx.expect(await ctx.http.post(f"/api/{t}/confirmations", json=msg))
        ctx.count("redelivered")
        ctx.count("redelivery_accepted_as_new", int(again.get("status") == "posted"))


@flow("inventory-adjustment", description="A cycle-count stock adjustment.",
      signals={"inventory_updates": "adjustments the app booked"})
async def inventory_adjustment(ctx: FlowContext) -> None:
    item = _pick(ctx, "raw" if ctx.tenant.data.get("raw") else "finished")
    ctx.expect(await ctx.http.post(f"/api/{ctx.tenant.code}/inventory/adjustments", json={
        "item_code": item, "qty": ctx.rng.choice([-3, -1, 1, 2, 5]),
        "reason": f"cycle count {ctx.ref}"}))
    ctx.count("inventory_updates")


@flow("work-order-to-stock",
      description="Work order → confirmation → on-hand visibly moved; e2e = event time → "
                  "stock visible.",
      signals={"work_orders_created": "work orders created",
               "confirmations_posted": "confirmations the app posted",
               "stock_updates_visible": "stock updates seen in the API"})
async def work_order_to_stock(ctx: FlowContext) -> None:
    t, item = ctx.tenant.code, _pick(ctx, "finished")
    good = ctx.rng.randint(1, 5)
    async with ctx.step("create-work-order"):
        wo = ctx.expect(await ctx.http.post(f"/api/{t}/work-orders",
                                            json={"item_code": item, "qty": good}))["number"]
    async with ctx.step("read-stock"):
        before = await _on_hand(ctx, item)
    msg = _confirmation(ctx, "ws", wo, good)
    sent = datetime.fromisoformat(msg["sent_at"])  # the event time: the line reports it
    async with ctx.step("confirm"):
        body = ctx.expect(await ctx.http.post(f"/api/{t}/confirmations", json=msg))
    if body.get("status") != "posted":
        raise FlowError("confirmation_not_posted")

    async def stock_moved() -> bool:
        # Finished goods are never consumed, so on-hand only grows: at least our quantity.
        return await _on_hand(ctx, item) >= before + good

    await ctx.wait_until(stock_moved, name="stock-updated")
    ctx.record_e2e((datetime.now(UTC) - sent).total_seconds())
    ctx.count("work_orders_created")
    ctx.count("confirmations_posted")
    ctx.count("stock_updates_visible")


@flow("purchase-to-receipt",
      description="Purchase order → ASN (from the supplier-portal twin when it runs) → goods "
                  "receipt per line, waited for in the ledger; e2e = ASN → receipt booked.",
      signals={"purchase_orders": "purchase orders placed", "goods_receipts": "receipts posted",
               "receipt_lines": "receipt lines posted",
               "via_supplier_twin": "receipts that went through the supplier-portal twin"})
async def purchase_to_receipt(ctx: FlowContext) -> None:
    t, po = ctx.tenant.code, f"PO-{ctx.ref}"
    pool = "raw" if ctx.tenant.data.get("raw") else "finished"
    lines = [{"item_code": _pick(ctx, pool), "qty": ctx.rng.randint(5, 50)}
             for _ in range(int(ctx.params.get("lines", 3)))]
    via_twin = ctx.has_twin("supplier-portal")
    if via_twin:
        supplier = ctx.twin("supplier-portal").url
        async with ctx.step("purchase-order"):
            ctx.expect(await ctx.http.post(f"{supplier}/purchase-orders", json={
                "tenant": t, "po_number": po, "lines": lines}), (200, 202))

        async def shipped() -> dict | None:
            r = await ctx.http.get(f"{supplier}/asns", params={"tenant": t})
            if r.status_code != 200:
                return None  # the twin's own faults: keep waiting until the timeout
            return next((a for a in r.json() if a.get("po_number") == po), None)

        # The supplier's lead time is seconds; the app's own wait stays ctx.timeout.
        asn = await ctx.wait_until(shipped, name="asn", timeout=ctx.timeout + 10)
        lines = [ln for ln in asn["lines"] if ln["qty"] > 0]
        asn_no = asn["asn"]
    else:
        asn_no = f"ASN-{ctx.ref}"
    shipped_at = datetime.now(UTC)
    async with ctx.step("goods-receipt"):
        for i, line in enumerate(lines):
            ctx.expect(await ctx.http.post(f"/api/{t}/inventory/adjustments", json={
                "item_code": line["item_code"], "qty": line["qty"],
                "reason": f"GR {po}/{i} {asn_no}"}))
    n = len(lines)
    if ctx.db.available:
        await ctx.db.wait_until("SELECT COUNT(*) FROM inventory_ledger WHERE ref LIKE :p",
                                lambda rows: rows[0][0] >= n, name="receipt-booked",
                                p=f"GR {po}/%")
    elif lines:
        async def answered() -> bool:
            await _on_hand(ctx, lines[-1]["item_code"])
            return True

        await ctx.wait_until(answered, name="receipt-booked")
    ctx.record_e2e((datetime.now(UTC) - shipped_at).total_seconds())
    ctx.count("purchase_orders")
    ctx.count("goods_receipts")
    ctx.count("receipt_lines", n)
    ctx.count("via_supplier_twin", int(via_twin))


@flow("mrp-run",
      description="An MRP-style batch job over `items` finished items: reads open work orders "
                  "and stock, plans work orders for shortages (latency = the job's duration).",
      signals={"mrp_runs": "runs", "mrp_items_checked": "items planned",
               "work_orders_planned": "work orders created for shortages"})
async def mrp_run(ctx: FlowContext) -> None:
    t = ctx.tenant.code
    finished = ctx.tenant.data.get("finished") or []
    if not finished:
        raise FlowError("no_finished")
    items = ctx.rng.sample(finished, min(int(ctx.params.get("items", 10)), len(finished)))
    async with ctx.step("read-open-work-orders"):
        open_wos = ctx.expect(await ctx.http.get(
            f"/api/{t}/work-orders?status=released&limit=1000"))
    planned: dict[str, int] = {}
    for w in open_wos:
        planned[w["item_code"]] = planned.get(w["item_code"], 0) + w["qty"] - w["qty_done"]
    async with ctx.step("read-stock"):
        stock = {i: await _on_hand(ctx, i) for i in items}
    created = 0
    async with ctx.step("plan-work-orders"):
        for item in items:
            target = ctx.rng.randint(20, 80)  # this run's safety stock for the item
            short = target - stock[item] - planned.get(item, 0)
            if short > 0:
                ctx.expect(await ctx.http.post(f"/api/{t}/work-orders",
                                               json={"item_code": item, "qty": short}))
                created += 1
    ctx.count("mrp_runs")
    ctx.count("mrp_items_checked", len(items))
    ctx.count("work_orders_planned", created)


@flow("retry-storm",
      description="One confirmation sent `burst` times at once by an integration layer that "
                  "retries with backoff; exactly one copy may post.",
      signals={"storm_messages": "copies sent", "storm_retries": "retries after 5xx/transport",
               "storm_double_posted": "copies posted beyond the first (a defect)",
               "storm_duplicate_postings": "ledger postings beyond one (database bound)"})
async def retry_storm(ctx: FlowContext) -> None:
    t = ctx.tenant.code
    msg = _confirmation(ctx, "rs", _pick(ctx, "work_orders"), ctx.rng.randint(1, 5))
    retries = 0

    async def send() -> str:
        nonlocal retries
        for attempt in range(4):
            try:
                r = await ctx.http.post(f"/api/{t}/confirmations", json=msg)
                if r.status_code < 500:
                    return ctx.expect(r).get("status", "")
            except FlowError:
                raise
            except Exception:  # noqa: BLE001 - transport trouble is what a retry is for
                if attempt == 3:
                    raise
            retries += 1
            await asyncio.sleep(0.05 * 2 ** attempt)
        raise FlowError("storm_gave_up")

    async with ctx.step("storm"):
        statuses = await asyncio.gather(*(send() for _ in range(int(ctx.params.get("burst",
                                                                                    5)))))
    posted = statuses.count("posted")
    ctx.count("storm_messages", len(statuses))
    ctx.count("storm_retries", retries)
    ctx.count("storm_double_posted", max(0, posted - 1))
    if posted == 0:
        raise FlowError("storm_not_posted")
    if ctx.db.available:
        async with ctx.step("count-postings"):
            rows = await ctx.db.query("SELECT COUNT(*) FROM inventory_ledger WHERE source = "
                                      "'confirmation' AND ref = :m", m=msg["message_id"])
        ctx.count("storm_duplicate_postings", max(0, rows[0][0] - 1))


@flow("mqtt-confirmation",
      description="The MES line twin confirms production over MQTT (the contract the spec "
                  "declares on the twin); the app must post it exactly once.",
      signals={"confirmations_sent": "confirmations published",
               "confirmations_posted": "confirmations the app acknowledged as posted",
               "mqtt_deliveries": "MQTT deliveries (redeliveries and duplicates included)",
               "redelivered": "confirmations delivered more than once",
               "redelivery_accepted_as_new": "redeliveries the app posted again (a defect)",
               "twin_unavailable": "iterations the MES twin itself could not serve"})
async def mqtt_confirmation(ctx: FlowContext) -> None:
    mes = ctx.twin("mes-line")
    wo = _pick(ctx, "work_orders")
    try:
        d = await mes.publish(ctx.tenant.code, {"work_order": wo,
                                                "good_qty": ctx.rng.randint(1, 10),
                                                "scrap_qty": ctx.rng.randint(0, 1)},
                              key=f"mq-{ctx.tenant.code}-{ctx.ref}")
    except (RuntimeError, OSError):
        # The twin itself failed: a twin failure (the twins check reports it), not the app's.
        ctx.count("twin_unavailable")
        return
    acks = list(getattr(d, "acks", None) or [])
    deliveries = int(getattr(d, "deliveries", 0) or 0)
    ctx.count("confirmations_sent")
    ctx.count("confirmations_posted", int(d.status == "posted"))
    ctx.count("mqtt_deliveries", deliveries)
    if deliveries > 1:
        ctx.count("redelivered")
        ctx.count("redelivery_accepted_as_new", int(acks.count("posted") > 1))
    if d.status is None:
        raise FlowError("no_ack")
    if d.status == "rejected":
        raise FlowError("rejected")
