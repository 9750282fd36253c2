"""What the refresh verb runs outside the databases: placeholders in the spec's commands
and URLs, and the current release's schema migration (``schema: migrations``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from plantstage.data._mask import (
    RefreshError,
)
from plantstage.errors import SpecError

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")


def expand(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        k = m.group(1) if not m.group(2) else f"{m.group(1)}:{m.group(2)}"
        if k not in values:
            raise SpecError(f"unknown placeholder '{{{k}}}'", where=text,
                            hint="known here: " + ", ".join(sorted(values)))
        return values[k]

    return _PLACEHOLDER.sub(repl, text)


def run_upgrade(command: list[str], cwd: Path, env: dict[str, str], where: str) -> None:
    proc = subprocess.run(command, cwd=cwd, env={**os.environ, **env}, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RefreshError(f"the schema migration failed (exit {proc.returncode}): {last[0]}",
                           where=where)


def python() -> str:
    return sys.executable
