"""Exactly-once effects across systems (``effects:`` in the spec; docs/effects.md).

After the candidate phase, for each declared effect: the ids a twin saw (a MES line twin's
messages the app acknowledged, or every message it sent; what the app posted to a WMS twin)
against the ids a query on staging returns. An id the twin saw that the database does not hold
is **lost**; one the database holds more than once is **duplicated**. Both are listed in the
evidence (the first 50 of each) and recorded as ``effects.<name>.lost`` and
``effects.<name>.duplicated``, with ``effects.<name>.seen`` (distinct ids the twin saw) and
``effects.<name>.unseen`` (ids in the database the twin never saw: rows from the refresh or
other paths, for information). The judge adds a key gate per effect (zero lost, zero
duplicated; plantstage.spec.effects.effect_gates).

No data is never a pass: when the twin is not running or saw no id, the effect's lost and
duplicated signals are not recorded and its gate is inconclusive.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import sqlalchemy as sa

from plantstage.rehearsal.steps import Step
from plantstage.spec.effects import LISTED, Effect, EffectWhat
from plantstage.spec.smoke import dotted

Seen = list[tuple[str, str]]  # (tenant, id), in the order the twin saw them


def id_text(value: Any) -> str:
    """An id as text, the same whether it came from JSON or from a database column."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if hasattr(value, "normalize") and hasattr(value, "as_tuple"):  # Decimal
        value = format(value.normalize(), "f")
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return str(value)


def _pick(message: Any, path: str, fallback: Any = None) -> Any:
    found, value = dotted(message, path)
    if found and value is not None:
        return value
    return fallback


def twin_ids(twin: Any, effect: Effect, tenants: list[str]) -> tuple[Seen, int]:
    """``([(tenant, id), …], messages without the id)`` of what ``twin`` saw for ``effect``."""
    seen: Seen = []
    missing = 0
    if effect.what in (EffectWhat.acked, EffectWhat.sent):
        for d in twin.outcomes():
            if effect.what == EffectWhat.acked and not d.accepted:
                continue
            if effect.what == EffectWhat.sent and not d.deliveries:
                continue
            try:
                message = d.message
            except ValueError:
                message = None
            value = _pick(message, effect.id, d.id if effect.id == "id" else None)
            if value is None:
                missing += 1
            else:
                seen.append((d.tenant, id_text(value)))
    else:  # received: what the app posted to the twin, per tenant
        for t in tenants:
            for body in twin.received(tenant=t):
                value = _pick(body, effect.id)
                if value is None:
                    missing += 1
                else:
                    seen.append((t, id_text(value)))
    return seen, missing


def _query(conn: sa.Connection, sql: str, tenant: str | None) -> Counter:
    params = {"tenant": tenant} if tenant is not None else {}
    return Counter(id_text(row[0]) for row in conn.execute(sa.text(sql), params)
                   if row[0] is not None)


def compare(seen: Seen, in_db: dict[str | None, Counter]) -> dict[str, Any]:
    """Lost, duplicated and unseen ids. ``in_db`` is keyed by tenant, or has the one key None
    when the query is not per tenant (ids are then compared across tenants)."""
    per_tenant = None not in in_db
    seen_keys = dict.fromkeys((t if per_tenant else None, i) for t, i in seen)
    lost, dup = [], []
    for t, i in seen_keys:
        n = in_db.get(t, Counter()).get(i, 0)
        if n == 0:
            lost.append((t, i))
        elif n > 1:
            dup.append((t, i, n))
    unseen = sum(1 for t, c in in_db.items() for i in c if (t, i) not in seen_keys)

    def label(t: str | None, i: str) -> str:
        return f"{t}/{i}" if t is not None else i

    return {"seen": len(seen_keys), "lost": len(lost), "duplicated": len(dup),
            "unseen": unseen,
            "lost_ids": [label(t, i) for t, i in lost[:LISTED]],
            "duplicated_ids": [{"id": label(t, i), "rows": n} for t, i, n in dup[:LISTED]]}


class Effects(Step):
    """Reconcile what each twin saw with the database: lost and duplicated ids."""

    name = "effects"
    title = "Exactly-once effects across systems"
    after_failure = True

    def run(self, ctx) -> dict[str, Any]:
        effects: list[Effect] = list(getattr(ctx.spec, "effects", None) or [])
        if not effects:
            return {"skipped": "no effects declared"}
        if ctx.staging_db is None:
            return {"skipped": "no staging database"}
        tenants = [t.code for t in ctx.spec.estate.tenants]
        twins = getattr(ctx.twin_set, "twins", None) or {}
        out: dict[str, Any] = {}
        eng = ctx.staging_db.engine()
        try:
            with eng.connect() as conn:
                for e in effects:
                    out[e.name] = self._one(ctx, conn, e, twins.get(e.twin), tenants)
        finally:
            eng.dispose()
        ctx.sections["effects"] = {"effects": [
            {"name": e.name, "twin": e.twin, "what": e.what.value, "id": e.id,
             "description": e.description, **out[e.name]} for e in effects]}
        return out

    def _one(self, ctx, conn: sa.Connection, e: Effect, twin: Any,
             tenants: list[str], *, settle: float | None = None,
             suffix: str = "") -> dict[str, Any]:
        if e.database not in (None, ctx.database_component()):
            return {"skipped": f"database {e.database} is not the staging database"}
        if twin is None:
            return {"skipped": f"no {e.twin} twin ran: nothing to reconcile (gate "
                               "inconclusive)"}
        seen, missing = twin_ids(twin, e, tenants)
        p = f"effects.{e.name}"
        note = {"messages_without_id": missing} if missing else {}
        if not seen:
            if not suffix:
                ctx.signal(f"{p}.seen", 0)
            return {"seen": 0, **note,
                    "skipped": f"the {e.twin} twin saw no {e.what.value} message with "
                               f"'{e.id}': nothing to reconcile (gate inconclusive)"}
        by_tenant = ":tenant" in e.sql
        keys: list[str | None] = sorted({t for t, _ in seen}) if by_tenant else [None]
        deadline = time.monotonic() + (e.settle if settle is None else max(settle, e.settle))
        while True:
            result = compare(seen, {k: _query(conn, e.sql, k) for k in keys})
            if not result["lost"] or time.monotonic() >= deadline:
                break
            time.sleep(0.25)  # the app may commit just after it acknowledged
        for k in ("seen", "lost", "duplicated", "unseen"):
            ctx.signal(f"{p}.{k}{suffix}", result[k])
        return {**result, **note, "per_tenant": by_tenant}


def recheck(ctx, settle: float | None = None) -> dict[str, Any]:
    """The declared effects checked again after a recovery (the rollback drill): each
    effect's ids against staging as it is now, re-queried for up to ``settle`` seconds (at
    least the effect's own) while ids are missing — replayed messages take a moment to land.

    Records ``effects.<name>.{seen,lost,duplicated,unseen}_after_recovery`` and returns
    ``{"effects": {name: result}, "lost", "duplicated", "lost_ids"}``; ``lost`` is None when
    no effect could be checked (none declared, no twin, no id seen): the RPO is then unknown,
    never zero.
    """
    effects: list[Effect] = list(getattr(ctx.spec, "effects", None) or [])
    out: dict[str, Any] = {"effects": {}, "lost": None, "duplicated": None, "lost_ids": []}
    if not effects or ctx.staging_db is None:
        return out
    tenants = [t.code for t in ctx.spec.estate.tenants]
    twins = getattr(ctx.twin_set, "twins", None) or {}
    step = Effects()
    eng = ctx.staging_db.engine()
    try:
        with eng.connect() as conn:
            for e in effects:
                r = step._one(ctx, conn, e, twins.get(e.twin), tenants, settle=settle,
                              suffix="_after_recovery")
                out["effects"][e.name] = r
                if "lost" not in r or r.get("skipped"):
                    continue
                out["lost"] = (out["lost"] or 0) + r["lost"]
                out["duplicated"] = (out["duplicated"] or 0) + r["duplicated"]
                out["lost_ids"] += [f"{e.name}:{i}" for i in r["lost_ids"]]
                conn.rollback()  # the next effect reads a fresh snapshot
    finally:
        eng.dispose()
    section = ctx.sections.get("effects")
    if section:
        for entry in section.get("effects", []):
            if entry.get("name") in out["effects"]:
                entry["after_recovery"] = out["effects"][entry["name"]]
    return out
