from __future__ import annotations

import time

from plantstage import engines
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.rehearsal.steps.migrate import run_migration
from plantstage.rehearsal.steps.provision import start_version


class RollbackDrill(Step):
    """Roll back as production would: downgrade when the release says it is reversible,
    restore from the backup when not. Timed, and the data is compared before and after."""

    name = "rollback-drill"
    title = "Rollback drill"
    after_failure = True

    def run(self, ctx):
        if ctx.staging_db is None or ctx.backup_snapshot is None:
            return {"skipped": "nothing was changed yet"}
        mig = ctx.release.migrations
        if mig.reversible and mig.downgrade:
            return self._downgrade(ctx, mig.downgrade)
        return self._restore(ctx)

    def _snapshot(self, ctx):
        eng = ctx.staging_db.engine()
        try:
            present = engines.table_columns(eng)
            cols = {t: [c for c in cs if c in present.get(t, [])]
                    for t, cs in ctx.old_columns.items() if t in present}
            return engines.snapshot(eng, cols)
        finally:
            eng.dispose()

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
        run_migration(ctx, ctx.release, command, "downgrade")
        after = self._snapshot(ctx)
        ctx.blue.wait_healthy(10)
        seconds = time.perf_counter() - t0
        diffs = engines.compare_snapshots(before, after)
        # Tables the release added are expected to go; data that existed before must stay.
        missing_old = [t for t in ctx.old_columns if t not in after]
        lost = sum(d["lost"] or 0 for d in diffs)
        ctx.signals_from({"rollback.seconds": seconds, "rollback.rows_lost": lost,
                          "rollback.tables_changed": len(diffs) + len(missing_old)})
        results = {"method": "downgrade", "seconds": round(seconds, 2), "changed_tables": diffs,
                   "missing_tables": missing_old, "rows_compared":
                   sum(s["rows"] for s in before.values())}
        if diffs or missing_old:
            names = ", ".join(f"{d['table']} ({d['before']} → {d['after']} rows)" for d in diffs)
            raise StepFailed(f"data lost on downgrade: {names or ', '.join(missing_old)}",
                             results)
        return results

    def _restore(self, ctx):
        t0 = time.perf_counter()
        for p in (ctx.green, ctx.blue):
            if p is not None:
                p.stop()
        before = self._snapshot(ctx)
        ctx.staging_db.restore(ctx.backup_path)
        ctx.blue = start_version(ctx, ctx.current, "blue")
        ctx.router.switch(ctx.blue.port)
        seconds = time.perf_counter() - t0
        after = self._snapshot(ctx)
        diffs = engines.compare_snapshots(ctx.backup_snapshot, after)
        since_backup = sum(max(0, before[t]["rows"] - ctx.backup_snapshot[t]["rows"])
                           for t in before if t in ctx.backup_snapshot)
        ctx.signals_from({"rollback.seconds": seconds, "rollback.rows_lost":
                          sum(d["lost"] or 0 for d in diffs),
                          "rollback.tables_changed": len(diffs),
                          "rollback.rows_written_since_backup": since_backup})
        results = {"method": "restore", "seconds": round(seconds, 2), "changed_tables": diffs,
                   "rows_written_since_backup": since_backup}
        if diffs:
            raise StepFailed("the restore does not match the backup", results)
        return results
