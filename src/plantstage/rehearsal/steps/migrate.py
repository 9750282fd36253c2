"""The release's ordered steps (before, upgrade, after — and the rollback's before, downgrade,
after): commands run in the release's folder, or SQL files run on staging. Each is timed,
logged to its own file under ``logs/``, and listed in the report's "Release steps" section
with its log's tail and its exception line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from plantstage.artifacts import confine
from plantstage.errors import ArtifactError
from plantstage.rehearsal.processes import run_command
from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.spec.models import Release, ReleaseStep

TAIL_LINES = 30


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _sql_path(ctx, release: Release, raw: str, where: str) -> Path:
    """The SQL file a step names: relative to the spec, or {artifact}/… inside the release."""
    allow = list(ctx.spec.paths.allow_outside)
    try:
        if raw.startswith("{artifact}"):
            rest = raw[len("{artifact}"):].lstrip("/\\")
            confine(ctx.spec_dir, raw, allow_outside=allow, where=where, what="sql")
            path = (ctx.artifact_dir(release) / rest).resolve()
            if ctx.artifact_dir(release) not in path.parents:
                raise ArtifactError(f"sql '{raw}' is outside the release's folder", where=where,
                                    hint="name a file inside {artifact}")
        else:
            path = confine(ctx.spec_dir, ctx.expand(raw, release=release), allow_outside=allow,
                           where=where, what="sql")
    except ArtifactError as exc:
        raise StepFailed(exc.one_line()) from None
    if not path.is_file():
        raise StepFailed(f"{where}: sql file '{raw}' not found ({path})")
    return path


def check_sql_files(ctx, release: Release) -> None:
    """Every SQL file the release's upgrade and rollback steps name exists where it may be."""
    for group, label in (("upgrade", "steps"), ("rollback", "rollback")):
        for phase, steps in release.release_steps(group).items():  # type: ignore[arg-type]
            for i, st in enumerate(steps):
                if st.sql is not None:
                    _sql_path(ctx, release, st.sql, f"releases.{release.name}.{label}."
                                                    f"{phase}[{i}]")


def run_release_step(ctx, release: Release, step: ReleaseStep, group: str, phase: str,
                     index: int) -> dict[str, Any]:
    """Run one release step; its record (status passed or failed, seconds, log, tail, reason)."""
    name = step.name or f"{phase}-{index + 1}"
    where = f"releases.{release.name}.{'steps' if group == 'upgrade' else 'rollback'}." \
            f"{phase}[{index}]"
    log = ctx.run_dir / "logs" / f"{group}-{phase}-{name}.log"
    art = ctx.artifact_dir(release)
    b = ctx.binding("staging", ctx.app_component())
    extra = {"artifact": str(art), "port": "0"}
    env = {k: ctx.expand(v, release=release, **extra) for k, v in b.env.items()}
    if step.sql is not None:
        path = _sql_path(ctx, release, step.sql, where)
        if ctx.staging_db is None:
            raise StepFailed(f"{where}: no staging database to run {step.sql} on")
        env["PLANTSTAGE_SQL_URL"] = ctx.staging_db.app_url()
        cmd = [sys.executable, "-m", "plantstage.rehearsal.steps.sql_file", str(path)]
        kind, target = "sql", step.sql
    else:
        cmd = [ctx.expand(a, release=release, **extra) for a in step.command or []]
        kind, target = "command", " ".join(step.command or [])
    t0 = time.perf_counter()
    code, reason = run_command(cmd, cwd=art, env=env, log_path=log, timeout=step.timeout,
                               shown=step.command if step.sql is None else None)
    seconds = time.perf_counter() - t0
    rec: dict[str, Any] = {
        "release": release.name, "group": group, "phase": phase, "name": name, "kind": kind,
        "target": target, "status": "passed" if code == 0 else "failed",
        "seconds": round(seconds, 2), "timeout": step.timeout, "exit": code,
        "timed_out": code == 124, "log": f"logs/{log.name}", "reason": reason if code else "",
        "output": "" if code else reason,
        "tail": _tail(log)}
    ctx.signal(f"steps.{group}.{phase}.{name}.seconds", seconds)
    return rec


def _record(ctx, rec: dict[str, Any]) -> None:
    ctx.sections.setdefault("release_steps", {"steps": []})["steps"].append(rec)


def run_release_steps(ctx, release: Release, group: str,
                      phases: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Run the release's ``group`` ("upgrade" or "rollback") steps, phase by phase, in order
    (only ``phases`` when given). The first failing step stops them: StepFailed, with its
    exception line as the reason."""
    records: list[dict[str, Any]] = []
    for phase, steps in release.release_steps(group).items():  # type: ignore[arg-type]
        if phases is not None and phase not in phases:
            continue
        for i, st in enumerate(steps):
            rec = run_release_step(ctx, release, st, group, phase, i)
            records.append(rec)
            _record(ctx, rec)
            if rec["status"] == "failed":
                how = "failed" if rec["timed_out"] else f"failed (exit {rec['exit']})"
                label = f"{phase} step '{rec['name']}'" if rec["name"] != "migrations" \
                    else f"{phase} migration"
                raise StepFailed(f"{group} of {release.name}: {label} {how}: {rec['reason']} "
                                 f"(log: {rec['log']})", {"steps": records})
    return records


def _row_counts(engine, tables: list[str] | None) -> dict[str, int]:
    """Rows per table (``tables``, else every table but a migration tool's own), read only."""
    import sqlalchemy as sa

    from plantstage.engines import table_columns

    names = tables if tables is not None else list(table_columns(engine))
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for t in names:
            tbl = sa.table(t)
            out[t] = int(conn.execute(sa.select(sa.func.count()).select_from(tbl)).scalar()
                         or 0)
    return out


def staging_rows(ctx, tables: list[str] | None) -> dict[str, int]:
    """The rows the upgrade runs on: staging's tables as the migrate step starts."""
    engine = ctx.staging_db.engine()
    try:
        return _row_counts(engine, tables)
    finally:
        engine.dispose()


def production_rows(ctx, tables: list[str]) -> tuple[dict[str, int], str]:
    """Production's rows of ``tables``: the refresh's own count of each source table when the
    staging data came from a refresh, else counted on production (read-only)."""
    refreshed = {t["table"]: int(t["source"]) for t in
                 ((ctx.sections.get("refresh") or {}).get("tables") or [])
                 if t.get("source") is not None}
    if refreshed and all(t in refreshed for t in tables):
        return {t: refreshed[t] for t in tables}, "the refresh's source counts"
    from plantstage import engines

    engine = engines.connect_production(ctx.production_db_url)
    try:
        return _row_counts(engine, tables), "counted on production (read-only)"
    finally:
        engine.dispose()


def project_duration(seconds: float, staging: dict[str, int],
                     production: dict[str, int]) -> dict[str, Any]:
    """Scale a measured upgrade to production: ``seconds × production rows / staging rows``
    over the same tables, never below what was measured (a linear model; docs/strategies.md).
    ``projected_seconds`` is None when staging held none of those rows."""
    s_rows, p_rows = sum(staging.values()), sum(production.values())
    scale = None if s_rows == 0 else p_rows / s_rows
    projected = None if scale is None else seconds * max(1.0, scale)
    return {"seconds": round(seconds, 2), "staging_rows": s_rows, "production_rows": p_rows,
            "scale": None if scale is None else round(scale, 4),
            "projected_seconds": None if projected is None else round(projected, 2),
            "tables": len(staging)}


class Migrate(Step):
    """Run the release's upgrade as production will get it: its ``before`` steps, the schema
    migration, its ``after`` steps. Before/after reconcile checks snapshot the data first and
    compare it once the upgrade is done (``when: after-migrate``).

    Under ``strategy: recreate`` the old version (its consumers too) is stopped first, with a
    prober measuring the downtime through the router until the switch. The upgrade's duration
    is projected to production's row counts (``migrate.projected_seconds``)."""

    name = "migrate"
    title = "Migrate the schema"

    def run(self, ctx):
        from plantstage.rehearsal.steps.deploy import recreating, stop_old_version
        from plantstage.rehearsal.steps.reconcile import run_point, snapshot_before

        rel = ctx.release
        plan = rel.release_steps("upgrade")
        check_sql_files(ctx, rel)  # a missing file fails before anything changed
        stopped = stop_old_version(ctx) if recreating(ctx) else None
        before = snapshot_before(ctx)
        if not any(plan.values()):
            out: dict[str, Any] = {"skipped": "the release declares no migration or steps"}
        else:
            scope = list(rel.migration_tables) or None
            rows, rows_why = None, "no staging database"
            if ctx.staging_db is not None:
                try:
                    rows = staging_rows(ctx, scope)
                except Exception as exc:  # noqa: BLE001 - e.g. a migration_tables typo
                    rows_why = f"staging's row counts could not be read: " \
                               f"{str(exc).splitlines()[0][:160]}"
            t0 = time.perf_counter()
            try:
                records = run_release_steps(ctx, rel, "upgrade")
            except StepFailed as exc:
                if stopped:
                    exc.results["recreate"] = stopped
                raise
            seconds = time.perf_counter() - t0
            ctx.signal("steps.upgrade.seconds", seconds)
            ctx.signal("migrate.seconds", seconds)
            out = {"seconds": round(seconds, 2),
                   "steps": [{k: r[k] for k in ("phase", "name", "kind", "target", "status",
                                                "seconds", "log")} for r in records]}
            if rel.steps.upgrade is None and rel.migrations.upgrade:
                out["command"] = " ".join(rel.migrations.upgrade)
            main = [r for r in records if r["phase"] == "upgrade"]
            if main:
                out["output"] = main[-1]["output"]  # its last meaningful line
            out["projection"] = self._project(ctx, seconds, rows) if rows is not None \
                else {"seconds": round(seconds, 2), "projected_seconds": None, "why": rows_why}
        if stopped:
            out["recreate"] = stopped
        if before:
            out["before_after"] = before
        found = run_point(ctx, "after-migrate")
        if found:
            out["reconcile"] = found
        return out

    @staticmethod
    def _project(ctx, seconds: float, rows: dict[str, int]) -> dict[str, Any]:
        """The upgrade's duration scaled to production; never fails the step (a projection
        that cannot be made leaves its signal out, and a gate on it is inconclusive)."""
        try:
            prod, source = production_rows(ctx, list(rows))
        except Exception as exc:  # noqa: BLE001 - e.g. production refuses a COUNT
            return {"seconds": round(seconds, 2), "projected_seconds": None,
                    "why": f"production's row counts could not be read: "
                           f"{str(exc).splitlines()[0][:160]}"}
        proj = project_duration(seconds, rows, prod)
        proj["production_rows_from"] = source
        values = {"migrate.rows_staging": proj["staging_rows"],
                  "migrate.rows_production": proj["production_rows"]}
        if proj["projected_seconds"] is not None:
            scale = proj["production_rows"] / proj["staging_rows"]  # unrounded, as measured
            values.update({"migrate.scale": scale,
                           "migrate.projected_seconds": seconds * max(1.0, scale)})
        else:
            proj["why"] = "staging held no rows of these tables: nothing to scale from"
        ctx.signals_from(values)
        return proj
