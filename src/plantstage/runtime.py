"""Release runtimes: the environment each release's processes run in.

A release may declare ``runtime:`` in the spec:

- ``{requirements: FILE}`` — a virtual environment built once with the machine's Python
  (``python:`` if given, else the interpreter running plantstage) and pip, cached by the
  artifact's digest and the requirements file's digest under ``.plantstage/runtimes/`` next to
  the spec (or ``$PLANTSTAGE_CACHE/runtimes/``); a requirements file that names only index
  packages (no ``-e .``, ``-r``, path or ``file:``) is keyed without the artifact, so releases
  with the same requirements share one venv. ``{python}`` then means that venv's
  interpreter. Concurrent builds of the same runtime are serialised by a file lock, and a
  build is marked finished only when pip succeeded, so a half build is never used.
- ``{python: PATH}`` — that interpreter is ``{python}``.
- ``{command: [...]}`` — the release's own launcher starts it instead of the binding's command.

Without a runtime, ``{python}`` is plantstage's own interpreter.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plantstage import artifacts
from plantstage.errors import PlantstageError
from plantstage.spec.models import Release, ReleaseRuntime

#: Bumped when the layout of a cached runtime changes, so old caches are not reused.
_LAYOUT = "1"


class RuntimeBuildError(PlantstageError):
    """A release's runtime could not be built (pip failed, no interpreter …)."""


@dataclass(frozen=True)
class Runtime:
    """What a release runs with: its interpreter and, optionally, its own launcher."""

    python: str
    command: list[str] | None = None
    venv: Path | None = None
    cached: bool = False  # True when an existing build was reused
    seconds: float = 0.0  # time spent building (or finding) it

    def describe(self) -> str:
        if self.venv is not None:
            how = "cached" if self.cached else f"built in {self.seconds:.1f} s"
            return f"venv {self.venv} ({how})"
        if self.command is not None:
            return "the release's own launcher: " + " ".join(self.command)
        return f"python {self.python}"


def cache_root(spec_dir: Path) -> Path:
    """``$PLANTSTAGE_CACHE/runtimes``, else ``.plantstage/runtimes`` next to the spec."""
    env = os.environ.get("PLANTSTAGE_CACHE")
    base = Path(env).expanduser() if env else spec_dir / ".plantstage"
    return base / "runtimes"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _expand(text: str, *, artifact: Path, spec_dir: Path) -> str:
    return text.replace("{artifact}", str(artifact)).replace("{spec_dir}", str(spec_dir))


def _path(text: str, *, artifact: Path, spec_dir: Path) -> Path:
    p = Path(_expand(text, artifact=artifact, spec_dir=spec_dir)).expanduser()
    return p if p.is_absolute() else (spec_dir / p)


def _interpreter(rt: ReleaseRuntime, *, artifact: Path, spec_dir: Path, where: str) -> str:
    if rt.python is None:
        return sys.executable
    text = _expand(rt.python, artifact=artifact, spec_dir=spec_dir)
    if os.sep not in text:  # a name on PATH, e.g. python3.12
        found = shutil.which(text)
        if found is None:
            raise RuntimeBuildError(f"no interpreter '{text}' on PATH", where=f"{where}.python",
                                    hint="give a path or install that Python")
        return found
    p = _path(rt.python, artifact=artifact, spec_dir=spec_dir)
    if not p.exists():
        raise RuntimeBuildError(f"interpreter {p} does not exist", where=f"{where}.python",
                                hint="paths are relative to the spec; {artifact} is the release")
    return str(p)


def runtime_key(artifact_digest: str, requirements_digest: str, base_python: str,
                pip_args: list[str]) -> str:
    """The cache key of a venv: what it was built from and with."""
    h = hashlib.sha256()
    for part in (_LAYOUT, artifact_digest, requirements_digest, base_python, *pip_args):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:24]


#: Options of a requirements file that name no local file (anything else may point into the
#: release: -e ., -r other.txt, -c …, --find-links ./wheels, a path or a file: URL).
_REMOTE_ONLY_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--hash", "--trusted-host",
                        "--pre", "--only-binary", "--no-binary", "--prefer-binary")


def _self_contained(req: Path) -> bool:
    """True when the requirements file names only packages from an index, no local path."""
    try:
        text = req.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            if line.split("=", 1)[0].split()[0] not in _REMOTE_ONLY_OPTIONS:
                return False
            continue
        if line.startswith((".", "/", "~")) or "file:" in line or "\\" in line:
            return False
        if "/" in line and "://" not in line:  # vendor/pkg.whl: a path into the release
            return False
    return True


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def resolve(
    spec_dir: Path, release: Release, *, where: str, artifact_digest: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> Runtime:
    """The runtime of ``release``: build (or reuse) its venv when it declares requirements.

    ``where`` names the release in errors (``releases[2].runtime``); ``echo`` receives progress
    lines while a venv is built. A failed build raises :class:`RuntimeBuildError` naming the
    pip log.
    """
    rt = release.runtime
    if rt is None:
        return Runtime(python=sys.executable)
    artifact = (spec_dir / release.artifact.path).resolve()
    python = _interpreter(rt, artifact=artifact, spec_dir=spec_dir, where=where)
    if rt.requirements is None:
        return Runtime(python=python, command=rt.command)
    req = _path(rt.requirements, artifact=artifact, spec_dir=spec_dir)
    if not req.is_file():
        raise RuntimeBuildError(f"requirements file {req} does not exist",
                                where=f"{where}.requirements",
                                hint="paths are relative to the spec; {artifact} is the release")
    if _self_contained(req):
        # Nothing in the file points into the release: releases with the same requirements
        # share one venv (an example with six releases builds it once, not six times).
        digest = "requirements-only"
    else:
        digest = artifact_digest or artifacts.digest(artifact)
    key = runtime_key(digest, _sha256_file(req), python, rt.pip_args)
    return _build(cache_root(spec_dir), key, python, req, rt, where=where, echo=echo)


def _build(root: Path, key: str, python: str, req: Path, rt: ReleaseRuntime, *, where: str,
           echo: Callable[[str], None] | None) -> Runtime:
    t0 = time.perf_counter()
    venv = root / key
    marker = venv / "plantstage-runtime.json"
    if marker.exists():  # fast path, no lock: a finished build is never changed again
        return Runtime(python=str(_venv_python(venv)), venv=venv, cached=True,
                       seconds=time.perf_counter() - t0)
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{key}.pip.log"
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another rehearsal building the same one waits here
        try:
            if marker.exists():
                return Runtime(python=str(_venv_python(venv)), venv=venv, cached=True,
                               seconds=time.perf_counter() - t0)
            # Built in place under the lock; the marker is written last, so a build that
            # failed or was killed half-way is never used — the next one starts afresh.
            shutil.rmtree(venv, ignore_errors=True)
            say = echo or (lambda _line: None)
            say(f"building runtime: {python} -m venv, pip install -r {req.name} "
                f"(log: {log_path})")
            deadline = time.monotonic() + rt.build_timeout
            with log_path.open("w") as log:
                _run([python, "-m", "venv", str(venv)], log, deadline, where=where,
                     log_path=log_path, what="creating the venv")
                _run([str(_venv_python(venv)), "-m", "pip", "install",
                      "--disable-pip-version-check", "--no-input", "-r", str(req),
                      *rt.pip_args], log, deadline, where=where, log_path=log_path,
                     what="pip install", echo=say)
            marker.write_text(json.dumps({"python": python, "requirements": str(req),
                                          "built_s": round(time.perf_counter() - t0, 2)}))
            say(f"runtime ready in {time.perf_counter() - t0:.1f} s: {venv}")
            return Runtime(python=str(_venv_python(venv)), venv=venv, cached=False,
                           seconds=time.perf_counter() - t0)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], log, deadline: float, *, where: str, log_path: Path, what: str,
         echo: Callable[[str], None] | None = None) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True,
                                env={**os.environ, "PIP_PROGRESS_BAR": "off"})
    except OSError as exc:
        raise RuntimeBuildError(f"{what} could not start: {exc.strerror}", where=where,
                                hint=f"see {log_path}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        if echo and line.startswith(("Collecting ", "Installing collected", "Successfully")):
            echo(line.split(" (from ")[0].strip()[:120])
        if time.monotonic() > deadline:
            proc.kill()
            break
    code = proc.wait()
    log.flush()
    if time.monotonic() > deadline:
        raise RuntimeBuildError(f"{what} timed out", where=where,
                                hint=f"raise runtime.build_timeout; pip's log: {log_path}")
    if code != 0:
        raise RuntimeBuildError(f"{what} failed (exit {code})", where=where,
                                hint=f"pip's log: {log_path}")


def prepare(loaded, releases: list[Release], *, echo: Callable[[str], None] | None = None
            ) -> dict[str, Runtime]:
    """Resolve the runtimes of ``releases`` before a rehearsal's clock starts.

    A release's artifact is verified against its approved digest before its requirements are
    installed (pip never runs a requirements file from an artifact that was not approved).
    Returns release name → runtime; builds are cached, so the run itself finds them ready.
    """
    out: dict[str, Runtime] = {}
    for rel in releases:
        if rel.name in out or rel.runtime is None:
            continue
        idx = loaded.spec.releases.index(rel)
        at = loaded.where("releases", idx, "runtime") if hasattr(loaded, "where") \
            else str(loaded.path)
        digest = None
        if rel.runtime.requirements is not None:
            digest = artifacts.verify(loaded.base_dir / rel.artifact.path, rel.artifact.sha256,
                                      where=f"{at}: releases[{idx}].artifact.sha256")
        say = (lambda line, n=rel.name: echo(f"runtime {n}: {line}")) if echo else None
        out[rel.name] = resolve(loaded.base_dir, rel, where=f"{at}: releases[{idx}].runtime",
                                artifact_digest=digest, echo=say)
        if echo and out[rel.name].venv is not None and out[rel.name].cached:
            echo(f"runtime {rel.name}: {out[rel.name].describe()}")
    return out


def python_for(loaded, release: Release) -> str:
    """``{python}`` for ``release``: its runtime's interpreter (its venv is built on first use,
    then cached), else plantstage's. For resolvers outside a rehearsal (parity, load)."""
    if release.runtime is None:
        return sys.executable
    idx = loaded.spec.releases.index(release)
    at = loaded.where("releases", idx, "runtime") if hasattr(loaded, "where") \
        else str(loaded.path)
    return resolve(loaded.base_dir, release, where=f"{at}: releases[{idx}].runtime").python
