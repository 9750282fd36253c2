"""Release rings: which ring a release may enter, and a rehearsal scoped to one ring.

The spec orders its rings (``rings:``, e.g. internal → pilot → general). A ring holds its own
tenants plus every earlier ring's — they are on the release by the time it enters — and
``tenants: "*"`` holds every estate tenant. ``plantstage rehearse --ring NAME`` rehearses only
those tenants (and so only their archetypes' flows); it refuses to start unless the previous
ring has a rehearsal that

* rehearsed **the same artifact** (the release's pinned sha256),
* ended **GO**,
* **verifies** (:func:`plantstage.evidence.verbs.verify`, read-only: the hash chain, every
  file, the signature, and the signer when a trusted key is pinned — integrity at least), and
* satisfies the ring's ``entry`` (CEL over that run's evidence).

A ring rehearsal records its ring in ``ring.json`` in the run folder, written before the run
starts and sealed with the rest of the bundle, so editing it breaks verification like any
other file. Runs are looked up in the spec's runs folder (``.plantstage/runs``) and any
``runs`` folders given. Nothing here writes to a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantstage.errors import SpecError
from plantstage.spec.loader import LoadedSpec, load_spec

RING_FILE = "ring.json"


@dataclass
class RingRun:
    """One ring rehearsal found on disk, judged for entry into the next ring."""

    run_dir: Path
    ring: str
    verdict: str | None
    digest: str | None
    release: str | None
    ended_at: float
    problems: list[str] = field(default_factory=list)
    trusted: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run": str(self.run_dir), "ring": self.ring, "verdict": self.verdict,
                "release": self.release, "sha256": self.digest, "ended_at": self.ended_at,
                "problems": self.problems, "trusted": self.trusted}


@dataclass
class RingState:
    """A ring's state for one release."""

    name: str
    tenants: list[str]
    state: str              # entered | may-enter | blocked
    reason: str
    unlocked_by: str | None = None     # the previous ring's run that lets the release in
    go_run: str | None = None          # this ring's own GO run, when there is one

    def as_dict(self) -> dict[str, Any]:
        return {"ring": self.name, "tenants": self.tenants, "state": self.state,
                "reason": self.reason, "unlocked_by": self.unlocked_by, "go_run": self.go_run}


def ring_names(spec) -> list[str]:
    return [r.name for r in spec.rings]


def _ring(loaded: LoadedSpec, name: str):
    for i, r in enumerate(loaded.spec.rings):
        if r.name == name:
            return i, r
    names = ", ".join(ring_names(loaded.spec)) or "none declared"
    raise SpecError(f"no ring named '{name}'", where="--ring",
                    hint=f"rings of {loaded.spec.name}: {names} (spec 'rings:')")


def ring_tenants(spec, name: str) -> list[str]:
    """The tenants a ring's rehearsal drives: its own and every earlier ring's, in estate
    order; ``*`` is every estate tenant."""
    held: set[str] = set()
    for r in spec.rings:
        if r.tenants == "*":
            return [t.code for t in spec.estate.tenants]
        held |= set(r.tenants)
        if r.name == name:
            break
    return [t.code for t in spec.estate.tenants if t.code in held]


def scoped(loaded: LoadedSpec, name: str) -> LoadedSpec:
    """The spec as a ring rehearsal uses it: the workload drives the ring's tenants only, and
    the isolation probes ask as them (every estate tenant is still 'another tenant')."""
    from dataclasses import replace

    _ring(loaded, name)
    tenants = ring_tenants(loaded.spec, name)
    spec = loaded.spec.model_copy(deep=True)
    spec.workload.tenants = tenants
    iso = getattr(spec, "isolation", None)
    if iso is not None and iso.tenants:
        iso.tenants = [t for t in iso.tenants if t in tenants] or tenants
    return replace(loaded, spec=spec)


def runs_folders(loaded: LoadedSpec, extra: list[Path] | None = None) -> list[Path]:
    return [loaded.base_dir / ".plantstage" / "runs", *(extra or [])]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_ring_runs(loaded: LoadedSpec, ring: str, digest: str,
                   folders: list[Path] | None = None) -> list[RingRun]:
    """Rehearsals of ``ring`` for the artifact ``digest``, newest first, each verified."""
    from plantstage.evidence.verbs import verify

    found: list[RingRun] = []
    seen: set[Path] = set()
    for folder in runs_folders(loaded, folders):
        try:
            candidates = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            continue
        for run_dir in candidates:
            real = run_dir.resolve()
            if real in seen:
                continue
            seen.add(real)
            rec = _read_json(run_dir / RING_FILE)
            if rec is None or rec.get("ring") != ring or rec.get("spec") != loaded.spec.name:
                continue
            ev = _read_json(run_dir / "evidence.json") or {}
            rel = ev.get("release") if isinstance(ev.get("release"), dict) else {}
            got = rel.get("sha256") or rec.get("sha256")
            if got != digest:
                continue
            run = RingRun(run_dir, ring, ev.get("verdict"), got, rel.get("name"),
                          float(ev.get("ended_at") or 0.0))
            try:
                v = verify(run_dir)
            except SpecError as exc:
                run.problems.append(exc.one_line())
            else:
                run.problems.extend(v.problems)
                run.trusted = v.trusted
                if not v.ok and not v.problems:
                    run.problems.append("the evidence does not verify")
            found.append(run)
    found.sort(key=lambda r: r.ended_at, reverse=True)
    return found


def entry_variables(ev: dict[str, Any], ring: str) -> dict[str, Any]:
    """What a ring's ``entry`` sees of the previous ring's run (docs/rings.md)."""
    score = (ev.get("score") or {}).get("pct")
    return {
        "verdict": ev.get("verdict") or "",
        "ring": ring,
        "release": {k: v for k, v in (ev.get("release") or {}).items() if v is not None},
        "gates": {"outcomes": {g.get("name"): g.get("outcome") for g in ev.get("gates") or []
                               if isinstance(g, dict)},
                  "score": -1.0 if score is None else float(score)},
    }


def check_entry(expr: str | None, run: RingRun) -> str | None:
    """None when the run satisfies ``expr`` (CEL), else why not."""
    if not expr:
        return None
    from plantstage.gates.cel import GateData, MissingData, evaluate

    ev = _read_json(run.run_dir / "evidence.json") or {}
    signals = {k: float(v) for k, v in (ev.get("signals") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    try:
        ok = evaluate(expr, entry_variables(ev, run.ring), GateData(signals))
    except MissingData as exc:
        return f"entry cannot be judged: no data for {exc}"
    except ValueError as exc:
        return f"entry does not evaluate: {exc}"
    if ok is not True:
        return f"entry is not met: {expr}"
    return None


def _why_not(run: RingRun, entry: str | None) -> str | None:
    if run.problems:
        return f"its evidence does not verify: {run.problems[0]}"
    if run.verdict != "GO":
        return f"it ended {run.verdict or 'without a verdict'}"
    return check_entry(entry, run)


def unlocking_run(loaded: LoadedSpec, release, index: int,
                  folders: list[Path] | None = None) -> tuple[RingRun | None, str]:
    """(the previous ring's run that lets ``release`` into ring ``index``, or None; why)."""
    rings = loaded.spec.rings
    if index == 0:
        return None, "first ring: no previous ring to pass"
    prev, ring = rings[index - 1], rings[index]
    digest = release.artifact.sha256
    runs = find_ring_runs(loaded, prev.name, digest, folders)
    if not runs:
        return None, (f"no rehearsal of ring '{prev.name}' for {release.name} "
                      f"(sha256 {digest[:12]}…): run `plantstage rehearse --ring {prev.name} "
                      f"--release {release.name}` first")
    reasons = []
    for run in runs:
        why = _why_not(run, ring.entry)
        if why is None:
            how = "signed by a trusted key" if run.trusted else "integrity only (no trusted " \
                "key pinned)"
            return run, f"ring '{prev.name}' run {run.run_dir.name} is GO and verifies ({how})"
        reasons.append(f"run {run.run_dir.name}: {why}")
    more = f" (and {len(reasons) - 1} older run(s) that do not qualify)" if len(reasons) > 1 \
        else ""
    return None, f"ring '{prev.name}' has no qualifying run — {reasons[0]}{more}"


def _pick_release(loaded: LoadedSpec, name: str | None):
    spec = loaded.spec
    if name is None:
        others = [r for r in spec.releases if r.name != spec.current]
        if not others:
            raise SpecError("the spec lists no release besides the current one",
                            where=f"{loaded.path}: releases", hint="add the release to rehearse")
        return others[0]
    try:
        return spec.release(name)
    except KeyError:
        raise SpecError(f"no release named '{name}'", where="--release",
                        hint="one of: " + ", ".join(r.name for r in spec.releases)) from None


def enter(loaded: LoadedSpec, release, ring: str,
          folders: list[Path] | None = None) -> tuple[LoadedSpec, dict[str, Any]]:
    """Check that ``release`` may enter ``ring`` (SpecError, exit 2, when not); return the
    ring-scoped spec and the record to keep in the run folder (:func:`write_record`)."""
    if not loaded.spec.rings:
        raise SpecError("the spec declares no rings", where="--ring",
                        hint="declare 'rings:' in the spec (docs/rings.md)")
    index, r = _ring(loaded, ring)
    run, why = unlocking_run(loaded, release, index, folders)
    if index > 0 and run is None:
        raise SpecError(f"{release.name} may not enter ring '{ring}': {why}", where="--ring",
                        hint="`plantstage rings` shows each ring's state")
    record = {"ring": ring, "spec": loaded.spec.name, "release": release.name,
              "sha256": release.artifact.sha256, "tenants": ring_tenants(loaded.spec, ring),
              "entry": r.entry, "unlocked_by": str(run.run_dir) if run else None,
              "unlocked_because": why}
    return scoped(loaded, ring), record


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Keep the ring record in the run folder before the run starts (it is sealed with it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RING_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def status(path: str | Path | LoadedSpec, *, release: str | None = None,
           runs: list[Path] | None = None) -> tuple[Any, list[RingState]]:
    """(the release, each ring's state for it): entered (its own GO run verifies),
    may-enter (the previous ring's run unlocks it), or blocked (why)."""
    loaded = path if isinstance(path, LoadedSpec) else load_spec(path)
    if not loaded.spec.rings:
        raise SpecError("the spec declares no rings", where=str(loaded.path),
                        hint="declare 'rings:' in the spec (docs/rings.md)")
    rel = _pick_release(loaded, release)
    out: list[RingState] = []
    for i, r in enumerate(loaded.spec.rings):
        tenants = ring_tenants(loaded.spec, r.name)
        own = find_ring_runs(loaded, r.name, rel.artifact.sha256, runs)
        go = next((x for x in own if not x.problems and x.verdict == "GO"), None)
        run, why = unlocking_run(loaded, rel, i, runs)
        unlocked = i == 0 or run is not None
        if go is not None and unlocked:
            state = RingState(r.name, tenants, "entered",
                              f"GO run {go.run_dir.name} verifies", go_run=str(go.run_dir))
        elif unlocked:
            state = RingState(r.name, tenants, "may-enter", why)
        else:
            state = RingState(r.name, tenants, "blocked", why)
        if run is not None:
            state.unlocked_by = str(run.run_dir)
        out.append(state)
    return rel, out
