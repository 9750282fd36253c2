"""The verbs of plantstage as library functions; ``plantstage.cli`` is a thin shell over them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from plantstage.errors import EngineError, PlantstageError, SpecError, SpecProblems
from plantstage.rehearsal.runner import Listener, RunOutcome, new_run_id, run_rehearsal
from plantstage.spec.loader import LoadedSpec, json_schema, load_spec
from plantstage.spec.models import Release

#: The bundled example `plantstage demo` rehearses (a source checkout's examples/).
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "sample-plant"


def schema() -> str:
    """The JSON Schema of ``plantstage.yaml``."""
    return json_schema()


def check(path: str | Path, *, artifacts: bool = True) -> LoadedSpec:
    """Validate a spec; raise :class:`SpecError` naming file, line and field if it is wrong.

    With ``artifacts`` (the default) every release artifact must also match its digest.
    """
    loaded = load_spec(path)
    problems: list[PlantstageError] = []  # every problem, not only the first (SpecProblems)

    def collect(validate, *args) -> None:  # noqa: ANN001
        try:
            validate(*args)
        except SpecProblems as exc:
            problems.extend(exc.problems)
        except PlantstageError as exc:
            problems.append(exc)

    # What only the workload can know: archetypes exist, user flow modules import.
    from plantstage.workload.plan import validate as _validate_workload

    collect(_validate_workload, loaded)
    # Smoke checks' flows exist (a registered name or module:function).
    from plantstage.rehearsal.steps.smoke import validate as _validate_smoke

    collect(_validate_smoke, loaded)
    # Gate expressions name signals the spec can produce (plantstage.gates.catalogue).
    collect(_validate_gates, loaded)
    # Parity names real components, and every file it compares exists ({artifact}: in each
    # release it can name).
    from plantstage.parity import check_references as _parity_references
    from plantstage.parity import missing_files as _parity_files

    collect(_parity_references, loaded)
    problems.extend(_parity_files(loaded))
    problems.extend(_missing_step_files(loaded))
    if artifacts:
        collect(verify_artifacts, loaded)
    if problems:
        raise SpecProblems(problems)
    return loaded


def _missing_step_files(loaded: LoadedSpec) -> list[PlantstageError]:
    """Release steps' SQL files that do not exist (relative to the spec, or {artifact}/…)."""
    from plantstage.spec.loader import _named_paths

    out: list[PlantstageError] = []
    for loc, value, what in _named_paths(loaded.spec):
        if loc[2] not in ("steps", "rollback"):
            continue
        rel = loaded.spec.releases[loc[1]]
        if value.startswith("{artifact}"):
            path = loaded.base_dir / rel.artifact.path / value[len("{artifact}"):].lstrip("/\\")
        elif "{" in value:
            continue  # filled in at run time
        else:
            path = loaded.base_dir / value
        if not path.is_file():
            out.append(SpecError(f"releases[{loc[1]}].{what}: file '{value}' does not exist",
                                 where=loaded.where(*loc),
                                 hint=f"looked for {path}; paths are relative to the spec, "
                                 "or {artifact}/… inside the release"))
    return out


def signal_catalogue(spec: str | Path | LoadedSpec) -> list[tuple[str, str]]:
    """``(signal name or pattern, meaning)`` for every signal a rehearsal of the spec records,
    its flows' own counters included (what ``plantstage check`` prints)."""
    from plantstage.gates.catalogue import signal_catalogue as _catalogue

    return _catalogue(spec if isinstance(spec, LoadedSpec) else load_spec(spec))


def _validate_gates(loaded: LoadedSpec) -> None:
    """Every bad gate expression or unknown signal, each with file:line and field path."""
    from plantstage.gates.catalogue import gate_problems

    found = gate_problems(loaded.spec)
    if found:
        raise SpecProblems([
            SpecError(f"{_field(path)}: {msg}", where=loaded.where(*path), hint=hint)
            for path, msg, hint in found])


def _field(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def verify_artifacts(loaded: LoadedSpec) -> dict[str, str]:
    """Check every release artifact against its approved digest; name the spec line if not."""
    from plantstage import artifacts

    digests = {}
    problems: list[PlantstageError] = []
    for i, rel in enumerate(loaded.spec.releases):
        where = f"{loaded.where('releases', i, 'artifact', 'sha256')}: " \
            f"releases[{i}].artifact.sha256"
        try:
            digests[rel.name] = artifacts.verify(
                loaded.base_dir / rel.artifact.path, rel.artifact.sha256, where=where)
        except PlantstageError as exc:
            if exc.where and not exc.where.startswith(str(loaded.path)):
                exc.message = f"{exc.where}: {exc.message}"
                exc.where = where
            problems.append(exc)
    if problems:
        raise SpecProblems(problems)
    return digests


def _pick_release(loaded: LoadedSpec, name: str | None) -> tuple[Release, Release]:
    spec = loaded.spec
    current = spec.release(spec.current)
    if name is None:
        others = [r for r in spec.releases if r.name != spec.current]
        if not others:
            raise SpecError("the spec lists no release besides the current one",
                            where=f"{loaded.path}: releases", hint="add the release to rehearse")
        return others[0], current
    try:
        release = spec.release(name)
    except KeyError:
        names = ", ".join(r.name for r in spec.releases)
        raise SpecError(f"no release named '{name}'", where=f"{loaded.path}: releases",
                        hint=f"one of: {names}") from None
    if release.name == current.name:
        raise SpecError(f"'{name}' is the current release", where="--release",
                        hint="rehearse a release that is not in production yet")
    return release, current


def rehearse(
    path: str | Path, *, release: str | None = None, out: str | Path | None = None,
    staging_db: str | None = None, listener: Listener | None = None,
    keep_staging: bool = False, echo=print, ring: str | None = None,
) -> RunOutcome:
    """Rehearse a release of the estate in ``path`` end to end; return the outcome.

    ``out`` is the run folder (default ``.plantstage/runs/RUN`` beside the spec);
    ``staging_db`` overrides the staging database URL (a run gets its own database there).
    """
    loaded = load_spec(path)
    rel, current = _pick_release(loaded, release)
    ring_record = None
    if ring is not None:  # refused (exit 2) unless the previous ring's GO run verifies
        from plantstage.rings import enter

        loaded, ring_record = enter(loaded, rel, ring)
    # Plugins import and every flow resolves before anything starts (exit 2, one line each).
    from plantstage.workload.plan import validate as _validate_workload

    _validate_workload(loaded)
    from plantstage.evidence.ledger import sweep_stale_runs
    from plantstage.evidence.signing import load_signing_key

    sweep_stale_runs(loaded.base_dir / ".plantstage" / "runs", echo=echo)  # killed → interrupted
    load_signing_key(echo, create=True)  # evidence signing key; made (and said) on first use
    prepare_production(loaded, echo=echo)
    from plantstage.runtime import prepare as prepare_runtimes

    prepare_runtimes(loaded, [current, rel], echo=echo)  # venvs built before the clock starts
    if out is None:
        run_id: str | None = new_run_id()
        run_dir = loaded.base_dir / ".plantstage" / "runs" / run_id
    else:
        run_id = None
        run_dir = Path(out)
        if (run_dir / "ledger.sqlite").exists():
            raise SpecError("this folder already holds a run", where=str(run_dir),
                            hint="choose another --out or remove the folder")
    if ring_record is not None:
        from plantstage.rings import write_record

        write_record(run_dir, ring_record)  # sealed with the bundle
    return run_rehearsal(loaded, rel, current, run_dir.resolve(), staging_db=staging_db,
                         run_id=run_id,
                         listener=listener, keep_staging=keep_staging)


def prepare_production(loaded: LoadedSpec, *, echo=print) -> list[Path]:
    """Create example production databases that declare ``generate`` and do not exist yet.

    Only for SQLite files (examples and trials): the command writes into a temporary file that
    becomes the production database only when the command succeeds, so a half-written database
    is never read as production. An existing production database is never touched.
    """
    import os

    made: list[Path] = []
    env = loaded.spec.environments.get("production")
    for name, b in (env.bindings.items() if env else []):
        if not b.generate or not b.url:
            continue
        where = f"{loaded.path}: environments.production.bindings.{name}.generate"
        if not b.url.startswith("sqlite:///"):
            raise SpecError("'generate' works only for a SQLite production database", where=where,
                            hint="create the database yourself, then remove 'generate'")
        rel = b.url[len("sqlite:///"):]
        db = Path(rel) if rel.startswith("/") else (loaded.base_dir / rel)
        if db.exists():
            continue
        db.parent.mkdir(parents=True, exist_ok=True)
        echo(f"Generating the example production database {db.name} for {name} "
             "(first run only) …")
        tmp = db.with_name(db.name + ".partial")
        tmp.unlink(missing_ok=True)
        values = {"python": sys.executable, "url": f"sqlite:///{tmp}", "path": str(tmp)}
        argv = [a.format_map(values) for a in b.generate]
        try:
            proc = subprocess.run(argv, cwd=loaded.base_dir, capture_output=True, text=True,
                                  env={**os.environ})
        except OSError as exc:
            raise SpecError(f"cannot run the generator: {exc}", where=where,
                            hint="check the command") from None
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise EngineError(f"the production data generator failed (exit {proc.returncode}): "
                              f"{last[0]}", where=where)
        tmp.rename(db)  # only a complete database becomes "production"
        made.append(db)
    return made


def demo(*, out: str | Path | None = None, release: str | None = None,
         staging_db: str | None = None, listener: Listener | None = None,
         echo=print) -> RunOutcome:
    """Rehearse the bundled example (``examples/sample-plant``) on the embedded default."""
    if not (EXAMPLE_DIR / "plantstage.yaml").exists():
        raise SpecError("the bundled example is not here", where=str(EXAMPLE_DIR),
                        hint="run the demo from a source checkout of plantstage")
    return rehearse(EXAMPLE_DIR, release=release, out=out, staging_db=staging_db,
                    listener=listener, echo=echo)


def load(path: str | Path, **kwargs):
    """Drive a spec's workload against a running app (:func:`plantstage.workload.verbs.load`)."""
    from plantstage.workload.verbs import load as _load

    return _load(path, **kwargs)


def refresh(path: str | Path, **kwargs):
    """Refresh staging from production, masked and verified (:func:`plantstage.data.refresh`)."""
    from plantstage.data import refresh as _refresh

    return _refresh(path, **kwargs)


# Verbs that live with their feature, re-exported so the library API is one module.
from plantstage.evidence.verbs import gate, signoff, verify  # noqa: E402,F401
from plantstage.parity import parity  # noqa: E402,F401
