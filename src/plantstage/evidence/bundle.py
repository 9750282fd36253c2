"""The evidence bundle of a run: data (``evidence.json``), views (``report.html``,
``junit.xml``) and the hash-chained, signed log (``chain.jsonl`` + ``chain.sig``).

A rehearsal writes it once at the end (:func:`write_evidence`); ``plantstage gate`` and
``signoff`` re-judge it from the run folder alone (:func:`rejudge`) and append to the log;
``plantstage verify`` only reads it. The judgement itself lives in
:mod:`plantstage.gates.judge`, so a rehearsal and a re-judgement of the same data cannot
disagree.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from plantstage._version import __version__
from plantstage.errors import PlantstageError
from plantstage.evidence import chain

EVIDENCE = "evidence.json"
REPORT = "report.html"
JUNIT = "junit.xml"
#: The spec a `plantstage gate --spec` re-judged with; signoffs and verify keep judging with it.
JUDGED_SPEC = "judged-spec.yaml"


def judging_spec_file(run_dir: Path) -> Path:
    p = run_dir / JUDGED_SPEC
    return p if p.exists() else run_dir / "spec.yaml"


def fidelity_table(ctx) -> list[dict[str, Any]]:
    spec = ctx.spec
    rows = []
    for name, comp in spec.estate.components.items():
        prod = spec.environments["production"].bindings.get(name)
        stage = spec.environments["staging"].bindings.get(name)
        rows.append({
            "component": name, "kind": comp.kind.value, "tier": comp.tier,
            "production": prod.fidelity.value if prod else "—",
            "staging": (stage.fidelity.value + (
                " (no twin in this run)" if stage.fidelity.value == "simulated"
                and stage.twin is None else "")) if stage else "not bound",
        })
    return rows


def run_reasons(steps: list[dict[str, Any]], error: PlantstageError | None) -> list[str]:
    reasons = [f"step {s['name']} {s['status']}: {s['error']}" for s in steps
               if s["status"] in ("failed", "interrupted")]
    if error is not None:
        reasons.insert(0, error.one_line())
    return reasons


def judge_context(ctx, steps: list[dict[str, Any]], *, status: str,
                  error: PlantstageError | None = None):
    """Judge a run that just ended, from what its context recorded."""
    from plantstage.gates.judge import judge, last_go_signals

    series = read_series(ctx.run_dir)
    return judge(ctx.spec, signals=dict(ctx.signals), series=series, steps=steps,
                 status=status, release_name=ctx.release.name,
                 last_go=last_go_signals(ctx.run_dir, ctx.spec.name, time.time()),
                 run_reasons=run_reasons(steps, error), samples=read_samples(ctx.run_dir))


def _apply(evidence: dict[str, Any], judgement) -> dict[str, Any]:
    evidence.update(judgement.as_dict())
    evidence["judged_at"] = time.time()
    return evidence


def write_evidence(ctx, steps: list[dict[str, Any]], *, status: str, started: float,
                   error: PlantstageError | None, judgement=None,
                   verdict: str | None = None) -> dict[str, Any]:
    """Write the bundle of a run that just ended and seal it (the first log entry)."""
    from plantstage.evidence import signing

    # The rehearsal is where a first signing key may be made (announced in one line).
    key = signing.load_signing_key(create=True)
    if judgement is None:
        judgement = judge_context(ctx, steps, status=status, error=error)
    ended = time.time()
    evidence = {
        "plantstage": __version__,
        "run_id": ctx.run_id,
        "spec": {"name": ctx.spec.name, "path": str(ctx.loaded.path),
                 "sha256": hashlib.sha256(ctx.loaded.text.encode()).hexdigest()},
        "judged_with": {"spec": "spec.yaml (as used)",
                        "sha256": hashlib.sha256(ctx.loaded.text.encode()).hexdigest()},
        "release": {"name": ctx.release.name, "version": ctx.release.version,
                    "sha256": ctx.digests.get(ctx.release.name),
                    "description": getattr(ctx.release, "description", "") or ""},
        "current": {"name": ctx.current.name, "version": ctx.current.version,
                    "sha256": ctx.digests.get(ctx.current.name)},
        "status": status,
        "started_at": started,
        "ended_at": ended,
        "seconds": round(ended - started, 2),
        "fidelity": fidelity_table(ctx),
        "sections": ctx.sections,
        "steps": steps,
        "run_reasons": run_reasons(steps, error),
        "signals": dict(sorted(ctx.signals.items())),
    }
    _apply(evidence, judgement)
    if verdict is not None and verdict != evidence["verdict"]:  # the caller knows better
        evidence["verdict"] = verdict
    if ctx.store is not None:
        ctx.store.close()  # the store is done; closing checkpoints its SQLite log
    render(ctx.run_dir, evidence)  # time series from signals.sqlite, as a re-judgement reads
    from plantstage.engines.sqlite import seal_files

    seal_files(ctx.run_dir)  # no -wal/-shm files appear later when someone reads a database
    seal_databases(ctx.run_dir)  # … in sub-folders too (parity's schema database, backups)
    seal(ctx.run_dir, evidence, "rehearsal", {"release": ctx.release.name, "status": status},
         key=key)
    return evidence


_SQLITE_MAGIC = b"SQLite format 3\x00"


def seal_databases(run_dir: Path) -> list[str]:
    """Seal every SQLite database in WAL mode anywhere in the bundle, found by its header (not
    its name): fold the write-ahead log in and switch to rollback-journal mode, so the exact
    ``<db>-wal``/``<db>-shm`` files go away before the first hash and reading the database
    later creates none. Returns the databases sealed (relative paths)."""
    import os
    import sqlite3

    sealed = []
    for top, _dirs, files in os.walk(run_dir, followlinks=False):
        for name in files:
            path = Path(top) / name
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                with path.open("rb") as f:
                    head = f.read(20)
            except OSError:
                continue
            if len(head) < 20 or not head.startswith(_SQLITE_MAGIC) or 2 not in head[18:20]:
                continue  # not SQLite, or not in WAL mode (nothing to fold in)
            try:
                db = sqlite3.connect(path, timeout=2)
                try:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    db.execute("PRAGMA journal_mode=DELETE")
                finally:
                    db.close()
            except sqlite3.Error:
                continue  # still in use or damaged: hashed as it is; verify names any change
            sealed.append(path.relative_to(run_dir).as_posix())
    return sealed


def render(run_dir: Path, evidence: dict[str, Any],
           series: dict[str, list[tuple[float, float]]] | None = None) -> None:
    """Write evidence.json, report.html and junit.xml from the evidence data."""
    from plantstage.evidence.junit import to_junit
    from plantstage.evidence.report import render_report

    if series is None:
        series = read_series(run_dir)
    (run_dir / EVIDENCE).write_text(json.dumps(evidence, indent=2, default=str))
    (run_dir / REPORT).write_text(render_report(evidence, series=series))
    (run_dir / JUNIT).write_text(to_junit(evidence))


def seal(run_dir: Path, evidence: dict[str, Any], kind: str, data: dict[str, Any],
         *, key=None) -> dict[str, Any]:
    """Append an event (with the verdict it led to) to the run's log and re-sign it."""
    return chain.append(run_dir, kind, {**data, "verdict": evidence["verdict"],
                                        "score": (evidence.get("score") or {}).get("pct")},
                        key=key)


def read_series(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    from plantstage.signals import SignalStore

    path = run_dir / "signals.sqlite"
    if not path.exists():
        return {}
    store = SignalStore.open(path)
    try:
        return store.series()
    finally:
        store.close()


def read_samples(run_dir: Path):
    """The run's raw samples as recorded in signals.sqlite (None when it has no store), so a
    rehearsal and a re-judgement read the same paired samples."""
    from plantstage.signals import SignalStore

    path = run_dir / "signals.sqlite"
    return SignalStore.open(path) if path.exists() else None


def load_evidence(run_dir: Path) -> dict[str, Any]:
    from plantstage.errors import SpecError

    path = run_dir / EVIDENCE
    if not run_dir.is_dir() or not path.exists():
        raise SpecError("no recorded run here", where=str(run_dir),
                        hint="give a run folder (it holds evidence.json)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise SpecError(f"evidence.json is not JSON: {exc}", where=str(path),
                        hint="`plantstage verify` names what was edited") from None


def recorded_signoffs(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Signoffs and waivers recorded in the run's log, oldest first."""
    records, waivers = [], []
    for e in chain.read_entries(run_dir):
        if e.get("kind") != "signoff":
            continue
        d = e.get("data") or {}
        records.append({k: d.get(k) for k in ("role", "by", "decision", "reason", "at")})
        if d.get("waiver"):
            waivers.append(d["waiver"])
    return records, waivers


def rejudge(run_dir: Path, *, spec=None, spec_label: str = "spec.yaml (as used)",
            spec_text: str | None = None, kind: str, data: dict[str, Any],
            now=None) -> dict[str, Any]:
    """Judge a recorded run again from its folder only, re-render the views, seal the event."""
    from plantstage.gates.judge import judge, last_go_signals
    from plantstage.spec.loader import parse_spec_text

    evidence = load_evidence(run_dir)
    if spec is not None and spec_text is not None:
        # Later signoffs and verifications judge with the same spec (kept in the bundle).
        (run_dir / JUDGED_SPEC).write_text(spec_text, encoding="utf-8")
    if spec is None:
        spec_file = judging_spec_file(run_dir)
        spec_text = spec_file.read_text(encoding="utf-8")
        spec = parse_spec_text(spec_text, spec_file).spec
        spec_label = ("spec.yaml (as used)" if spec_file.name == "spec.yaml"
                      else f"{JUDGED_SPEC} (from plantstage gate --spec)")
    series = read_series(run_dir)
    signals = dict(evidence.get("signals") or {})
    records, waivers = recorded_signoffs(run_dir)
    if kind == "signoff":  # the decision being recorded counts in the judgement it seals
        records.append({k: data.get(k) for k in ("role", "by", "decision", "reason", "at")})
        if data.get("waiver"):
            waivers.append(data["waiver"])
    judgement = judge(spec, signals=signals, series=series, steps=evidence["steps"],
                      status=evidence["status"], release_name=evidence["release"]["name"],
                      records=records, waivers=waivers,
                      last_go=last_go_signals(run_dir, evidence["spec"]["name"],
                                              float(evidence.get("started_at") or 0)),
                      run_reasons=evidence.get("run_reasons", []), now=now,
                      samples=read_samples(run_dir))
    before = evidence.get("verdict")
    _apply(evidence, judgement)
    evidence["judged_with"] = {"spec": spec_label,
                               "sha256": hashlib.sha256((spec_text or "").encode()).hexdigest()
                               if spec_text is not None else None}
    render(run_dir, evidence, series)
    seal(run_dir, evidence, kind, {**data, "previous_verdict": before})
    return evidence
