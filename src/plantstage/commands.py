"""Commands plantstage runs once (migrations, release steps, probes) and local ports.

A leaf module: the rehearsal, parity and the twins all use it, and it imports nothing of
plantstage but its errors.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from plantstage.errors import ProcessError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


_NOISE = re.compile(r"^(\^+|~+|DETAIL:|HINT:|CONTEXT:|LINE \d+:|\[SQL:|\[parameters:|"
                    r"\(Background on this error|Traceback \(most recent call last\))")
_ERRORISH = re.compile(r"error|exception|fatal|failed|failure|violat|denied|does not exist|"
                       r"duplicate|cannot|could not|refused|timed out|abort", re.IGNORECASE)


def reason_line(output: str) -> str:
    """The line of a command's output that says why it failed: the last line naming an error
    (not a caret, a DETAIL line or a link), else the last meaningful line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not _NOISE.match(ln)]
    for ln in reversed(meaningful):
        if _ERRORISH.search(ln):
            return ln[:500]
    return meaningful[-1][:500] if meaningful else ""


#: A URL's password (``scheme://user:PASSWORD@host``); SQLAlchemy and libpq percent-encode an
#: ``@`` or ``/`` in it, so it ends at the first one.
_URL_PASSWORD = re.compile(r"(://[^\s:/@]*):[^\s@/]+@")


def hide_passwords(text: str) -> str:
    """``text`` with the password of every URL in it shown as ``***``. A command whose
    ``{db:…}`` placeholder was filled in carries the staging URL and its password: what is
    logged, raised or recorded of it goes through here."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def run_command(
    command: list[str], *, cwd: Path | None, env: dict[str, str], log_path: Path,
    timeout: float = 3600, shown: list[str] | None = None,
) -> tuple[int, str]:
    """Run a one-shot command (a migration), logging all of its output; return (code, reason).

    ``reason`` is :func:`reason_line` of its output. On a timeout the command's process group is
    killed, the output so far is still logged, and the code is 124. ``shown`` is the command
    as the log and errors show it (as written in the spec, placeholders unfilled); either way
    URL passwords are hidden in what is logged and returned (:func:`hide_passwords`).
    """
    as_shown = hide_passwords(" ".join(command if shown is None else shown))
    full_env = {**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    except (FileNotFoundError, PermissionError) as exc:
        raise ProcessError(f"cannot run: {exc}", where=as_shown[:120],
                           hint="check the command and that it is executable") from None
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    stdout, stderr = hide_passwords(_text(out)), hide_passwords(_text(err))
    code = 124 if timed_out else proc.returncode
    seconds = time.monotonic() - t0
    with log_path.open("a") as f:
        f.write(f"$ {as_shown}\n{stdout}{stderr}\n")
        f.write(f"[timed out after {timeout:.0f} s]\n" if timed_out
                else f"[exit {code} after {seconds:.1f} s]\n")
    if timed_out:
        why = reason_line(stderr + "\n" + stdout)
        return code, f"timed out after {timeout:.0f} s" + (f"; last: {why}" if why else "")
    return code, reason_line(stderr) or reason_line(stdout)
