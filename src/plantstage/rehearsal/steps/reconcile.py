"""Business reconciliation on staging, where the data is: after the migration, after the
candidate load, after the rollback drill (a check's ``when``).

A plain check's query returns its mismatches (no rows = ok). A ``compare: before-after`` check's
query returns the data the release must not change: its rows are snapshotted just before the
release touches staging (right after the backup, so they are the backup's) and compared with
its rows at each point; every row added, removed or changed (by ``key``) is a mismatch.
Either way the signal is ``reconcile.<name>.mismatches`` (the most any point found), and
``reconcile.<name>.mismatches_<point>`` per point.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from plantstage.commands import reason_line
from plantstage.rehearsal.steps import Step, StepFailed

SAMPLES = 20
BEFORE_FILE = "reconcile-before.json"
POINTS = ("after-migrate", "after-load", "after-recovery")  # in the rehearsal's order


def _first(points: list[str]) -> str:
    return min(points, key=POINTS.index)


# -- values --------------------------------------------------------------------------------
def _encode(v: Any) -> Any:
    """A query's value as JSON (Decimal kept exact, as {"d": text})."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Decimal):
        return {"d": str(v)}
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return str(v)


def _decode(v: Any) -> Any:
    return Decimal(v["d"]) if isinstance(v, dict) and "d" in v else v


def _number(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    return None


def _key_text(v: Any) -> str:
    n = _number(v)
    if n is not None:
        return "0" if n == 0 else format(n.normalize(), "f")
    return "NULL" if v is None else str(v)


def _same(a: Any, b: Any, tolerance: float) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        if not (na.is_finite() and nb.is_finite()):
            return str(na) == str(nb)  # NaN equals NaN here; infinities by sign
        try:
            return abs(na - nb) <= Decimal(repr(tolerance))
        except InvalidOperation:
            return False
    return _key_text(a) == _key_text(b)


def _natural(key: tuple) -> tuple:
    """Sort order of a key: numbers by value (2 before 10), then text."""
    out = []
    for part in key:
        try:
            d = Decimal(part)
        except (InvalidOperation, ValueError):
            d = None
        out.append((0, d, "") if d is not None and d.is_finite() else (1, Decimal(0), str(part)))
    return tuple(out)


def _show(v: Any) -> str:
    return _key_text(v)


# -- before-after difference ----------------------------------------------------------------
def compare_rows(before_cols: list[str], before: list[list[Any]], after_cols: list[str],
                 after: list[list[Any]], *, key: list[str] | None = None,
                 tolerance: float = 0.0, samples: int = SAMPLES) -> dict[str, Any]:
    """The difference between a query's rows before and after the release.

    With ``key``: rows are matched by their key columns, and a matched row whose other columns
    differ (numbers by more than ``tolerance``) is changed. Without a key, whole rows are
    compared as a multiset (added / removed only). Column lists that differ are one mismatch
    more, and only the common columns are compared. Returns counts, ``mismatches`` (their sum)
    and up to ``samples`` rows: ``{change, key, before, after}`` as readable text.
    """
    key = list(key or [])
    common = [c for c in before_cols if c in after_cols]
    out: dict[str, Any] = {"rows_before": len(before), "rows_after": len(after),
                           "added": 0, "removed": 0, "changed": 0, "samples": []}
    col_problem = 0
    if list(before_cols) != list(after_cols):
        col_problem = 1
        out["columns"] = {"before": list(before_cols), "after": list(after_cols)}
    missing = [k for k in key if k not in common]
    if missing:
        out["error"] = (f"key column(s) {', '.join(missing)} not in the query's result "
                        f"(columns: {', '.join(common)})")
        out["mismatches"] = max(1, len(before), len(after))
        return out
    bi = [before_cols.index(c) for c in common]
    ai = [after_cols.index(c) for c in common]
    b_rows = [[r[i] for i in bi] for r in before]
    a_rows = [[r[i] for i in ai] for r in after]
    found: list[tuple[str, tuple, dict[str, Any]]] = []

    def text(row: list[Any], cols: list[str]) -> str:
        return ", ".join(f"{c}={_show(row[common.index(c)])}" for c in cols)

    if key:
        kidx = [common.index(k) for k in key]
        rest = [c for c in common if c not in key]

        def index(rows: list[list[Any]]) -> dict[tuple, list[Any]]:
            seen: Counter = Counter()
            out_: dict[tuple, list[Any]] = {}
            for r in rows:
                k = tuple(_key_text(r[i]) for i in kidx)
                seen[k] += 1
                out_[k if seen[k] == 1 else (*k, f"#{seen[k]}")] = r
            return out_

        bmap, amap = index(b_rows), index(a_rows)
        for k in sorted(bmap.keys() | amap.keys(), key=_natural):
            b, a = bmap.get(k), amap.get(k)
            ktext = text(b if b is not None else a, key)
            if b is None:
                out["added"] += 1
                found.append(("added", k, {"key": ktext, "before": "—", "after": text(a, rest)}))
            elif a is None:
                out["removed"] += 1
                found.append(("removed", k, {"key": ktext, "before": text(b, rest),
                                             "after": "—"}))
            else:
                diff = [c for c in rest if not _same(b[common.index(c)], a[common.index(c)],
                                                     tolerance)]
                if diff:
                    out["changed"] += 1
                    found.append(("changed", k, {"key": ktext, "before": text(b, diff),
                                                 "after": text(a, diff)}))
    else:
        def norm(r: list[Any]) -> tuple:
            return tuple(_key_text(v) for v in r)

        bc, ac = Counter(map(norm, b_rows)), Counter(map(norm, a_rows))
        shown = {norm(r): r for r in b_rows + a_rows}
        for k in sorted((bc - ac).keys()):
            n = (bc - ac)[k]
            out["removed"] += n
            found.append(("removed", k, {"key": "", "before": text(shown[k], common)
                                         + (f" (×{n})" if n > 1 else ""), "after": "—"}))
        for k in sorted((ac - bc).keys()):
            n = (ac - bc)[k]
            out["added"] += n
            found.append(("added", k, {"key": "", "before": "—",
                                       "after": text(shown[k], common)
                                       + (f" (×{n})" if n > 1 else "")}))
    out["mismatches"] = out["added"] + out["removed"] + out["changed"] + col_problem
    out["samples"] = [{"change": kind, **row} for kind, _k, row in found[:samples]]
    return out


# -- running the checks ------------------------------------------------------------------------
def _query(conn, sql: str) -> tuple[list[str], list[list[Any]]]:
    res = conn.execute(sa.text(sql))
    return list(res.keys()), [list(r) for r in res.fetchall()]


def _failure(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return reason_line(f"{type(orig).__name__}: {orig}") or type(orig).__name__


def snapshot_before(ctx) -> dict[str, int]:
    """Run every before-after check's query on staging as it is now — before the release
    touches it — and keep the rows (run_dir/reconcile-before.json). Rows per check."""
    checks = [c for c in ctx.spec.reconcile if c.compare]
    if not checks or ctx.staging_db is None:
        return {}
    data: dict[str, Any] = {}
    eng = ctx.staging_db.engine()
    try:
        with eng.connect() as c:
            for check in checks:
                try:
                    cols, rows = _query(c, check.sql)
                except sa.exc.SQLAlchemyError as exc:
                    raise StepFailed(f"reconcile.{check.name}: its query fails on the data "
                                     f"before the release: {_failure(exc)}") from None
                data[check.name] = {"columns": cols,
                                    "rows": [[_encode(v) for v in r] for r in rows]}
    finally:
        eng.dispose()
    (ctx.run_dir / BEFORE_FILE).write_text(json.dumps(data))
    return {name: len(d["rows"]) for name, d in data.items()}


def _before(ctx) -> dict[str, Any]:
    try:
        return json.loads((ctx.run_dir / BEFORE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def run_point(ctx, point: str) -> dict[str, Any]:
    """Run the checks declared for ``point`` (after-migrate, after-load, after-recovery) on
    staging; record their signals and the report section. A query that fails is a finding:
    StepFailed once every check has run."""
    checks = [c for c in ctx.spec.reconcile if point in c.points]
    if not checks or ctx.staging_db is None:
        return {}
    before = _before(ctx) if any(c.compare for c in checks) else {}
    out: dict[str, Any] = {}
    errors: list[str] = []
    section = ctx.sections.setdefault("reconcile", {"checks": []})
    eng = ctx.staging_db.engine()
    try:
        with eng.connect() as c:
            for check in checks:
                rec: dict[str, Any] = {"name": check.name, "point": point,
                                       "description": check.description,
                                       "compare": check.compare or "mismatch rows"}
                try:
                    cols, rows = _query(c, check.sql)
                except sa.exc.SQLAlchemyError as exc:
                    c.rollback()
                    why = _failure(exc)
                    rec.update(mismatches=None, error=f"query failed: {why}")
                    errors.append(f"reconcile.{check.name} {point}: query failed: {why}")
                    section["checks"].append(rec)
                    out[check.name] = rec
                    continue
                if check.compare:
                    b = before.get(check.name)
                    if b is None:
                        rec.update(mismatches=None, error="no snapshot from before the release")
                        section["checks"].append(rec)
                        out[check.name] = rec
                        continue
                    rec.update(compare_rows(b["columns"], [[_decode(v) for v in r]
                                                           for r in b["rows"]],
                                            cols, rows, key=check.key,
                                            tolerance=check.tolerance))
                    rec["key_columns"] = check.key
                else:
                    rec.update(mismatches=len(rows), columns=cols, samples=[
                        {"change": "mismatch", "key": "",
                         "before": "", "after": ", ".join(f"{k}={_show(v)}"
                                                          for k, v in zip(cols, r, strict=False))}
                        for r in rows[:SAMPLES]],
                        examples=[list(map(str, r)) for r in rows[:5]])
                n = rec["mismatches"]
                ctx.signal(f"reconcile.{check.name}.mismatches_{point.replace('-', '_')}", n)
                prev = ctx.signals.get(f"reconcile.{check.name}.mismatches")
                ctx.signal(f"reconcile.{check.name}.mismatches",
                           n if prev is None or point == _first(check.points) else max(prev, n))
                section["checks"].append(rec)
                out[check.name] = rec
    finally:
        eng.dispose()
    if errors:
        raise StepFailed("; ".join(errors), {"reconcile": out})
    return out


class ReconcileAfterLoad(Step):
    """Reconcile checks declared ``when: after-load``: after the candidate load, before the
    rollback drill changes the data."""

    name = "reconcile-after-load"
    title = "Reconcile after the load"

    def run(self, ctx):
        if not any("after-load" in c.points for c in ctx.spec.reconcile):
            return {"skipped": "no reconcile check runs after-load"}
        if ctx.staging_db is None:
            return {"skipped": "no staging database"}
        return run_point(ctx, "after-load")


class Reconcile(Step):
    """Business reconciliation on staging after the rollback drill (``when: after-recovery``,
    the default of plain checks): each declared query lists mismatches (none = ok)."""

    name = "reconcile"
    title = "Reconcile business data"
    after_failure = True

    def run(self, ctx):
        if ctx.staging_db is None:
            return {"skipped": "no staging database"}
        done = ctx.results.get("reconcile@after-recovery")
        if done is not None:
            # The rollback drill reconciled as the last part of its recovery (timed there).
            if done["error"]:
                raise StepFailed(done["error"], {"reconcile": done["results"]})
            return {**done["results"], "run_by": "rollback-drill"} if done["results"] \
                else {"skipped": "no reconcile check runs after-recovery"}
        return run_point(ctx, "after-recovery")
