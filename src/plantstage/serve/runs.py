"""The runs ``plantstage serve`` shows: found on disk, read, never written.

A run is a run folder (``<spec dir>/.plantstage/runs/<run>/``) holding ``evidence.json``
(finished runs) or only ``ledger.sqlite`` (a run still going, or one whose process died). There is
no cross-run index: the folders are the truth, so a run copied in or deleted shows up or goes
away on the next page load. Parsed evidence is cached per file (path, mtime, size), so a page
load re-reads only what changed — including a signoff written by the CLI meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plantstage.errors import SpecError
from plantstage.evidence import bundle
from plantstage.evidence.ledger import read_run

RUNS = Path(".plantstage") / "runs"
SPEC_FILE = "plantstage.yaml"


@dataclass
class Run:
    """One run folder, summarised for the pages (``evidence`` is the full evidence, if any)."""

    key: str
    path: Path
    spec: str
    release: str
    current: str
    verdict: str | None
    status: str
    started_at: float
    ended_at: float | None
    seconds: float | None
    evidence: dict[str, Any] | None = None
    ring: str | None = None
    note: str | None = None
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @property
    def has_report(self) -> bool:
        return (self.path / bundle.REPORT).is_file()

    def pending_roles(self) -> list[dict[str, Any]]:
        """The signoffs a PENDING run waits for: required, quorum not reached yet. (A NO-GO
        run's required signoffs cannot turn it GO, so it waits for none.)"""
        if self.verdict != "PENDING":
            return []
        out = []
        for r in (self.evidence or {}).get("signoffs") or []:
            if r.get("required") and len(r.get("approvals") or []) < int(r.get("quorum") or 1):
                out.append(r)
        return out


def run_folders(root: Path) -> list[Path]:
    """Every run folder under ``root``: a spec (file or folder) → its ``.plantstage/runs``;
    a runs folder → its children; a folder of projects → each project's runs (one level)."""
    root = root.resolve()
    if root.is_file():
        bases = [root.parent / RUNS]
    elif (root / bundle.EVIDENCE).is_file() or (root / "ledger.sqlite").is_file():
        bases = [root.parent]  # one run folder given: show it with its siblings
    else:
        bases = [root, root / RUNS, *sorted(root.glob(f"*/{RUNS}"))]
    found: list[Path] = []
    seen: set[Path] = set()
    for base in bases:
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if d in seen or not d.is_dir():
                continue
            if (d / bundle.EVIDENCE).is_file() or (d / "ledger.sqlite").is_file():
                seen.add(d)
                found.append(d)
    return found


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


class RunStore:
    """Finds and reads the runs under one root; thread-safe, read-only."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int], Run]] = {}

    def runs(self) -> list[Run]:
        """All runs, newest first."""
        out: list[Run] = []
        for d in run_folders(self.root):
            run = self._read(d)
            if run is not None:
                out.append(run)
        keys: dict[str, int] = {}
        for r in out:
            keys[r.key] = keys.get(r.key, 0) + 1
        for r in out:  # two projects may hold folders of the same name: tell them apart
            if keys[r.key] > 1:
                r.key = f"{r.key}~{hashlib.sha256(str(r.path).encode()).hexdigest()[:8]}"
        out.sort(key=lambda r: r.started_at, reverse=True)
        return out

    def get(self, key: str) -> Run | None:
        return next((r for r in self.runs() if r.key == key), None)

    def _read(self, d: Path) -> Run | None:
        ev_path = d / bundle.EVIDENCE
        stamp_path = ev_path if ev_path.is_file() else d / "ledger.sqlite"
        try:
            st = stamp_path.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(d)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        run = _from_evidence(d, ev_path) if ev_path.is_file() else _from_ledger(d)
        if run is not None:
            with self._lock:
                self._cache[d] = (stamp, run)
        return run


def _ring(d: Path) -> str | None:
    try:
        data = json.loads((d / "ring.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("ring") if isinstance(data, dict) else None


def _from_evidence(d: Path, ev_path: Path) -> Run | None:
    try:
        ev = json.loads(ev_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(ev, dict):
        return None
    try:
        signals = {k: f for k, v in (ev.get("signals") or {}).items()
                   if (f := _num(v)) is not None}
        return Run(key=d.name, path=d, spec=str((ev.get("spec") or {}).get("name") or "?"),
                   release=str((ev.get("release") or {}).get("name") or "?"),
                   current=str((ev.get("current") or {}).get("name") or "?"),
                   # A run that could not run or was interrupted decided nothing: its
                   # evidence says NO-GO (never GO), but the history shows no verdict.
                   verdict=ev.get("verdict") if ev.get("status") == "completed" else None,
                   status=str(ev.get("status") or "?"),
                   started_at=float(ev.get("started_at") or 0),
                   ended_at=_num(ev.get("ended_at")), seconds=_num(ev.get("seconds")),
                   evidence=ev, ring=_ring(d), signals=signals)
    except (TypeError, ValueError, AttributeError):
        return None  # not an evidence file plantstage wrote: one bad folder hides no others


def _from_ledger(d: Path) -> Run | None:
    """A run with no evidence yet: still going, or its process died (``interrupted``)."""
    try:
        r = read_run(d / "ledger.sqlite")
    except (sqlite3.Error, OSError):
        return None
    row = r["run"]
    note = None
    if row["status"] == "interrupted":
        note = "interrupted: its process is gone; no verdict, no sealed evidence"
    elif row["status"] == "running":
        note = "still running"
    return Run(key=d.name, path=d, spec=_spec_name(d, row.get("spec")),
               release=str(row.get("release") or "?"), current="?", verdict=None,
               status=str(row["status"]), started_at=float(row.get("started_at") or 0),
               ended_at=_num(row.get("ended_at")), seconds=None, ring=_ring(d), note=note)


def _spec_name(d: Path, recorded: Any) -> str:
    """The estate's name for a run without evidence (its ledger records the spec's path)."""
    import yaml

    try:
        data = yaml.safe_load((d / "spec.yaml").read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return data["name"]
    except (OSError, yaml.YAMLError):
        pass
    return str(recorded or "?")


def require_runs(store: RunStore) -> list[Run]:
    """The runs, or a one-line error naming where none were found."""
    if not store.root.exists():
        raise SpecError("no such file or folder", where=str(store.root)[:300],
                        hint="give a spec (plantstage.yaml), its folder, or a runs folder")
    runs = store.runs()
    if not runs:
        raise SpecError("no runs found", where=str(store.root)[:300],
                        hint="rehearse first (`plantstage rehearse SPEC` writes "
                        ".plantstage/runs/RUN beside the spec), or give a runs folder")
    return runs


# --- signals across runs -----------------------------------------------------------------

#: The signals offered first in the trend picker (patterns over signal names); any other
#: numeric signal the runs recorded can be chosen too.
FEATURED = [
    ("latency p95", re.compile(r"^workload\.candidate\.[^.]+\.p95_ms$")),
    ("throughput", re.compile(r"^workload\.candidate\.[^.]+\.rate$")),
    # cost probes: cost.<phase>.<counter>.per_iteration (database statements, queries …)
    ("statements per transaction",
     re.compile(r"^cost\.candidate\..*(statement|stmt|quer|call).*\.per_iteration$"
                r"|statements?_per_(tx|transaction)")),
    ("restore / rollback time",
     re.compile(r"^(rollback|backup|restore)\b.*seconds$|restore|rto_measured")),
    ("errors", re.compile(r"^workload\.candidate\.error_rate$")),
]


def unit_of(name: str) -> str:
    """The unit a signal's name states (the naming convention of the catalogue), or ''."""
    last = name.rsplit(".", 1)[-1]
    if last.endswith("_ms"):
        return "ms"
    if last in ("seconds", "block_s", "queue_drain_s") or last.endswith("_s") \
            or last.endswith("_seconds"):
        return "s"
    if last == "rate":
        return "per s"
    if last == "error_rate":
        return "ratio"
    if last == "per_iteration":
        return "per iteration"
    if last.endswith("bytes"):
        return "bytes"
    if "per_tx" in last or "per_transaction" in last:
        return "per transaction"
    return "count"


def signal_names(runs: list[Run]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(featured groups, every name) over the signals the runs recorded."""
    names = sorted({n for r in runs for n in r.signals})
    groups = []
    for label, pattern in FEATURED:
        hits = [n for n in names if pattern.search(n)]
        if hits:
            groups.append((label, hits))
    return groups, names


def default_signal(runs: list[Run]) -> str | None:
    groups, names = signal_names(runs)
    if groups:
        return groups[0][1][0]
    return names[0] if names else None


def compare_signals(a: Run, b: Run) -> list[dict[str, Any]]:
    """Every signal of either run with its two values and the change, biggest change first."""
    rows = []
    for name in sorted(set(a.signals) | set(b.signals)):
        va, vb = a.signals.get(name), b.signals.get(name)
        diff = None if va is None or vb is None else vb - va
        rel = None
        if diff is not None and va not in (None, 0):
            rel = diff / abs(va)
        rows.append({"name": name, "a": va, "b": vb, "diff": diff, "rel": rel,
                     "unit": unit_of(name), "changed": va != vb})
    rows.sort(key=lambda r: (not r["changed"], -(abs(r["rel"]) if r["rel"] is not None
                                                  else (1.0 if r["changed"] else 0.0))))
    return rows
