from __future__ import annotations

from plantstage.rehearsal.processes import run_command
from plantstage.rehearsal.steps import Step, StepFailed


def run_migration(ctx, release, command: list[str], what: str) -> str:
    """Run a release's migration command in its artifact, against the staging database."""
    art = str(ctx.artifact_dir(release))
    b = ctx.binding("staging", ctx.app_component())
    extra = {"artifact": art, "port": "0"}
    env = {k: ctx.expand(v, release=release, **extra) for k, v in b.env.items()}
    cmd = [ctx.expand(a, release=release, **extra) for a in command]
    log = ctx.run_dir / "logs" / "migrations.log"
    code, reason = run_command(cmd, cwd=art, env=env, log_path=log,
                               timeout=release.migrations.timeout)
    if code != 0:
        how = "failed" if code == 124 else f"failed (exit {code})"  # 124: "timed out after …"
        raise StepFailed(f"{what} migration of {release.name} {how}: {reason} "
                         f"(log: logs/{log.name})", {"command": " ".join(command),
                                                     "log": str(log), "reason": reason})
    return reason


class Migrate(Step):
    """Apply the release's schema migration, as production will get it."""

    name = "migrate"
    title = "Migrate the schema"

    def run(self, ctx):
        up = ctx.release.migrations.upgrade
        if not up:
            return {"skipped": "the release declares no migration"}
        out = run_migration(ctx, ctx.release, up, "upgrade")
        return {"command": " ".join(up), "output": out}
