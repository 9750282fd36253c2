"""The readiness decision of one run, from what the run recorded — never from rerunning it.

:func:`judge` takes the spec (as used, or a changed one), the run's signals, time series, step
records and status, the signoffs and waivers recorded in the run's log, and the last GO run's
signals; it returns the gates, the score, the signoff state and the verdict:

* ``NO-GO`` — the run did not complete, a step failed, a key gate failed, the score is below
  ``scoring.warning`` even when every inconclusive gate is counted as passed, or someone in a
  declared role rejected;
* ``INCONCLUSIVE`` — nothing above, but a key gate is inconclusive (no data, too few samples,
  an interval that straddles its threshold) or inconclusive gates alone sink the score: the run
  could not tell — never GO from no data, never NO-GO from noise;
* ``PENDING`` — everything else holds, but a role required this run lacks its quorum;
* ``GO`` — otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from plantstage.gates.cel import GateData, MissingData, SampleSource, evaluate
from plantstage.gates.evaluate import GateResult, Score, evaluate_gate, score
from plantstage.spec.gates import Gate

GO, NO_GO, PENDING, INCONCLUSIVE = "GO", "NO-GO", "PENDING", "INCONCLUSIVE"


def effective_gates(spec, release_name: str | None = None) -> list[Gate]:
    """The spec's gates, plus a zero-mismatch key gate for each reconcile check none covers
    and a zero-lost, zero-duplicated gate for each declared effect none covers (and, given the
    release, the gates its maintenance window implies)."""
    gates = list(spec.gates)
    from plantstage.gates.cel import signal_refs
    from plantstage.gates.evaluate import expressions

    covered = {g.signal for g in gates if g.signal}
    for g in gates:
        if g.signal is None:
            covered |= {r.name for x in expressions(g)[:3] if x for r in signal_refs(x)}
    for check in spec.reconcile:
        sig = f"reconcile.{check.name}.mismatches"
        if sig not in covered:
            gates.append(Gate(name=f"reconcile-{check.name}", signal=sig, max=0,
                              cause=check.description or f"reconciliation '{check.name}' "
                              "found mismatches"))
    from plantstage.spec.effects import effect_gates

    gates += effect_gates(spec, covered)  # effect-<name>: zero lost, zero duplicated
    from plantstage.spec.recovery import recovery_gates

    gates += recovery_gates(spec, covered)  # recovery-rto, recovery-rpo: declared objectives
    from plantstage.spec.isolation import isolation_gates

    gates += isolation_gates(spec, covered)  # tenant-isolation: no leak, no foreign object
    from plantstage.spec.rbac import security_gates

    gates += security_gates(spec, covered)  # rbac, secrets, audit: built-in key gates
    from plantstage.gates.library import window_gates

    gates += window_gates(spec, release_name, covered)  # maintenance_window: downtime, migration
    return gates


@dataclass
class Judgement:
    verdict: str
    gates: list[GateResult]
    score: Score
    signoffs: list[dict[str, Any]]
    waivers: list[dict[str, Any]]
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "gates": [g.as_dict() for g in self.gates],
                "score": self.score.as_dict(), "signoffs": self.signoffs,
                "waivers": self.waivers, "reasons": self.reasons}


def _today(now: datetime | None) -> date:
    return (now or datetime.now(UTC)).date()


def waiver_active(w: Mapping[str, Any], now: datetime | None = None) -> bool:
    return date.fromisoformat(str(w["expires"])) >= _today(now)


def _apply_waivers(results: list[GateResult], waivers: list[dict[str, Any]],
                   now: datetime | None) -> list[dict[str, Any]]:
    shown = []
    by_gate = {r.name: r for r in results}
    for w in waivers:
        r = by_gate.get(w["gate"])
        active = waiver_active(w, now)
        state = "expired" if not active else "active"
        if r is None:
            state = "no such gate"
        elif r.key:
            state = "not applied: key gate"
        elif active and r.outcome in ("fail", "inconclusive"):
            r.waiver = dict(w)
            r.reason = f"{r.reason} — waived by {w['owner']} until {w['expires']}: {w['reason']}"
            r.outcome = "waived"
            state = "applied"
        elif active:
            state = f"active (gate {r.outcome})"
        shown.append({**w, "state": state})
    return shown


def run_variables(release: Mapping[str, Any], steps: list[dict[str, Any]], status: str,
                  signals: Mapping[str, float], results: list[GateResult], sc: Score,
                  waivers: list[dict[str, Any]]) -> dict[str, Any]:
    """What a signoff role's ``when`` sees (documented in docs/gates.md)."""
    mism = sum(v for k, v in signals.items()
               if k.startswith("reconcile.") and k.endswith(".mismatches"))
    return {
        "release": dict(release),
        "run": {"status": status,
                "failed_steps": [s["name"] for s in steps if s["status"] == "failed"]},
        "gates": {
            # A non-key gate that failed without sinking the score still needs someone's eyes.
            "warned": any(r.outcome in ("warn", "waived") for r in results)
            or any(not r.key and r.outcome in ("fail", "inconclusive") for r in results)
            or sc.result == "warning",
            "failed": any(r.outcome == "fail" for r in results),
            "inconclusive": any(r.outcome == "inconclusive" for r in results),
            "waived": sum(r.outcome == "waived" for r in results),
            "score": -1.0 if sc.pct is None else float(sc.pct),
            "result": sc.result,
            "outcomes": {r.name: r.outcome for r in results},
        },
        "reconcile": {"mismatches": float(mism)},
        "waivers": [w["gate"] for w in waivers if w.get("state") == "applied"],
    }


def signoff_state(spec, records: list[dict[str, Any]], variables: Mapping[str, Any],
                  signals: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per declared role: required this run?, approvals, rejections, state."""
    out = []
    for role in getattr(spec, "signoffs", []) or []:
        required, why = True, "always"
        if role.when is not None:
            try:
                required = evaluate(role.when, variables, GateData(signals)) is True
                why = role.when
            except (MissingData, ValueError) as exc:
                # A condition that cannot be decided requires the signoff: the safe side.
                required, why = True, f"{role.when} (undecidable: {exc}; required)"
        latest: dict[str, dict[str, Any]] = {}
        for r in records:
            if r["role"] == role.role:
                latest[r["by"]] = r  # a person's latest decision for the role counts
        approvals = [r for r in latest.values() if r["decision"] == "approve"]
        rejections = [r for r in latest.values() if r["decision"] == "reject"]
        if rejections:
            state = "rejected"
        elif len(approvals) >= role.quorum:
            state = "approved"
        elif required:
            state = "pending"
        else:
            state = "not required this run"
        out.append({"role": role.role, "quorum": role.quorum, "when": role.when or "",
                    "required": required, "condition": why, "state": state,
                    "description": role.description,
                    "approvals": approvals, "rejections": rejections})
    return out


def judge(spec, *, signals: Mapping[str, float], series: Mapping[str, list] | None,
          steps: list[dict[str, Any]], status: str, release_name: str | None,
          records: list[dict[str, Any]] | None = None,
          waivers: list[dict[str, Any]] | None = None,
          last_go: Mapping[str, float] | None = None,
          run_reasons: list[str] | None = None, now: datetime | None = None,
          samples: SampleSource | None = None) -> Judgement:
    """Judge a run. ``samples`` is its raw per-iteration samples (the run's signal store, as
    recorded in signals.sqlite), which paired comparisons read."""
    records = records or []
    variables = {"steps": {s["name"]: s["status"] for s in steps}}
    from plantstage.gates.evaluate import expressions
    from plantstage.gates.library import not_applicable

    results = []
    for g in effective_gates(spec, release_name):
        why = not_applicable(g, spec, release_name)
        if why:  # e.g. a paired gate under recreate: shown, never scored, never vetoes
            try:
                threshold = expressions(g)[3] if g.signal is None else g.threshold or ""
            except ValueError:
                threshold = g.threshold or ""
            # No cause: what a failure would mean did not happen, and could not.
            results.append(GateResult(g.name, "n/a", None, threshold, why, "", g.key,
                                      g.weight))
            continue
        results.append(evaluate_gate(g, signals, series=series, last_go=last_go,
                                     variables=variables, samples=samples))
    shown_waivers = _apply_waivers(results, list(waivers or []), now)
    applicable = [r for r in results if r.outcome != "n/a"]
    sc = score(applicable, getattr(spec, "scoring", None))
    release: dict[str, Any] = {"name": release_name or "", "version": "", "risk": "normal"}
    try:
        rel = spec.release(release_name) if release_name else None
    except KeyError:
        rel = None
    if rel is not None:
        release = {"name": rel.name, "version": rel.version,
                   "risk": str(getattr(rel, "risk", "normal"))}
    run_vars = run_variables(release, steps, status, signals, results, sc, shown_waivers)
    roles = signoff_state(spec, records, run_vars, signals)

    # Failed gates name the cause, so they come first; a failed step often follows from the
    # same defect (a downgrade that cannot undo duplicates). An inconclusive gate did not see
    # the problem its cause describes — it had no data — so it says only that.
    reasons = [f"gate {r.name} {r.outcome}: {r.cause or r.reason}"
               + (f" ({r.reason})" if r.cause and r.reason else "")
               for r in results if r.outcome in ("fail", "warn")]
    reasons += list(run_reasons or [])
    reasons += [f"gate {r.name} inconclusive: {r.reason or 'no data'}"
                for r in results if r.outcome == "inconclusive"]
    steps_ok = status == "completed" and all(s["status"] == "passed" for s in steps)
    if sc.result == "fail" and not sc.vetoes:
        reasons.append(f"gate score {sc.pct}% is below the warning threshold "
                       f"{sc.warning_pct:g}%")
    rejected = [r for r in roles if r["state"] == "rejected"]
    pending = [r for r in roles if r["state"] == "pending"]
    for r in rejected:
        for x in r["rejections"]:
            reasons.append(f"signoff {r['role']} rejected by {x['by']}: {x['reason']}")
    # What the run measured as wrong, with every inconclusive gate given the benefit of the
    # doubt: only that can make NO-GO. What fails only for want of data is INCONCLUSIVE.
    measured = score([replace(r, outcome="pass") if r.outcome == "inconclusive" else r
                      for r in applicable], getattr(spec, "scoring", None))
    if not steps_ok or measured.result == "fail" or rejected:
        verdict = NO_GO
    elif sc.result == "fail":
        verdict = INCONCLUSIVE
        undecided = [r.name for r in results if r.outcome == "inconclusive" and r.key] or \
            [r.name for r in results if r.outcome == "inconclusive"]
        reasons.insert(0, "no gate failed, but " + ", ".join(undecided) + " could not decide: "
                       "the run holds too little or too noisy data to call it GO or NO-GO "
                       "(docs/gates.md: Verdict, Paired comparison)")
    elif pending:
        verdict = PENDING
        for r in pending:
            have = len(r["approvals"])
            reasons.append(f"signoff {r['role']} pending: {have} of {r['quorum']} approvals "
                           f"(required: {r['condition']})")
    else:
        verdict = GO
    return Judgement(verdict, results, sc, roles, shown_waivers, reasons)


def last_go_signals(run_dir: Path, spec_name: str, before: float) -> dict[str, float] | None:
    """Signals of the latest GO rehearsal of the same estate among the run folder's siblings."""
    best: tuple[float, dict] | None = None
    parent = run_dir.parent
    if not parent.is_dir():
        return None
    for ev_path in parent.glob("*/evidence.json"):
        if ev_path.parent.resolve() == run_dir.resolve():
            continue
        try:
            ev = json.loads(ev_path.read_text())
        except (OSError, ValueError):
            continue
        if ev.get("verdict") != GO or ev.get("spec", {}).get("name") != spec_name:
            continue
        ended = float(ev.get("ended_at") or 0)
        if ended >= before:
            continue
        if best is None or ended > best[0]:
            best = (ended, ev.get("signals") or {})
    return None if best is None else best[1]
