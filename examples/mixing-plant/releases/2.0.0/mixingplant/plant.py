"""Batch records and the material ledger.

A completed batch produces its material and consumes the recipe's components in proportion
to the recipe shares. Everything one batch posts is written in one transaction: the batch
row, one ``produce`` ledger row, one ``consume`` row per recipe line, and the stock totals.
Batch ids are unique, so a redelivered completion (MQTT QoS 1 is at-least-once) is a
duplicate and posts nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .db import Database, kg_to_grams, split_by_shares


class Rejected(ValueError):
    """A message or request the plant cannot accept (bad shape, unknown material …)."""


@dataclass(frozen=True)
class BatchCompletion:
    batch_id: str
    site: str
    material: str
    qty_g: int
    completed_at: str


def to_grams(quantity: Any) -> int:
    """``{"value": "2.750", "uom": "kg"}`` as exact integer grams."""
    if not isinstance(quantity, dict):
        raise Rejected("quantity must be an object {value, uom}")
    if quantity.get("uom") != "kg":
        raise Rejected(f"unsupported unit of measure {quantity.get('uom')!r} (kg only)")
    try:
        return kg_to_grams(quantity["value"])
    except (KeyError, ArithmeticError, ValueError) as exc:
        raise Rejected(f"bad quantity {quantity.get('value')!r}: {exc}") from None


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
                               completed_at=str(body["completedAt"]))
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
         now: str) -> str:
    entry_id = uuid.uuid4().hex
    db.execute("INSERT INTO material_ledger (entry_id, site, material, kind, qty_g, ref, "
               "posted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
               (entry_id, site, material, kind, qty_g, ref, now))
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
        parts = split_by_shares(batch.qty_g, [p for _, p in lines])
        for (component, _), grams in zip(lines, parts, strict=True):
            post(db, batch.site, component, "consume", -grams, batch.batch_id, now)
    return "recorded"


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
