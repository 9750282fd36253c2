from __future__ import annotations

import time

from plantstage import engines
from plantstage.rehearsal.steps import Step


class Backup(Step):
    """Back up staging before the release touches it, and fingerprint what was backed up:
    each table's rows and each column's values (the rollback drill holds the data to it)."""

    name = "backup"
    title = "Back up staging"

    def run(self, ctx):
        t0 = time.perf_counter()
        ctx.backup_path = ctx.staging_db.backup(ctx.run_dir)
        seconds = time.perf_counter() - t0
        eng = ctx.staging_db.engine()
        try:
            ctx.old_columns = engines.table_columns(eng)
            ctx.backup_snapshot = engines.column_snapshot(eng, ctx.old_columns)
        finally:
            eng.dispose()
        ctx.signal("backup.seconds", seconds)
        return {"file": ctx.backup_path.name, "bytes": ctx.backup_path.stat().st_size,
                "seconds": round(seconds, 2),
                "rows": {t: s["rows"] for t, s in ctx.backup_snapshot.items()}}
