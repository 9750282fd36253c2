from __future__ import annotations

import time

from plantstage import engines
from plantstage.errors import EngineError, SpecError
from plantstage.rehearsal.processes import ManagedProcess, free_port
from plantstage.rehearsal.router import Router
from plantstage.rehearsal.steps import Step


def start_version(ctx, release, color: str) -> ManagedProcess:
    """Start one app version as a real process on a free port and wait until it is healthy."""
    comp = ctx.app_component()
    b = ctx.binding("staging", comp)
    port = free_port()
    art = str(ctx.artifact_dir(release))
    extra = {"port": str(port), "artifact": art}
    proc = ManagedProcess(
        f"{comp}@{release.version} ({color})",
        [ctx.expand(a, **extra) for a in b.command],
        cwd=ctx.expand(b.cwd, **extra) if b.cwd else art,
        env={k: ctx.expand(v, **extra) for k, v in b.env.items()},
        port=port, health_path=b.health, log_path=ctx.run_dir / "logs" / f"{color}.log",
    )
    proc.start()
    health = proc.wait_healthy(b.startup_timeout)
    proc.health = health
    return proc


class Provision(Step):
    """Staging database from production's data (read-only), and the current version running."""

    name = "provision"
    title = "Provision staging from production"
    setup = True

    def run(self, ctx):
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
        target.create()
        ctx.staging_db = target
        how = "clone"
        counts: dict[str, int] = {}
        if not target.clone_from(source):
            # Different engines: the current release's migrations create the schema,
            # then rows are copied table by table.
            how = "migrations + row copy"
            up = ctx.current.migrations.upgrade
            if not up:
                raise SpecError("the current release declares no upgrade migration",
                                where=f"releases.{ctx.current.name}.migrations.upgrade",
                                hint="needed to create the schema on another engine")
            from plantstage.rehearsal.steps.migrate import run_migration

            run_migration(ctx, ctx.current, up, "schema")
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
        router = Router(free_port())
        router.start()
        ctx.router = router
        ctx.blue = start_version(ctx, ctx.current, "blue")
        router.switch(ctx.blue.port)
        return {"production": source.label, "staging": target.label, "method": how,
                "copy_seconds": round(copy_s, 2), "rows_copied": sum(counts.values()) or None,
                "tables": len(ctx.old_columns), "router": ctx.router.url,
                "current_version": ctx.blue.health.get("version")}
