"""The mixing plant's flows, written against plantstage's public API only (docs/flows.md).

The spec lists this module under ``plugins:``; plantstage knows nothing of this app. A tenant
is a site (``gent``, ``lyon``, ``porto``); the flows draw the site's paints (finished materials
with an active recipe) and raw materials from ``workload.tenant_data``.

Quantities are decimal kg with three decimals (whole grams) and are compared exactly: what
the line twin sent, what the database recorded and what the WMS twin received must be the
same number of grams.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from plantstage.api import FlowContext, FlowError, flow

GRAMS = Decimal(1000)


def _pick(ctx: FlowContext, name: str) -> Any:
    values = ctx.tenant.data.get(name) or []
    if not values:
        raise FlowError(f"no_{name}", f"tenant_data '{name}' is empty for {ctx.tenant.code}")
    return ctx.rng.choice(values)


def _kg(ctx: FlowContext, low: float, high: float) -> Decimal:
    """A random amount in kg with gram precision that is never a whole kg (2.750, 317.031)."""
    grams = ctx.rng.randint(int(low * 1000), int(high * 1000))
    if grams % 1000 == 0:
        grams += 1
    return Decimal(grams) / GRAMS


@flow("batch-completion",
      description="The mixing line reports a finished batch over MQTT (through the line twin, "
                  "in the app's payload shape; MQTT QoS 1, no app-level ack). The flow waits "
                  "until the app shows the batch (GET …/batches/{id}) and compares the "
                  "recorded kg with what was sent, exactly; with `check_wms` also what the WMS "
                  "twin received. "
                  "e2e = publish → batch recorded.",
      signals={"batches_sent": "batch completions the line twin published",
               "batches_recorded": "batches that reached the database",
               "batches_lost": "batches that never reached the database (dropped by the app)",
               "quantity_mismatches": "batches recorded with another quantity than sent",
               "wms_quantity_mismatches": "WMS receipts with another quantity than sent",
               "wms_receipts": "production receipts the WMS twin received"})
async def batch_completion(ctx: FlowContext) -> None:
    site = ctx.tenant.code
    paint = _pick(ctx, "paints")
    qty = _kg(ctx, float(ctx.params.get("min_kg", 250)), float(ctx.params.get("max_kg", 4000)))
    batch_id = f"{site}-rh-{ctx.ref}"
    for name in ("batches_recorded", "batches_lost", "quantity_mismatches",
                 "wms_quantity_mismatches"):
        ctx.count(name, 0)  # present (as 0) in every phase, so gates on them never lack data
    t0 = time.monotonic()
    async with ctx.step("publish"):
        await ctx.twin("mixing-line").publish(site, {"material": paint, "qty": qty},
                                              key=batch_id)
    ctx.count("batches_sent")

    async def recorded() -> dict | None:
        r = await ctx.http.get(f"/api/sites/{site}/batches/{batch_id}")
        return None if r.status_code == 404 else ctx.expect(r, 200)

    try:
        batch = await ctx.wait_until(recorded, name="batch-recorded")
    except FlowError as exc:
        if exc.kind != "timeout_batch-recorded":
            raise
        ctx.count("batches_lost")
        raise FlowError("batch_not_recorded",
                        f"{batch_id} ({qty} kg {paint}) never reached the database") from None
    ctx.record_e2e(time.monotonic() - t0)
    ctx.count("batches_recorded")
    recorded_kg = Decimal(batch["quantity"]["value"])
    if batch["quantity"]["uom"] != "kg" or recorded_kg != qty:
        ctx.count("quantity_mismatches")
        raise FlowError("quantity_mismatch",
                        f"{batch_id}: sent {qty} kg, recorded {batch['quantity']}")
    if ctx.params.get("check_wms") and ctx.has_twin("wms"):
        await _check_wms(ctx, batch_id, qty)


async def _check_wms(ctx: FlowContext, batch_id: str, qty: Decimal) -> None:
    wms = ctx.twin("wms")
    ref = f"{batch_id}:receipt"

    async def received() -> dict | None:
        # The bodies the app posted, as it sent them (its own field names).
        return next((m for m in wms.received(tenant=ctx.tenant.code)
                     if m.get("movementId") == ref), None)

    # The app's outbox retries through WMS outages: give it longer than one request.
    movement = await ctx.wait_until(received, name="wms-receipt", timeout=ctx.timeout + 5)
    ctx.count("wms_receipts")
    got = movement.get("quantity") or {}
    if got.get("uom") != "kg" or Decimal(str(got.get("value"))) != qty:
        ctx.count("wms_quantity_mismatches")
        raise FlowError("wms_quantity_mismatch",
                        f"{batch_id}: sent {qty} kg, the WMS received {got}")


@flow("stock-adjustment",
      description="A cycle-count adjustment of a raw material in decimal kg over HTTP; the "
                  "answer must echo the exact quantity.",
      signals={"adjustments": "adjustments the app booked",
               "adjustment_mismatches": "adjustments booked with another quantity"})
async def stock_adjustment(ctx: FlowContext) -> None:
    site, material = ctx.tenant.code, _pick(ctx, "raw")
    qty = _kg(ctx, 0.1, 25) * ctx.rng.choice([1, -1])
    ctx.count("adjustment_mismatches", 0)
    body = ctx.expect(await ctx.http.post(f"/api/sites/{site}/adjustments", json={
        "material": material, "quantity": {"value": str(qty), "uom": "kg"},
        "reason": f"cycle count {ctx.ref}"}), 201)
    ctx.count("adjustments")
    if Decimal(body["quantity"]["value"]) != qty:
        ctx.count("adjustment_mismatches")
        raise FlowError("quantity_mismatch",
                        f"adjusted {qty} kg, booked {body['quantity']['value']} kg")


@flow("recipe-lookup",
      description="A planner opens a paint's active recipe and the stock of its components.",
      signals={"recipes_read": "recipes read"})
async def recipe_lookup(ctx: FlowContext) -> None:
    site, paint = ctx.tenant.code, _pick(ctx, "paints")
    async with ctx.step("recipes"):
        recipes = ctx.expect(await ctx.http.get(f"/api/sites/{site}/recipes"), 200)
    recipe = next((r for r in recipes if r["material"] == paint), None)
    if recipe is None:
        raise FlowError("no_recipe", f"no active recipe for {paint} at {site}")
    async with ctx.step("component-stock"):
        for line in recipe["lines"][: int(ctx.params.get("components", 3))]:
            ctx.expect(await ctx.http.get(f"/api/sites/{site}/stock/{line['material']}"), 200)
    ctx.count("recipes_read")
