"""The sample plant's multi-step smoke checks, as plugin flows (docs/flows.md).

The spec's ``smoke:`` runs each once against the version under test, right after the traffic
switch (``{name: …, flow: smoke-confirmation-moves-stock, params: {qty: 3}}``). A flow fails the
check by raising ``FlowError``; its message is what the rehearsal reports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from plantstage.api import FlowContext, FlowError, flow


def _qty(body: dict) -> Decimal:
    # Decimal, never float: "moved by exactly 3" must not depend on binary rounding.
    return Decimal(str(body["qty"]))


@flow("smoke-confirmation-moves-stock",
      description="A production confirmation of `qty` (default 3) on a released work order "
      "moves on-hand of its item by exactly that much.")
async def confirmation_moves_stock(ctx: FlowContext) -> None:
    t = ctx.tenant.code
    qty = int(ctx.params.get("qty", 3))
    orders = ctx.expect(await ctx.http.get(f"/api/{t}/work-orders",
                                           params={"status": "released", "limit": 1}), 200)
    if not orders:
        raise FlowError("no_released_work_order", f"tenant {t} has no released work order")
    wo = orders[0]
    item = wo["item_code"]
    before = _qty(ctx.expect(await ctx.http.get(f"/api/{t}/on-hand/{item}"), 200))
    msg = {"message_id": ctx.ref, "work_order": wo["number"], "good_qty": qty, "scrap_qty": 0,
           "sent_at": datetime.now(UTC).isoformat(), "lot": None}
    ctx.expect(await ctx.http.post(f"/api/{t}/confirmations", json=msg), 200)
    after = _qty(ctx.expect(await ctx.http.get(f"/api/{t}/on-hand/{item}"), 200))
    if after - before != qty:
        raise FlowError("on_hand_moved_wrong",
                        f"a confirmation of {qty} × {item} moved on-hand by {after - before} "
                        f"({before} → {after})")


@flow("smoke-one-line-import",
      description="A one-line sales order import posts (the app answers imported: 1).")
async def one_line_import(ctx: FlowContext) -> None:
    t = ctx.tenant.code
    customers = ctx.expect(await ctx.http.get(f"/api/{t}/customers", params={"limit": 1}), 200)
    items = ctx.expect(await ctx.http.get(f"/api/{t}/items", params={"kind": "finished"}), 200)
    if not customers or not items:
        raise FlowError("no_master_data", f"tenant {t} lists no customer or finished item")
    order = {"external_ref": ctx.ref, "customer_code": customers[0]["code"],
             "lines": [{"item_code": items[0]["code"], "qty": 1, "unit_price": "10.00"}]}
    body = ctx.expect(await ctx.http.post(f"/api/{t}/sales-orders/import",
                                          json={"orders": [order]}), 200)
    if body.get("imported") != 1:
        raise FlowError("not_imported", f"the app answered {body}")
