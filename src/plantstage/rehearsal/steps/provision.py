from __future__ import annotations

import time
import traceback

from plantstage import engines
from plantstage.engines.errors import database_error, is_database_error
from plantstage.errors import EngineError, PlantstageError, SpecError
from plantstage.rehearsal.processes import ManagedProcess, free_port
from plantstage.rehearsal.router import Router
from plantstage.rehearsal.steps import Step, StepFailed


class SetupError(PlantstageError):
    """Staging could not be provisioned (the rehearsal could not run: exit 2)."""


def start_version(ctx, release, color: str) -> ManagedProcess:
    """Start one app version as a real process on a free port and wait until it is healthy
    (:meth:`RunContext.start_version`: the release's own launcher and runtime included)."""
    return ctx.start_version(release, color)


def build_schema(ctx, release, need: str) -> list[dict]:
    """The release's schema on the run's staging database, built the way the migrate step
    upgrades a release: its ordered upgrade steps (before, upgrade, after — or the
    ``migrations.upgrade`` shorthand), commands in its folder and SQL files on staging, each with
    its timeout, logged to ``logs/schema-PHASE-NAME.log``. Their records (phase, name, seconds)."""
    from plantstage.upgrade_steps import UpgradeStepFailed, require_upgrade, run_upgrade_steps

    require_upgrade(release, "", need)
    art = ctx.artifact_dir(release)
    b = ctx.binding("staging", ctx.app_component())
    extra = {"artifact": str(art), "port": "0"}
    env = {k: ctx.expand(v, release=release, **extra) for k, v in b.env.items()}
    try:
        records = run_upgrade_steps(
            release, db_url=ctx.staging_db.app_url(), artifact=art, spec_dir=ctx.spec_dir,
            expand=lambda a: ctx.expand(a, release=release, **extra), env=env,
            log_dir=ctx.run_dir / "logs", allow_outside=ctx.spec.paths.allow_outside)
    except UpgradeStepFailed as exc:
        raise StepFailed(f"building the schema: {exc.message} (log: logs/{exc.log.name})"
                         ) from None
    return [{k: r[k] for k in ("phase", "name", "kind", "seconds")} for r in records]


def _masked_refresh(ctx, prod_url: str, target, schema_steps: list) -> dict[str, int]:
    """Refresh the run's staging database with masked data; record coverage and leak scan."""
    from plantstage.data import refresh_database, refresh_state, resolve_key
    spec = ctx.spec.refresh
    key, key_source = resolve_key(spec.key, ctx.spec_dir)
    ctx.staging_db = target  # the migration's {db:…} placeholder names it

    def create_schema() -> None:
        schema_steps.extend(build_schema(ctx, ctx.current,
                                         "needed for refresh.schema: migrations"))

    def progress(table: str, done: int, total: int) -> None:
        if ctx.progress:
            ctx.progress(done / total if total else 1.0)

    result = refresh_database(prod_url, target, spec, key=key, key_source=key_source,
                              where=str(ctx.loaded.path), create_schema=create_schema,
                              progress=progress)
    ctx.sections["refresh"] = result.as_dict()
    ctx.signals_from(result.signals())
    state = refresh_state(target.app_url())
    if not result.ok or state != "complete":
        problems = []
        if result.leaks:
            where = ", ".join(f"{c}" + (f" at {result.leak_rows[c][0]}"
                                        if result.leak_rows.get(c) else "")
                              for c in sorted(result.leaks))
            problems.append(f"{sum(result.leaks.values())} production value(s) leaked into "
                            f"staging ({where})")
        if result.fk_violations:
            problems.append(f"{sum(result.fk_violations.values())} broken foreign key(s)")
        if result.count_mismatches:
            problems.append(f"{result.count_mismatches} table(s) with the wrong row count")
        raise StepFailed("staging data refresh failed verification: " + "; ".join(
            problems or [f"the target is marked '{state}'"]), {"refresh": result.signals()})
    return {t["table"]: t["written"] for t in result.tables}


class Provision(Step):
    """Staging database from production's data (read-only), and the current version running."""

    name = "provision"
    title = "Provision staging from production"
    setup = True

    def run(self, ctx):
        """Any failure here means staging could not be set up: the rehearsal could not run
        (exit 2), never NO-GO — the release under test has not touched staging yet."""
        try:
            return self._provision(ctx)
        except StepFailed as exc:
            raise SetupError(exc.reason, where="provision",
                             hint="staging could not be set up; the release was not tested"
                             ) from None
        except PlantstageError:
            raise
        except Exception as exc:
            if is_database_error(exc):
                raise SetupError(f"staging database: {database_error(exc)}",
                                 where="provision",
                                 hint="staging could not be set up; the release was not "
                                 "tested") from None
            (ctx.run_dir / "logs").mkdir(parents=True, exist_ok=True)
            (ctx.run_dir / "logs" / "plantstage-error.log").write_text(traceback.format_exc())
            raise SetupError(f"internal error: {type(exc).__name__}: {exc}", where="provision",
                             hint="see logs/plantstage-error.log in the run folder") from None

    def _provision(self, ctx):
        db = ctx.database_component()
        prod_b = ctx.binding("production", db)
        stage_b = ctx.binding("staging", db)
        if prod_b is None or not prod_b.url:
            raise SpecError(f"production binding of '{db}' has no url",
                            where=f"environments.production.bindings.{db}",
                            hint="give the production database URL (it is only read)")
        prod_url = ctx.resolve_url(prod_b.url)
        stage_url = ctx.staging_db_override or ctx.resolve_url(stage_b.url or
                                                               "sqlite:///{run_dir}/staging.sqlite")
        if engines.same_database(prod_url, stage_url):
            raise EngineError("staging resolves to the production database", where=stage_url,
                              hint="bind staging to another database")
        ctx.production_db_url = prod_url
        prod_engine = engines.connect_production(prod_url)
        source = engines.adapter_for(prod_url)
        engines.ping(prod_engine, source.label)
        target = engines.adapter_for(stage_url).for_run(ctx.run_id)
        if engines.same_database(prod_url, target.app_url()):
            raise EngineError("staging resolves to the production database", where=target.label,
                              hint="bind staging to another database")
        t0 = time.perf_counter()
        counts: dict[str, int] = {}
        schema_steps: list[dict] = []  # the current release's steps, when they build the schema
        if ctx.spec.refresh is not None:
            # The spec declares masking: staging gets production's data only through the
            # refresh (subset, masked in transit, verified) — never a raw clone.
            prod_engine.dispose()
            how = "masked refresh"
            counts = _masked_refresh(ctx, prod_url, target, schema_steps)
        else:
            target.create()
            ctx.staging_db = target
            how = "clone"
        if ctx.spec.refresh is None and not target.clone_from(source):
            # Different engines: the current release's migrations create the schema,
            # then rows are copied table by table.
            how = "migrations + row copy"
            schema_steps.extend(build_schema(ctx, ctx.current,
                                             "needed to create the schema on another engine"))
            stage_engine = target.engine()
            try:
                counts = engines.copy_rows(prod_engine, stage_engine)
            finally:
                stage_engine.dispose()
        prod_engine.dispose()
        copy_s = time.perf_counter() - t0
        stage_engine = target.engine()
        try:
            ctx.old_columns = engines.table_columns(stage_engine)
        finally:
            stage_engine.dispose()
        app_binding = ctx.binding("staging", ctx.app_component())
        router = Router(app_binding.port or free_port())
        router.start()
        ctx.router = router
        ctx.blue = start_version(ctx, ctx.current, "blue")
        router.switch(ctx.blue.port)
        return {"production": source.label, "staging": target.label, "method": how,
                "copy_seconds": round(copy_s, 2), "rows_copied": sum(counts.values()) or None,
                "tables": len(ctx.old_columns), "router": ctx.router.url,
                "current_version": ctx.blue.health.get("version"),
                **({"schema_steps": schema_steps} if schema_steps else {})}
