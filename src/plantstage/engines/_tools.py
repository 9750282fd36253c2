"""Running the engines' own client tools (pg_dump, pg_restore, mariadb-dump, mariadb): a
timeout, and passwords handed over in a private file."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The longest a client tool may run (a dump or a restore) before it is stopped and the step
#: fails in one line: generous, since a large staging database takes a while, but a hung
#: tool (a lock it waits for, a server that stopped answering) never holds a rehearsal forever.
TOOL_TIMEOUT_S = 2 * 3600.0


def run_tool(cmd: list[str], *, timeout: float | None = None,
             **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, **kwargs)`` with a timeout (default
    :data:`TOOL_TIMEOUT_S`). A tool that runs out of time is killed and comes back as exit 124
    with ``error: … timed out after N s`` as its stderr, so callers report it like any failure."""
    limit = TOOL_TIMEOUT_S if timeout is None else timeout
    try:
        return subprocess.run(cmd, capture_output=True, timeout=limit, **kwargs)
    except subprocess.TimeoutExpired:
        msg = f"error: {cmd[0].rsplit('/', 1)[-1]} timed out after {limit:g} s"
        text = kwargs.get("text") or kwargs.get("encoding") or kwargs.get("universal_newlines")
        return subprocess.CompletedProcess(cmd, 124, "" if text else b"",
                                           msg if text else msg.encode())


@contextmanager
def secret_file(text: str, prefix: str) -> Iterator[Path]:
    """A temporary file only this user can read (0600, made so by ``mkstemp``) holding
    ``text``, deleted when the block ends: how a password reaches a client tool without an
    environment variable (readable in ``/proc/<pid>/environ`` by the same user, and inherited
    by whatever the tool starts) or a command line (visible to everyone in ``ps``)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".cnf")
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        yield path
    finally:
        path.unlink(missing_ok=True)
