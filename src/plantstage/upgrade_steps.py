"""A release's ordered upgrade steps run on a database outside the rehearsal's migrate step:
building staging's schema from the current release (provisioning across engines, a refresh with
``schema: migrations``, parity's stand-in for a staging database that does not exist yet).

The steps run exactly as the migrate step runs them (``before``, ``upgrade``, ``after``; each
command in the release's folder with the app's staging environment, each SQL file statement by
statement on the database, each with its own timeout), so a release declared with
``steps.upgrade`` provisions the way the rehearsal migrates it. Unlike the migrate step they
record no signal: they build the *current* release's schema, which is not under test.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from plantstage.artifacts import confine
from plantstage.commands import run_command
from plantstage.errors import ArtifactError, PlantstageError, SpecError
from plantstage.spec.models import Release

#: The module that runs a SQL file (the database URL travels in its environment, not argv).
SQL_RUNNER = "plantstage.rehearsal.steps.sql_file"
SQL_URL_ENV = "PLANTSTAGE_SQL_URL"


class UpgradeStepFailed(PlantstageError):
    """One of the release's upgrade steps failed while a schema was being built."""

    def __init__(self, message: str, *, where: str, log: Path):
        super().__init__(message, where=where, hint=f"see its log: {log}")
        self.log = log


def has_upgrade(release: Release) -> bool:
    """True when the release declares something to build its schema with."""
    return any(release.release_steps("upgrade").values())


def require_upgrade(release: Release, where: str, need: str) -> None:
    """A SpecError naming the release when it declares no upgrade steps nor migration."""
    if not has_upgrade(release):
        raise SpecError(f"release {release.name} declares no upgrade steps nor migration",
                        where=f"{where}releases.{release.name}.steps.upgrade",
                        hint=f"declare steps.upgrade (or migrations.upgrade); {need}")


def sql_file(release: Release, raw: str, *, spec_dir: Path, artifact: Path,
             allow_outside: Iterable[str], expand: Callable[[str], str], where: str) -> Path:
    """The SQL file a step names: relative to the spec, or ``{artifact}/…`` in the release."""
    if raw.startswith("{artifact}"):
        rest = raw[len("{artifact}"):].lstrip("/\\")
        confine(spec_dir, raw, allow_outside=allow_outside, where=where, what="sql")
        path = (artifact / rest).resolve()
        if artifact.resolve() not in path.parents:
            raise ArtifactError(f"sql '{raw}' is outside the release's folder", where=where,
                                hint="name a file inside {artifact}")
    else:
        path = confine(spec_dir, expand(raw), allow_outside=allow_outside, where=where,
                       what="sql")
    if not path.is_file():
        raise ArtifactError(f"sql file '{raw}' not found ({path})", where=where,
                            hint="fix the path")
    return path


def run_upgrade_steps(release: Release, *, db_url: str, artifact: Path, spec_dir: Path,
                      expand: Callable[[str], str], env: dict[str, str], log_dir: Path,
                      allow_outside: Iterable[str] = (), prefix: str = "schema",
                      ) -> list[dict[str, Any]]:
    """Run ``release``'s upgrade steps in order on ``db_url``; their records (phase, name, kind,
    seconds, log). Each step logs to ``log_dir/PREFIX-PHASE-NAME.log``. The first failing step
    raises :class:`UpgradeStepFailed` with its exception line and its log."""
    records: list[dict[str, Any]] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    for phase, steps in release.release_steps("upgrade").items():
        for i, step in enumerate(steps):
            name = step.name or f"{phase}-{i + 1}"
            where = f"releases.{release.name}.steps.{phase}[{i}]"
            if step.sql is not None:
                path = sql_file(release, step.sql, spec_dir=spec_dir, artifact=artifact,
                                allow_outside=allow_outside, expand=expand, where=where)
                cmd = shown = [sys.executable, "-m", SQL_RUNNER, str(path)]
                step_env = {**env, SQL_URL_ENV: db_url}
                kind = "sql"
            else:
                cmd = [expand(a) for a in step.command or []]
                shown = list(step.command or [])  # as written: a filled {db:…} has a password
                step_env, kind = env, "command"
            log = log_dir / f"{prefix}-{phase}-{name}.log"
            t0 = time.perf_counter()
            code, reason = run_command(cmd, cwd=artifact, env=step_env, log_path=log,
                                       timeout=step.timeout, shown=shown)
            rec = {"phase": phase, "name": name, "kind": kind,
                   "seconds": round(time.perf_counter() - t0, 2), "log": str(log)}
            records.append(rec)
            if code != 0:
                how = "failed" if code == 124 else f"failed (exit {code})"  # 124: "timed out …"
                what = f"{phase} migration" if name == "migrations" else \
                    f"{phase} step '{name}'"
                raise UpgradeStepFailed(f"release {release.name}'s {what} {how}: {reason}",
                                        where=where, log=log)
    return records
