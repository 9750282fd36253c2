"""Batch records and the material ledger.

A completed batch produces its material and consumes the recipe's components in proportion
to the recipe shares. Everything one batch posts is written in one transaction: the batch
row, one ``produce`` ledger row, one ``consume`` row per recipe line, and the stock totals.
Batch ids are unique, so a redelivered completion (MQTT QoS 1 is at-least-once) is a
duplicate and posts nothing.

Since 2.1.0 a completion may name the input lots it used (``inputLots``): they are kept as
the batch's genealogy (``batch_inputs``) and on the consumption postings (``lot``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .db import Database, split_by_shares

#: grams per unit of measure the plant accepts
UOM_GRAMS = {"kg": 1000, "g": 1}


class Rejected(ValueError):
    """A message or request the plant cannot accept (bad shape, unknown material …)."""


@dataclass(frozen=True)
class BatchCompletion:
    batch_id: str
    site: str
    material: str
    qty_g: int
    completed_at: str
    input_lots: tuple[tuple[str, str, int], ...] = ()  # (material, lot, grams)


def to_grams(quantity: Any) -> int:
    """``{"value": "2.750", "uom": "kg"}`` (or ``"g"``) as exact integer grams."""
    if not isinstance(quantity, dict):
        raise Rejected("quantity must be an object {value, uom}")
    factor = UOM_GRAMS.get(quantity.get("uom"))  # type: ignore[arg-type]
    if factor is None:
        raise Rejected(f"unsupported unit of measure {quantity.get('uom')!r} (kg or g)")
    try:
        grams = Decimal(str(quantity["value"]).strip()) * factor
    except (KeyError, InvalidOperation) as exc:
        raise Rejected(f"bad quantity {quantity.get('value')!r}: {exc!r}") from None
    if not grams.is_finite() or grams != grams.to_integral_value():
        raise Rejected(f"{quantity['value']} {quantity['uom']} is not a whole number of grams")
    return int(grams)


def _input_lots(items: Any) -> tuple[tuple[str, str, int], ...]:
    if not isinstance(items, list):
        raise Rejected("inputLots must be a list")
    try:
        return tuple((str(i["material"]), str(i["lot"]), to_grams(i["quantity"]))
                     for i in items)
    except (KeyError, TypeError) as exc:
        raise Rejected(f"bad input lot: {exc!r}") from None


def parse_completion(payload: bytes | str) -> BatchCompletion:
    """A batch-completion message from the line (JSON)."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise Rejected(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Rejected("a batch completion must be a JSON object")
    try:
        return BatchCompletion(batch_id=str(body["batchId"]), site=str(body["site"]),
                               material=str(body["material"]),
                               qty_g=to_grams(body["quantity"]),
                               completed_at=str(body["completedAt"]),
                               input_lots=_input_lots(body.get("inputLots", [])))
    except KeyError as exc:
        raise Rejected(f"missing field {exc}") from None


def active_recipe(db: Database, site: str, material: str) -> tuple[str, list[tuple[str, int]]]:
    row = db.one("SELECT id FROM recipes WHERE site = ? AND material = ? AND status = 'active' "
                 "ORDER BY revision DESC LIMIT 1", (site, material))
    if row is None:
        raise Rejected(f"no active recipe for {material} at {site}")
    lines = db.all("SELECT material, pct_milli FROM recipe_lines WHERE recipe_id = ? "
                   "ORDER BY line_no", (row[0],))
    return row[0], [(m, p) for m, p in lines]


def post(db: Database, site: str, material: str, kind: str, qty_g: int, ref: str | None,
         now: str, lot: str | None = None) -> str:
    entry_id = uuid.uuid4().hex
    db.execute("INSERT INTO material_ledger (entry_id, site, material, kind, qty_g, ref, "
               "posted_at, lot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (entry_id, site, material, kind, qty_g, ref, now, lot))
    db.execute("INSERT INTO stock (site, material, qty_g) VALUES (?, ?, ?) "
               "ON CONFLICT (site, material) DO UPDATE SET qty_g = stock.qty_g + excluded.qty_g",
               (site, material, qty_g))
    return entry_id


def record_batch(db: Database, batch: BatchCompletion) -> str:
    """Record a completed batch; ``"recorded"`` or ``"duplicate"``."""
    now = _now()
    with db.transaction():
        if db.one("SELECT 1 FROM batches WHERE batch_id = ?", (batch.batch_id,)):
            return "duplicate"
        if db.one("SELECT 1 FROM sites WHERE code = ?", (batch.site,)) is None:
            raise Rejected(f"unknown site {batch.site!r}")
        if batch.qty_g <= 0:
            raise Rejected("a batch quantity must be positive")
        recipe_id, lines = active_recipe(db, batch.site, batch.material)
        db.execute("INSERT INTO batches (batch_id, site, recipe_id, material, qty_g, "
                   "completed_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (batch.batch_id, batch.site, recipe_id, batch.material, batch.qty_g,
                    batch.completed_at, now))
        post(db, batch.site, batch.material, "produce", batch.qty_g, batch.batch_id, now)
        lots: dict[str, list[str]] = {}
        for material, lot, grams in batch.input_lots:
            db.execute("INSERT INTO batch_inputs (batch_id, material, lot, qty_g) "
                       "VALUES (?, ?, ?, ?)", (batch.batch_id, material, lot, grams))
            lots.setdefault(material, []).append(lot)
        parts = split_by_shares(batch.qty_g, [p for _, p in lines])
        for (component, _), grams in zip(lines, parts, strict=True):
            lot = ",".join(lots.get(component, [])) or None
            post(db, batch.site, component, "consume", -grams, batch.batch_id, now, lot)
    return "recorded"


def genealogy(db: Database, site: str, batch_id: str) -> list[dict[str, Any]] | None:
    """The input lots a batch used, or None when there is no such batch."""
    if db.one("SELECT 1 FROM batches WHERE site = ? AND batch_id = ?",
              (site, batch_id)) is None:
        return None
    rows = db.all("SELECT material, lot, qty_g FROM batch_inputs WHERE batch_id = ? "
                  "ORDER BY material, lot", (batch_id,))
    return [{"material": m, "lot": lot, "grams": g} for m, lot, g in rows]


def where_used(db: Database, site: str, lot: str) -> list[str]:
    """Batches that consumed an input lot (for a recall)."""
    rows = db.all("SELECT DISTINCT i.batch_id FROM batch_inputs i JOIN batches b "
                  "ON b.batch_id = i.batch_id WHERE b.site = ? AND i.lot = ? ORDER BY 1",
                  (site, lot))
    return [r[0] for r in rows]


def adjust(db: Database, site: str, material: str, quantity: Any, reason: str) -> tuple[str, int]:
    """A stock adjustment (count difference, receipt without a PO …); (entry id, grams)."""
    grams = to_grams(quantity)
    with db.transaction():
        if db.one("SELECT 1 FROM materials WHERE site = ? AND code = ?",
                  (site, material)) is None:
            raise Rejected(f"unknown material {material!r} at {site}")
        entry = post(db, site, material, "adjust", grams, reason[:80] or None, _now())
    return entry, grams


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
