from __future__ import annotations

import sqlalchemy as sa

from plantstage.rehearsal.steps import Step


class Reconcile(Step):
    """Business reconciliation on staging: each declared query lists mismatches (none = ok)."""

    name = "reconcile"
    title = "Reconcile business data"
    after_failure = True

    def run(self, ctx):
        if ctx.staging_db is None:
            return {"skipped": "no staging database"}
        out = {}
        eng = ctx.staging_db.engine()
        try:
            with eng.connect() as c:
                for check in ctx.spec.reconcile:
                    rows = c.execute(sa.text(check.sql)).fetchall()
                    ctx.signal(f"reconcile.{check.name}.mismatches", len(rows))
                    out[check.name] = {"mismatches": len(rows),
                                       "examples": [list(map(str, r)) for r in rows[:5]]}
        finally:
            eng.dispose()
        return out
