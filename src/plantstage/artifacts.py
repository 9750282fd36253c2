"""Release artifacts: a file or a directory, identified by a SHA-256 digest.

A directory's digest is taken over its sorted relative paths and file contents, so the same tree
gives the same digest on any machine. Byte-code caches are ignored: they are written by running
the code, not shipped with it.

The walk is bounded (:data:`MAX_FILES`, :data:`MAX_BYTES`) and stays inside the tree: a
symbolic link that leads outside it is refused, and so is anything that is neither a regular
file nor a folder (a device, a pipe). Paths a spec names are confined to the spec's folder
(:func:`confine`) unless the spec allows an outside folder (``paths.allow_outside``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from plantstage.errors import ArtifactError

_IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo"}

#: Most files in one artifact tree.
MAX_FILES = 50_000
#: Most bytes in one artifact (file or tree).
MAX_BYTES = 4 << 30

_PLACEHOLDER_PREFIXES = ("{artifact}", "{spec_dir}")
#: Kernel and device trees: reading them can block or never end.
_SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def confine(base_dir: Path, raw: str, *, allow_outside: Iterable[str] = (), where: str,
            what: str = "artifact.path") -> Path:
    """Resolve ``raw`` (relative to ``base_dir``) and refuse it outside the allowed folders.

    The allowed folders are ``base_dir`` and every ``paths.allow_outside`` entry. Symbolic links
    are followed before the check, so a link cannot lead out either.
    """
    base = Path(os.path.abspath(base_dir))
    text = str(raw)
    if "\0" in text:
        raise ArtifactError(f"{what} holds a NUL character", where=where,
                            hint="write a plain path")
    for prefix in _PLACEHOLDER_PREFIXES:
        if text.startswith(prefix):
            # The placeholder names a confined folder: only its remainder must not climb out.
            rest = text[len(prefix):].lstrip("/\\")
            if os.path.normpath(rest or ".").split(os.sep)[0] == "..":
                raise ArtifactError(f"{what} '{text[:200]}' climbs out of {prefix}", where=where,
                                    hint=f"name a file inside {prefix}")
            return base / text
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise ArtifactError(f"{what} '{text[:200]}' cannot be resolved: {exc}", where=where,
                            hint="check the path") from None
    roots = [base.resolve()]
    for extra in allow_outside:
        roots.append((base / extra).resolve())
    if any(_inside(resolved, r) for r in roots):
        return resolved
    if Path(text).is_absolute():
        hint = (f"absolute paths outside the spec's folder are refused; copy the file beside "
                f"the spec, or allow its folder: paths: {{allow_outside: [{resolved.parent}]}}")
    else:
        hint = ("keep it inside the spec's folder, or allow the folder it is in: "
                f"paths: {{allow_outside: [{resolved.parent}]}}")
    raise ArtifactError(f"{what} '{text[:200]}' is outside the spec's folder ({resolved})",
                        where=where, hint=hint)


def _iter_files(root: Path, *, max_files: int, max_bytes: int) -> Iterator[tuple[Path, Path]]:
    """(relative path, file) of every file in the tree, in a stable order, within the bounds."""
    real_root = root.resolve()
    found: list[tuple[tuple[str, ...], Path]] = []
    total = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        rel_here = here.relative_to(root)
        dirs[:] = [d for d in dirs if d not in _IGNORED_DIRS]
        for d in list(dirs):
            if (here / d).is_symlink():
                dirs.remove(d)
                target = (here / d).resolve()
                if not _inside(target, real_root):
                    raise ArtifactError(
                        f"{rel_here / d} is a link to {target}, outside the artifact",
                        where=str(root), hint="ship the files themselves, not links out")
        for name in files:
            p = here / name
            if p.suffix in _IGNORED_SUFFIXES:
                continue
            try:
                st = p.stat()
            except OSError:  # a dangling link
                continue
            if p.is_symlink() and not _inside(p.resolve(), real_root):
                raise ArtifactError(f"{rel_here / name} is a link to {p.resolve()}, outside "
                                    "the artifact", where=str(root),
                                    hint="ship the files themselves, not links out")
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            found.append(((rel_here / name).parts, p))
            if len(found) > max_files:
                raise ArtifactError(f"the artifact holds more than {max_files:,} files",
                                    where=str(root),
                                    hint="point artifact.path at the release's own folder")
            if total > max_bytes:
                raise ArtifactError(f"the artifact is larger than {max_bytes:,} bytes",
                                    where=str(root),
                                    hint="point artifact.path at the release's own folder")
    found.sort(key=lambda item: item[0])
    for parts, p in found:
        yield Path(*parts), p


def _file_digest(path: Path, h: hashlib._Hash | None = None) -> hashlib._Hash:
    h = h or hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def digest(path: str | Path, *, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> str:
    """SHA-256 of a file, or of a directory tree (paths and contents), within the bounds."""
    p = Path(path)
    try:
        real = p.resolve()
    except (OSError, RuntimeError, ValueError):
        real = p
    for system in _SYSTEM_ROOTS:
        if _inside(real, system):
            raise ArtifactError(f"{real} is inside {system}, not a release", where=str(p)[:300],
                                hint="point artifact.path at the release's file or folder")
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ArtifactError("artifact not found", where=str(p)[:300],
                            hint="check artifact.path") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read the artifact: {getattr(exc, 'strerror', None) or exc}",
                            where=str(p)[:300], hint="check artifact.path") from None
    try:
        if stat.S_ISREG(st.st_mode):
            if st.st_size > max_bytes:
                raise ArtifactError(f"the artifact is larger than {max_bytes:,} bytes",
                                    where=str(p), hint="check artifact.path")
            return _file_digest(p).hexdigest()
        if not stat.S_ISDIR(st.st_mode):
            raise ArtifactError("the artifact is neither a file nor a folder", where=str(p),
                                hint="point artifact.path at the release's file or folder")
        h = hashlib.sha256()
        for rel, file in _iter_files(p, max_files=max_files, max_bytes=max_bytes):
            h.update(rel.as_posix().encode() + b"\0")
            h.update(_file_digest(file).hexdigest().encode() + b"\n")
        return h.hexdigest()
    except OSError as exc:
        raise ArtifactError(f"cannot read the artifact: {exc.strerror or exc}",
                            where=str(exc.filename or p), hint="check its permissions") from None


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
