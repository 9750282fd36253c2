from __future__ import annotations

from plantstage.engines.backups import take_backup, verify_backup
from plantstage.rehearsal.steps import Step, StepFailed


class Backup(Step):
    """Back up staging before the release touches it with the engine's own tool, fingerprint
    what was backed up (each table's rows and each column's values: the rollback drill holds
    the data to it), and verify the backup: restored into a scratch database, it must hold
    exactly that data. A backup that does not verify fails the step."""

    name = "backup"
    title = "Back up staging"

    def run(self, ctx):
        taken = take_backup(ctx.staging_db, ctx.run_dir)
        ctx.old_columns = taken.columns
        check = verify_backup(ctx.staging_db, taken)
        available, why = ctx.staging_db.pitr_status()
        ctx.signals_from({"backup.seconds": taken.seconds, "backup.bytes": taken.bytes,
                          "backup.verify_seconds": check.seconds,
                          "backup.verified": 1.0 if check.verified else 0.0})
        if check.restore_seconds is not None:
            ctx.signal("backup.restore_seconds", check.restore_seconds)
        results = {"file": taken.path.name, "bytes": taken.bytes,
                   "seconds": round(taken.seconds, 2), "engine": ctx.staging_db.name,
                   "rows": {t: s["rows"] for t, s in taken.snapshot.items()},
                   "objects": len(taken.objects),
                   "verify": {"verified": check.verified, "seconds": round(check.seconds, 2),
                              "restore_seconds": None if check.restore_seconds is None
                              else round(check.restore_seconds, 2),
                              "problem": check.problem, "differences": check.differences[:20]},
                   "pitr": {"available": available, "reason": why}}
        if not check.verified:
            # No path or snapshot for the rollback drill: it must never restore a backup
            # that did not verify.
            ctx.backup_path = ctx.backup_snapshot = None
            raise StepFailed(f"backup did not verify: {check.problem}", results)
        ctx.backup_path = taken.path
        ctx.backup_snapshot = taken.snapshot
        # The empty database a restore fills, made now: the drill's clock times the restore.
        ctx.staging_db.prepare_restore()
        # Gone when the run ends, even when staging is kept (--keep-staging): an empty spare
        # database is nothing anyone keeps staging for.
        ctx.cleanups.append(ctx.staging_db.drop_restore_target)
        return results
