"""What the refresh verb runs outside the databases: placeholders in the spec's commands
and URLs, and the current release's upgrade steps (``schema: migrations``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from plantstage.data._mask import (
    RefreshError,
)
from plantstage.errors import SpecError
from plantstage.spec.models import Release
from plantstage.upgrade_steps import UpgradeStepFailed, run_upgrade_steps

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")


def expand(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        k = m.group(1) if not m.group(2) else f"{m.group(1)}:{m.group(2)}"
        if k not in values:
            raise SpecError(f"unknown placeholder '{{{k}}}'", where=text,
                            hint="known here: " + ", ".join(sorted(values)))
        return values[k]

    return _PLACEHOLDER.sub(repl, text)


def run_upgrade(release: Release, *, db_url: str, artifact: Path, spec_dir: Path,
                values: dict[str, str], env: dict[str, str], log_dir: Path,
                allow_outside: list[str]) -> None:
    """Build the schema with ``release``'s ordered upgrade steps (before, upgrade, after, or the
    ``migrations.upgrade`` shorthand), as a rehearsal migrates it; logs in ``log_dir``."""
    try:
        run_upgrade_steps(release, db_url=db_url, artifact=artifact, spec_dir=spec_dir,
                          expand=lambda a: expand(a, values), env=env, log_dir=log_dir,
                          allow_outside=allow_outside, prefix="refresh-schema")
    except UpgradeStepFailed as exc:
        raise RefreshError(exc.message, where=exc.where, hint=exc.hint) from None


def python() -> str:
    return sys.executable
