from __future__ import annotations

from plantstage.errors import PlantstageError
from plantstage.parity import run_parity, write_report
from plantstage.rehearsal.steps import Step, StepFailed


def _staging_engine(ctx) -> str | None:  # noqa: ANN001
    """The database URL this rehearsal will provision staging on (``--staging-db`` first)."""
    if ctx.staging_db_override:
        return ctx.staging_db_override
    try:
        b = ctx.binding("staging", ctx.database_component())
        return ctx.resolve_url(b.url or "sqlite:///{run_dir}/staging.sqlite")
    except PlantstageError:
        return None  # provisioning reports it; parity then reads what it can


class Parity(Step):
    """Prove staging is a faithful replica of production before anything else runs.

    It runs first, before staging exists: topology, versions (production's running version
    against the release staging will start), configuration and access are compared from the
    bindings, the release artifact and the config files (``{artifact}`` in a path: the release
    under test); the schema layer compares production's schema with the one the current
    release's migrations build on the engine staging will run on (``--staging-db`` or
    staging's binding: a scratch database on that server, dropped afterwards; SQLite in
    ``RUN/parity/``), which is exactly the schema provisioning gives staging. Blocking drift,
    or anything that could not be read (unless ``differ: unknown`` allows it), fails the step: the
    rehearsal is NO-GO before any migration runs, and the later steps are skipped (the
    after-failure steps find no staging and do nothing; cleanup still happens).
    """

    name = "parity"
    title = "Parity: staging vs production"
    #: Drift fails the step (NO-GO); an error (a bad spec, a staging server that cannot be
    #: reached) means the rehearsal could not run (exit 2).
    setup = True

    def run(self, ctx):
        report = run_parity(ctx.loaded, run_dir=ctx.run_dir, scratch=ctx.run_dir / "parity",
                            release=ctx.release, staging_engine=_staging_engine(ctx))
        write_report(report, ctx.run_dir)
        ctx.sections["parity"] = report.section()
        ctx.signals_from(report.signals())
        c = report.counts()
        results = {"outcome": report.outcome, "same": c["same"], "allowed": c["allowed"],
                   "drift": c["drift"], "unknown": c["unknown"],
                   "blocking": [f"{f.layer}: {f.key} ({f.severity})" for f in report.blocking]}
        if report.blocking:
            first = report.blocking[0]
            more = f" and {len(report.blocking) - 1} more" if len(report.blocking) > 1 else ""
            what = "blocking drift" if first.status == "drift" else \
                "blocking unknown (could not be read)"
            raise StepFailed(f"{what}: {first.layer} {first.key} ({first.severity}): "
                             f"{first.reason}{more}", results)
        return results
