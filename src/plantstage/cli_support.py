"""What every CLI module shares: the consoles, one-line error rendering, and parameter checks.

Feature CLI modules (``plantstage/<feature>/cli.py``) import this module, never
:mod:`plantstage.cli`; ``plantstage.cli`` builds the app and registers their commands.

The parameter checks are Typer/click callbacks: they raise :class:`typer.BadParameter`, which
the entry point prints as one line naming the option, with a hint, and exit code 2.
"""

from __future__ import annotations

import math
import os
import stat
import sys
from pathlib import Path
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.text import Text

from plantstage.errors import PlantstageError


def _width(stream) -> int | None:
    """Rich's width: the terminal's; piped (CI logs, tee) COLUMNS or 200, not Rich's 80, so
    paths and table cells are not cut or wrapped mid-word in a log."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):
        pass
    try:
        return max(40, int(os.environ.get("COLUMNS", "200")))
    except ValueError:
        return 200


console = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))

#: Longest path, and longest single path component, a command accepts (Linux limits).
MAX_PATH = 4096
MAX_NAME = 255
#: Where an output folder or file may never go.
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr, on one line."""
    err.print(Text(f"error: {message}", style="red"), soft_wrap=True, highlight=False)


def fail(exc: PlantstageError) -> None:
    """Print a plantstage error as one line and exit with its code."""
    print_error(exc.one_line())
    raise typer.Exit(exc.exit_code)


def _bad(message: str, hint: str) -> typer.BadParameter:
    return typer.BadParameter(f"{message} (hint: {hint})")


def _check_length(value: str | Path) -> None:
    text = str(value)
    if "\0" in text:
        raise _bad("the path holds a NUL character", "pass a path without control characters")
    if len(os.fsencode(text)) > MAX_PATH:
        raise _bad(f"the path is {len(text):,} characters long",
                   f"paths may be at most {MAX_PATH} bytes")
    for part in Path(text).parts:
        if len(os.fsencode(part)) > MAX_NAME:
            raise _bad(f"a path component is {len(part):,} characters long",
                       f"each name in a path may be at most {MAX_NAME} bytes")


def path_param(value: Path | None) -> Path | None:
    """An input path: sane length, no NUL, not a pipe or device (reading those can block);
    existence is the verb's business."""
    if value is not None:
        _check_length(value)
        try:
            mode = value.stat().st_mode
        except (OSError, ValueError):
            return value
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise _bad(f"{value} is a pipe, socket or device", "pass a file or a folder")
    return value


def _writable_target(value: Path, what: str) -> None:
    _check_length(value)
    absolute = Path(os.path.abspath(value))
    for root in _SYSTEM_ROOTS:
        if absolute == Path(root) or Path(root) in absolute.parents:
            raise _bad(f"{absolute} is inside {root}", f"choose a {what} on a normal file system")
    probe = absolute
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != absolute and not probe.is_dir():
        raise _bad(f"{probe} is not a folder", f"choose a {what} under an existing folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _bad(f"{probe} is not writable", f"choose a {what} you may write to")


def out_dir_param(value: Path | None) -> Path | None:
    """An output folder: not under /proc, /sys or /dev; an existing one is a folder; writable."""
    if value is None:
        return None
    if value.exists() and not value.is_dir():
        raise _bad(f"{value} is a file, not a folder", "choose a folder for the output")
    _writable_target(value, "folder")
    return value


def out_file_param(value: Path | None) -> Path | None:
    """An output file: its folder exists or can be made, and may be written."""
    if value is None:
        return None
    if value.is_dir():
        raise _bad(f"{value} is a folder", "name a file to write")
    _writable_target(value, "file")
    return value


def pem_file_param(value: Path | None) -> Path | None:
    """A PEM public key file (read lightly here; the verb parses it)."""
    if value is None:
        return None
    _check_length(value)
    if not value.is_file():
        raise _bad(f"{value} is not a file", "pass the signer's public key (PEM)")
    try:
        with value.open("rb") as f:
            head = f.read(64 * 1024)
    except OSError as exc:
        raise _bad(f"cannot read {value}: {exc.strerror}", "check its permissions") from None
    if b"-----BEGIN " not in head:
        raise _bad(f"{value} is not a PEM key",
                   "pass the .pem public key file printed by `plantstage keys`")
    return value


def seconds_param(value: float | None) -> float | None:
    """A finite, positive number of seconds."""
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise _bad(f"{value} is not a positive, finite number of seconds", "e.g. 30 or 2.5")
    return value


def positive_param(value: float | None) -> float | None:
    """A finite, positive number (a rate)."""
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise _bad(f"{value} is not a positive, finite number", "e.g. 10 or 0.5")
    return value


def _url(value: str, schemes: tuple[str, ...], example: str) -> str:
    if not value.strip():
        raise _bad("the URL is empty", f"e.g. {example}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise _bad(f"'{value[:80]}' is not a valid URL: {exc}", f"e.g. {example}") from None
    if parts.scheme.lower() not in schemes:
        raise _bad(f"'{value[:80]}' does not start with {' or '.join(s + '://' for s in schemes)}",
                   f"e.g. {example}")
    if not parts.hostname:
        raise _bad(f"'{value[:80]}' names no host", f"e.g. {example}")
    if port == 0:
        raise _bad(f"'{value[:80]}' has port 0", f"e.g. {example}")
    return value


def mqtt_url_param(value: str | None) -> str | None:
    if value is None:
        return None
    return _url(value, ("mqtt", "mqtts", "tcp"), "mqtt://127.0.0.1:1883")


def http_url_param(value: str | None) -> str | None:
    if value is None:
        return None
    return _url(value, ("http", "https"), "http://127.0.0.1:8000")


def source_url_param(value: str) -> str:
    """``record``'s source: an MQTT broker or an HTTP server."""
    return _url(value, ("mqtt", "mqtts", "tcp", "http", "https"), "mqtt://127.0.0.1:1883")


def db_url_param(value: str | None) -> str | None:
    """A database URL; an empty one is refused, not ignored."""
    if value is None:
        return None
    if not value.strip():
        raise _bad("the database URL is empty",
                   "e.g. postgresql://127.0.0.1:5432/postgres, or leave the option out")
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise _bad(f"'{value[:80]}' is not a valid URL: {exc}",
                   "e.g. postgresql://127.0.0.1:5432/postgres") from None
    if not parts.scheme or "://" not in value:
        raise _bad(f"'{value[:80]}' is not a database URL",
                   "e.g. postgresql://127.0.0.1:5432/postgres or sqlite:///path.db")
    return value


def env_or_url_param(value: str) -> str:
    """An environment of the spec (a name) or a database URL; a file path is neither."""
    if "://" in value:
        return db_url_param(value) or value
    if not value.strip():
        raise _bad("the value is empty", "an environment (production, staging) or a URL")
    if os.sep in value or "." in value or len(value) > 100:
        raise _bad(f"'{value[:80]}' is neither an environment nor a database URL",
                   "an environment of the spec (production, staging), or a URL such as "
                   f"sqlite:///{value[:80]} or postgresql://127.0.0.1:5432/db")
    return value


def name_param(value: str | None) -> str | None:
    """A non-empty name (release, role, environment …)."""
    if value is None:
        return None
    if not value.strip():
        raise _bad("the value is empty", "give a name")
    if len(value) > 1000 or any(ord(c) < 32 for c in value):
        raise _bad("the value is too long or holds control characters", "give a plain name")
    return value
