"""Release artifacts: a file or a directory, identified by a SHA-256 digest.

A directory's digest is taken over its sorted relative paths and file contents, so the same tree
gives the same digest on any machine. Byte-code caches are ignored: they are written by running
the code, not shipped with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from plantstage.errors import ArtifactError

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo"}


def _iter_files(root: Path):
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part in _IGNORED_DIRS for part in rel.parts):
            continue
        if p.is_file() and p.suffix not in _IGNORED_SUFFIXES:
            yield rel, p


def digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a directory tree (paths and contents)."""
    p = Path(path)
    if not p.exists():
        raise ArtifactError("artifact not found", where=str(p), hint="check artifact.path")
    h = hashlib.sha256()
    if p.is_file():
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for rel, file in _iter_files(p):
        h.update(rel.as_posix().encode() + b"\0")
        fh = hashlib.sha256(file.read_bytes()).hexdigest()
        h.update(fh.encode() + b"\n")
    return h.hexdigest()


def verify(path: str | Path, expected: str, *, where: str) -> str:
    """Return the digest, or refuse the artifact when it does not match ``expected``."""
    actual = digest(path)
    if actual != expected:
        raise ArtifactError(
            f"artifact digest mismatch: {path} is {actual}, the spec approved {expected}",
            where=where,
            hint="the artifact changed since it was approved; rebuild or update sha256 "
            "(`plantstage digest PATH` prints it)",
        )
    return actual
