"""The masking key: where it is (an environment variable, a file), never what it is."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from plantstage.data._mask import (
    RefreshError,
)
from plantstage.spec.masking import KeyRef


def resolve_key(ref: KeyRef, spec_dir: Path) -> tuple[bytes, str]:
    """The key and a description of where it came from (never the key itself)."""
    if ref.env and os.environ.get(ref.env):
        return os.environ[ref.env].strip().encode(), f"environment variable {ref.env}"
    if ref.file:
        p = (spec_dir / ref.file).resolve()
        if p.exists():
            text = p.read_text().strip()
            if text:
                return text.encode(), f"file {p}"
        if ref.create:
            p.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_hex(32)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
            return key.encode(), (f"file {p} (generated now: a new key for this checkout; keep "
                                  "it out of version control)")
    sources = " or ".join(x for x in (ref.env and f"${ref.env}", ref.file) if x)
    raise RefreshError("no masking key", where="refresh.key",
                       hint=f"put a key (e.g. `openssl rand -hex 32`) in {sources}")
