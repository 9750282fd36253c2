from __future__ import annotations

import time
from typing import Any

from plantstage import engines
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.rehearsal.steps.migrate import run_release_steps
from plantstage.rehearsal.steps.provision import start_version

Snapshot = dict[str, dict[str, Any]]


def account(before: Snapshot, after: Snapshot, old_columns: dict[str, list[str]], *,
            reference: Snapshot | None = None, on: str = "downgrade") -> dict[str, Any]:
    """What the rollback lost of the data that existed before the release, counted apart:
    rows gone, values wiped in rows that stayed, and columns gone (dropped or renamed).

    ``before`` and ``after`` are :func:`plantstage.engines.column_snapshot` results taken just
    before and just after the rollback, over the pre-release columns present at the time;
    ``old_columns`` are the tables and columns before the release. A column the release
    renamed or dropped is absent from ``before``; when the rollback brings it back, its values
    are held against ``reference`` (the backup's snapshot): fewer values than at the backup
    are values the rollback did not restore. ``on`` names the rollback in the messages.
    """
    reference = reference or {}
    rows_lost = values_lost = columns_lost = 0
    problems: list[dict[str, Any]] = []
    changed: set[str] = set()

    def problem(table: str, kind: str, count: int, message: str, column: str | None = None):
        problems.append({"table": table, "column": column, "kind": kind, "count": count,
                         "message": message})
        changed.add(table)

    for table, cols in old_columns.items():
        a = after.get(table)
        # A table the release dropped or renamed and the rollback brought back: held against
        # the backup, every column as one the rollback restored.
        restored = table not in before
        b = reference.get(table) if restored else before[table]
        if a is None:
            n = b["rows"] if b else 0
            rows_lost += n
            columns_lost += len(cols)
            problem(table, "table", n, f"table {table} missing after {on} ({n:,} rows)")
            continue
        if b is None:
            continue
        gone = max(0, b["rows"] - a["rows"])
        if gone:
            rows_lost += gone
            problem(table, "rows", gone, f"{table}: {gone:,} rows lost on {on} "
                                         f"({b['rows']:,} → {a['rows']:,} rows)")
        for col in cols:
            if col not in a["columns"]:
                columns_lost += 1
                why = "" if col in before.get(table, {}).get("columns", ()) else \
                    " (the release renamed or dropped it)"
                problem(table, "column", 1, f"column {table}.{col} missing after {on}{why}", col)
                continue
            fa = a["by_column"][col]
            if restored or col not in b["columns"]:
                # Renamed or dropped by the release, back after the rollback: its values must be.
                ref = (reference.get(table) or {}).get("by_column", {}).get(col)
                n = max(0, ref["values"] - fa["values"]) if ref else 0
                if n:
                    values_lost += n
                    problem(table, "values", n,
                            f"{table}.{col}: {n:,} values not restored by the {on}", col)
                continue
            # Values that left with lost rows are counted as rows, not again as values.
            n = max(0, engines.values_missing(b["by_column"][col], fa) - gone)
            if n:
                values_lost += n
                problem(table, "values", n, f"{table}.{col}: {n:,} values wiped on {on}", col)
        same_cols = list(a["columns"]) == list(b["columns"])
        if (not restored and same_cols and a["digest"] != b["digest"] and table not in changed
                and a["rows"] == b["rows"]):
            # Every column holds the same values, yet the rows differ: values moved between rows.
            problem(table, "rows", 0, f"{table}: rows changed on {on} (each column's values "
                                      "kept, but not in the same rows)")
    return {"rows_lost": rows_lost, "values_lost": values_lost, "columns_lost": columns_lost,
            "tables_changed": len(changed), "problems": problems}


class RollbackDrill(Step):
    """Roll back as production would: downgrade when the release says it is reversible,
    restore from the backup when not. Timed, and the data is compared before and after —
    rows, each column's values, and the columns themselves."""

    name = "rollback-drill"
    title = "Rollback drill"
    after_failure = True

    def run(self, ctx):
        if ctx.staging_db is None or ctx.backup_snapshot is None:
            return {"skipped": "nothing was changed yet"}
        steps = ctx.release.release_steps("rollback")  # before, downgrade, after
        if ctx.release.migrations.reversible and steps["downgrade"]:
            return self._downgrade(ctx, steps)
        return self._restore(ctx)

    def _snapshot(self, ctx):
        eng = ctx.staging_db.engine()
        try:
            present = engines.table_columns(eng)
            cols = {t: [c for c in cs if c in present.get(t, [])]
                    for t, cs in ctx.old_columns.items() if t in present}
            return engines.column_snapshot(eng, cols)
        finally:
            eng.dispose()

    def _finish(self, ctx, loss: dict[str, Any], results: dict[str, Any], on: str,
                extra: dict[str, float] | None = None):
        ctx.signals_from({"rollback.seconds": results["seconds"],
                          "rollback.rows_lost": loss["rows_lost"],
                          "rollback.values_lost": loss["values_lost"],
                          "rollback.columns_lost": loss["columns_lost"],
                          "rollback.tables_changed": loss["tables_changed"], **(extra or {})})
        results.update({k: loss[k] for k in ("rows_lost", "values_lost", "columns_lost")},
                       problems=loss["problems"])
        if loss["problems"]:
            raise StepFailed(f"data lost on {on}: "
                             + "; ".join(p["message"] for p in loss["problems"]), results)
        return results

    def _downgrade(self, ctx, command):
        t0 = time.perf_counter()
        # Traffic goes back to the old version first; it runs on the expanded schema. The
        # switch stopped it (consumers included), so it starts again as production would.
        if ctx.blue is None or not ctx.blue.alive():
            ctx.blue = start_version(ctx, ctx.current, "blue")
        ctx.router.switch(ctx.blue.port)
        if ctx.green is not None:
            ctx.green.stop()
        before = self._snapshot(ctx)
        run_release_steps(ctx, ctx.release, "rollback")
        after = self._snapshot(ctx)
        ctx.blue.wait_healthy(10)
        seconds = time.perf_counter() - t0
        # Tables the release added are expected to go; data that existed before must stay.
        loss = account(before, after, ctx.old_columns, reference=ctx.backup_snapshot)
        results = {"method": "downgrade", "seconds": round(seconds, 2),
                   "rows_compared": sum(s["rows"] for s in before.values())}
        return self._finish(ctx, loss, results, "downgrade")

    def _restore(self, ctx):
        t0 = time.perf_counter()
        for p in (ctx.green, ctx.blue):
            if p is not None:
                p.stop()
        before = self._snapshot(ctx)
        run_release_steps(ctx, ctx.release, "rollback", ("before",))
        ctx.staging_db.restore(ctx.backup_path)
        run_release_steps(ctx, ctx.release, "rollback", ("after",))
        ctx.blue = start_version(ctx, ctx.current, "blue")
        ctx.router.switch(ctx.blue.port)
        seconds = time.perf_counter() - t0
        after = self._snapshot(ctx)
        loss = account(ctx.backup_snapshot, after, ctx.old_columns, on="restore")
        since_backup = sum(max(0, before[t]["rows"] - ctx.backup_snapshot[t]["rows"])
                           for t in before if t in ctx.backup_snapshot)
        results = {"method": "restore", "seconds": round(seconds, 2),
                   "rows_written_since_backup": since_backup}
        return self._finish(ctx, loss, results, "restore",
                            {"rollback.rows_written_since_backup": since_backup})
