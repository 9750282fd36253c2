"""The ``parity`` verb: collect five layers of two environments and compare them."""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from plantstage.errors import SpecError
from plantstage.parity._compare import compare_layer
from plantstage.parity._environment import EnvView, Unresolved
from plantstage.parity._model import LAYERS, LayerFacts, ParityReport
from plantstage.parity.collectors import COLLECTORS
from plantstage.spec.loader import LoadedSpec, load_spec
from plantstage.spec.models import ComponentKind, Release

ENVIRONMENTS = ("production", "staging")


def check_references(loaded: LoadedSpec) -> None:
    """Refuse a parity section that names components the estate does not have."""
    spec = loaded.spec
    comps = spec.estate.components
    p = spec.parity
    for i, src in enumerate(p.config):
        if src.component not in comps:
            raise SpecError(f"'{src.component}' is not an estate component",
                            where=f"{loaded.path}: parity.config[{i}].component",
                            hint=f"one of: {', '.join(comps)}")
    names = [s.name for s in p.config]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"config source names must be unique: {', '.join(dup)}",
                        where=f"{loaded.path}: parity.config")
    if p.roles and p.roles.component not in comps:
        raise SpecError(f"'{p.roles.component}' is not an estate component",
                        where=f"{loaded.path}: parity.roles.component")
    dbs = spec.components_of(ComponentKind.database)
    seen: set[str] = set()
    for i, sv in enumerate(p.schema_version):
        if sv.component not in dbs:
            raise SpecError(f"'{sv.component}' is not a database component",
                            where=f"{loaded.where('parity', 'schema_version', i)}: "
                                  f"parity.schema_version[{i}].component",
                            hint=f"one of: {', '.join(dbs) or 'none declared'}")
        if sv.component in seen:
            raise SpecError(f"'{sv.component}' has two schema_version entries",
                            where=f"{loaded.where('parity', 'schema_version', i)}: "
                                  f"parity.schema_version[{i}]")
        seen.add(sv.component)
    if p.broker:
        if p.broker.component and p.broker.component not in comps:
            raise SpecError(f"'{p.broker.component}' is not an estate component",
                            where=f"{loaded.path}: parity.broker.component",
                            hint=f"one of: {', '.join(comps)}")
        mqtt_edges = {(e.from_, e.to) for e in spec.estate.edges if e.protocol == "mqtt"}
        for i, route in enumerate(p.broker.topics):
            if (route.from_, route.to) not in mqtt_edges:
                declared = ", ".join(f"{a}->{b}" for a, b in sorted(mqtt_edges)) or "none"
                raise SpecError(f"{route.from_}->{route.to} is not a declared mqtt edge",
                                where=f"{loaded.path}: parity.broker.topics[{i}]",
                                hint=f"declare it in estate.edges with protocol mqtt "
                                     f"(declared mqtt edges: {declared})")


def missing_files(loaded: LoadedSpec) -> list[SpecError]:
    """Every config / role-map file parity names that does not exist, one problem each
    (``file:line`` of the spec). ``{artifact}`` is checked in every release it can mean:
    production's (the current release) and every release staging may rehearse."""
    spec = loaded.spec
    p = spec.parity
    named: list[tuple[tuple, str, str]] = []
    for i, src in enumerate(p.config):
        for env in ENVIRONMENTS:
            named.append((("parity", "config", i, env), getattr(src, env),
                          f"parity.config[{i}].{env}"))
    if p.roles is not None:
        for env in ENVIRONMENTS:
            named.append((("parity", "roles", env), getattr(p.roles, env),
                          f"parity.roles.{env}"))
    problems: list[SpecError] = []
    try:
        current = spec.release(spec.current)
    except Exception:  # noqa: BLE001 - an unknown `current` is the spec check's to report
        return problems
    for loc, rel_path, field in named:
        env = loc[-1]
        releases = [current] if env == "production" or "{artifact}" not in rel_path \
            else list(spec.releases)
        for release in releases:
            view = EnvView(env, loaded, loaded.base_dir, release=release)
            try:
                path = view.file(rel_path)
            except Unresolved as exc:
                problems.append(SpecError(
                    f"{field}: {rel_path!r} needs {exc}, which only a rehearsal fills in",
                    where=loaded.where(*loc),
                    hint="config paths may use {artifact} and {spec_dir}"))
                break
            if not path.is_file():
                in_release = f" (release {release.name})" if "{artifact}" in rel_path else ""
                problems.append(SpecError(
                    f"{field}: no such file {path}{in_release}", where=loaded.where(*loc),
                    hint="parity compares this file; fix the path or add the file"))
    return problems


def run_parity(
    loaded: LoadedSpec, *, between: tuple[str, str] = ENVIRONMENTS,
    staging_db: str | None = None, run_dir: Path | None = None, scratch: Path | None = None,
    progress: Callable[[str], None] | None = None, broker_window: float | None = None,
    release: Release | None = None, staging_engine: str | None = None,
) -> ParityReport:
    """Compare two environments of a loaded spec; nothing is written to either.

    ``broker_window`` overrides ``parity.broker.window`` (seconds to listen on each broker).

    ``staging_db`` reads staging's database from this URL instead of its binding. Without
    one, and when staging's database does not exist yet, staging's schema is the one the
    current release's migrations build in ``scratch``.

    In a rehearsal, ``release`` is the release under test (staging's ``{artifact}``) and
    ``staging_engine`` the database URL the rehearsal will provision staging on: staging's
    schema is then built by the current release's migrations on that engine (a scratch
    database on that server, dropped afterwards), so a PostgreSQL production is compared
    with a PostgreSQL staging.
    """
    if len(between) != 2 or between[0] == between[1] or \
            any(e not in ENVIRONMENTS for e in between):
        raise SpecError(f"cannot compare {' and '.join(between)}", where="--between",
                        hint="compare two environments: production staging")
    check_references(loaded)
    spec = loaded.spec
    t0 = time.perf_counter()
    tmp = None
    if scratch is None:
        tmp = tempfile.TemporaryDirectory(prefix="plantstage-parity-")
        scratch = Path(tmp.name)
    views: list[EnvView] = []
    try:
        views += [EnvView(e, loaded, scratch / e, run_dir=run_dir,
                          db_override=staging_db if e == "staging" else None,
                          release=release if e == "staging" else None,
                          build_on=staging_engine if e == "staging" else None)
                  for e in between]
        for v in views:
            v.prepare()  # may raise: a staging server the rehearsal cannot reach
        if broker_window is not None:
            for v in views:
                v.cache["broker-window"] = broker_window
        tiers = {n: c.tier for n, c in spec.estate.components.items()}
        findings = []
        layers = {}
        sources: dict[str, dict[str, str]] = {}
        for layer in LAYERS:
            if progress:
                progress(layer)
            facts = [_collect(layer, v) for v in views]
            notes = [f"{v.name}: {n}" for v, lf in zip(views, facts, strict=True)
                     for n in lf.notes]
            if layer == "schema":
                notes += _align_dialects(*facts)
                for v, lf in zip(views, facts, strict=True):
                    for comp, how in (lf.meta.get("source") or {}).items():
                        sources.setdefault(v.name, {})[comp] = how
            found, more = compare_layer(layer, facts[0], facts[1], tuple(between),
                                        spec.parity, tiers)
            findings += found
            notes += more
            layers[layer] = {"status": _layer_status(found), "notes": notes}
        return ParityReport(str(loaded.path), tuple(between), findings, layers,
                            seconds=round(time.perf_counter() - t0, 3), sources=sources)
    finally:
        for v in views:
            for undo in reversed(v.cleanups):
                try:
                    undo()
                except Exception as exc:  # noqa: BLE001 - the others must still be undone
                    print(f"parity: could not remove a scratch database: {exc}",
                          file=sys.stderr)
        if tmp is not None:
            tmp.cleanup()


def _collect(layer: str, view: EnvView) -> LayerFacts:
    # Interrupted (SIGTERM, Ctrl-C) is a KeyboardInterrupt, not an Exception: it passes.
    try:
        return COLLECTORS[layer](view)
    except Exception as exc:  # noqa: BLE001 - a collector bug makes its layer unknown (blocks)
        lf = LayerFacts(layer)
        lf.fail("", None, f"internal error in the {layer} collector: {type(exc).__name__}: "
                          f"{exc}")
        lf.notes.append(traceback.format_exc(limit=3).splitlines()[-1])
        return lf


def _align_dialects(a: LayerFacts, b: LayerFacts) -> list[str]:
    """Engine SQL (check constraints, view and function bodies, triggers) and objects one engine
    has and another lacks (sequences, enums, extensions) are compared only between the same
    engine; between engines the types are compared as mapped."""
    da, db = a.meta.get("dialect") or {}, b.meta.get("dialect") or {}
    notes = []
    engine_sql = ("check.", "view.", "function.", "trigger.", "sequence.", "enum.",
                  "extension.")
    for comp in set(da) & set(db):
        if da[comp] != db[comp]:
            for lf in (a, b):
                for k in [k for k, f in lf.facts.items()
                          if k.startswith(engine_sql) and f.component == comp]:
                    del lf.facts[k]
            notes.append(f"{comp}: {da[comp]} vs {db[comp]} — types compared as mapped; "
                         "check constraints, views, functions, triggers, sequences, enums and "
                         "extensions (engine SQL and engine objects) not compared")
    return notes


def _layer_status(findings) -> str:
    statuses = {f.status for f in findings}
    for s in ("drift", "unknown", "allowed", "same"):
        if s in statuses:
            return s
    return "not compared"


def write_report(report: ParityReport, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "parity.json"
    path.write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return path


def parity(
    path: str | Path, *, between: tuple[str, str] = ENVIRONMENTS,
    staging_db: str | None = None, out: str | Path | None = None,
    progress: Callable[[str], None] | None = None, broker_window: float | None = None,
    release: str | None = None,
) -> tuple[ParityReport, Path]:
    """Compare production and staging of the estate in ``path``; write ``parity.json``.

    ``release`` names the release staging runs (its folder is staging's ``{artifact}``;
    default: the spec's ``current``). Returns the report and where ``parity.json`` went
    (``out``, default ``.plantstage/parity/`` beside the spec). ``report.exit_code`` is 0
    when nothing blocks, 1 with blocking drift or a blocking unknown, 2 when nothing could
    be compared.
    """
    loaded = load_spec(path)
    out_dir = Path(out) if out is not None else loaded.base_dir / ".plantstage" / "parity"
    rel = None
    if release is not None:
        names = [r.name for r in loaded.spec.releases]
        if release not in names:
            raise SpecError(f"no release named {release!r}", where="--release",
                            hint=f"one of: {', '.join(names)}")
        rel = loaded.spec.release(release)
    report = run_parity(loaded, between=between, staging_db=staging_db, progress=progress,
                        broker_window=broker_window, release=rel)
    return report, write_report(report, out_dir)
