"""The built-in manufacturing gate library: ``use: NAME`` with ``params`` in the spec.

Each built-in expands to CEL (``value``, ``pass``, optional ``warn``) plus a threshold and a
cause in words, so a built-in gate is judged, shown and re-judged exactly like a hand-written one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plantstage.gates.cel import GateData, MissingData


@dataclass(frozen=True)
class Decided:
    """What a native built-in decided: outcome, the number it reports, the effect's interval
    (None for exact counts) and the decision in words."""

    outcome: str  # pass | fail | inconclusive
    value: float | None
    decision: str
    interval: list[float] | None = None


@dataclass(frozen=True)
class Expanded:
    value: str | None
    pass_: str
    warn: str | None
    threshold: str
    cause: str
    #: A native built-in decides itself from the run's data (samples, counts) instead of CEL;
    #: ``value``/``pass_`` are then None/"true" and ``refs`` names the signals it reads (for
    #: ``plantstage check``), ``shown`` says how it decides (for the report).
    native: Callable[[GateData], Decided] | None = None
    refs: tuple[str, ...] = ()
    shown: str = ""


class _Required:
    """The default of a parameter a gate must give (no flow name is ever assumed)."""

    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Builtin:
    name: str
    summary: str
    params: dict[str, Any]  # name → default (REQUIRED: the gate must give it; None: optional)
    build: Callable[[dict[str, Any]], Expanded]

    @property
    def required(self) -> list[str]:
        return [k for k, v in self.params.items() if v is REQUIRED]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _f(x: Any) -> str:
    """A CEL double literal."""
    return repr(float(x))


def _order_throughput(p):
    sig = f"workload.candidate.{p['flow']}.rate"
    keep = 1 - float(p["max_drop_pct"]) / 100
    return Expanded(
        f"signal({_q(sig)})", f"value >= baseline({_q(sig)}) * {_f(keep)}", None,
        f"≥ baseline −{p['max_drop_pct']}% ({p['flow']} per s)",
        f"order throughput ({p['flow']}) dropped against the baseline")


def _inventory_success(p):
    head = f"workload.candidate.{p['flow']}"
    return Expanded(
        f"100.0 * (1.0 - signal({_q(head + '.errors')}) / max(signal({_q(head + '.count')}), "
        "1.0))",
        f"value >= {_f(p['min_pct'])}", None, f"≥ {p['min_pct']}% successful",
        "inventory updates failed under load")


def _confirmation_timing(p):
    sig = f"workload.candidate.{p['flow']}.{p['stat']}"
    grow = 1 + float(p["max_increase_pct"]) / 100
    limit = (f"max(baseline({_q(sig)}) * {_f(grow)}, baseline({_q(sig)}) + "
             f"{_f(p['min_absolute_ms'])})")
    if p.get("max_ms") is not None:
        limit = f"min({limit}, {_f(p['max_ms'])})"
    return Expanded(f"signal({_q(sig)})", f"value <= {limit}", None,
                    f"≤ baseline +{p['max_increase_pct']}% ({p['stat']})"
                    + (f", ≤ {p['max_ms']} ms" if p.get("max_ms") is not None else ""),
                    "production confirmations take longer to reach stock on the new version")


def _reconciliation_zero(p):
    return Expanded('sum(matching("reconcile.", ".mismatches"))', "value <= 0.0", None,
                    "= 0 mismatches over all reconcile checks",
                    "reconciliation found business data out of balance")


def _queue_depth(p):
    base, cand = "workload.baseline.in_flight", "workload.candidate.in_flight"
    return Expanded(
        f"last(samples({_q(cand)}))",
        f"value <= last(samples({_q(base)})) + {_f(p['tolerance'])}", None,
        f"≤ baseline's final depth + {p['tolerance']}",
        "work is still queued after the load: the new version did not drain back to baseline")


def _restore_rto(p):
    return Expanded('signal("rollback.seconds")', f"value <= {_f(p['rto_s'])}", None,
                    f"≤ {p['rto_s']} s (RTO)", "rollback / restore took longer than the RTO")


def _recovery_rto(p):
    return Expanded('signal("recovery.rto_seconds")', f"value <= {_f(p['rto_s'])}", None,
                    f"≤ {p['rto_s']:g} s from the failure to serving with the data recovered "
                    "(RTO)",
                    "recovery took longer than the RTO (restore, replay and the exactly-once "
                    "check, from the failure)")


def _recovery_rpo(p):
    return Expanded('signal("recovery.rpo_lost")', f"value <= {_f(p['max_lost'])}", None,
                    f"≤ {p['max_lost']:g} acknowledged business effects lost (RPO)",
                    "acknowledged business effects were lost by the recovery (RPO)")


def _integration_failures(p):
    return Expanded('signal("twins.failures")', f"value <= {_f(p['max'])}", None,
                    f"≤ {p['max']:g} twin failures",
                    "a critical integration (MES, WMS, supplier portal, PLC) failed")


def _error_rate(p):
    sig = f"workload.{p['phase']}.error_rate"
    return Expanded(f"signal({_q(sig)})", f"value <= {_f(p['max'])}",
                    None if p.get("warn") is None else f"value <= {_f(p['warn'])}",
                    f"≤ {p['max']}", "the new version returned errors under load")


def _latency(p):
    sig = f"workload.candidate.{p['flow']}.{p['percentile']}_ms"
    conds = []
    parts = []
    if p.get("max_ms") is not None:
        conds.append(f"value <= {_f(p['max_ms'])}")
        parts.append(f"≤ {p['max_ms']} ms")
    if p.get("max_increase_pct") is not None:
        grow = 1 + float(p["max_increase_pct"]) / 100
        conds.append(f"value <= max(baseline({_q(sig)}) * {_f(grow)}, baseline({_q(sig)}) + "
                     f"{_f(p['min_absolute_ms'])})")
        parts.append(f"≤ baseline +{p['max_increase_pct']}%")
    return Expanded(f"signal({_q(sig)})", " && ".join(conds) or "true", None,
                    " and ".join(parts), f"{p['flow']} {p['percentile']} latency regressed")


def _ratio_text(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.2f}"


def _paired_latency(p):
    from plantstage.gates.paired import compare

    flow, stat = p["flow"], p["stat"]
    max_ratio, floor_ms = float(p["max_ratio"]), float(p["floor_ms"] or 0)

    def decide(data: GateData) -> Decided:
        if data.recording is None:
            return Decided("inconclusive", None, "no raw samples recorded for this run (runs "
                           "before the paired phase existed keep none)")
        rows = {v: data.recording.samples("paired", flow, v) for v in ("old", "new")}
        if not rows["old"] and not rows["new"]:
            return Decided("inconclusive", None, f"no paired samples of {flow} (the paired "
                           "phase did not run, or drove no iteration of this flow)")
        ok = {v: [r[2] for r in rs if r[3]] for v, rs in rows.items()}
        # A sample may carry its stratum after the four fields (the tenant that drove it):
        # then like is compared with like.
        strata = tuple([r[4] if len(r) > 4 else None for r in rows[v] if r[3]]
                       for v in ("old", "new"))
        blocks = tuple(len({r[0] for r in rows[v] if r[3]}) for v in ("old", "new"))
        failed = sum(len(rows[v]) - len(ok[v]) for v in rows)
        r = compare(ok["old"], ok["new"], max_ratio=max_ratio, floor_ms=floor_ms, stat=stat,
                    confidence=float(p["confidence"]), min_samples=data.min_samples,
                    blocks=blocks, seed=f"{flow}:{stat}", strata=strata)
        left_out = f"; {failed} failed iterations left out" if failed else ""
        text = (f"{r.text} (n = {r.n_old} old, {r.n_new} new, in {blocks[0]} + {blocks[1]} "
                f"blocks{left_out})")
        return Decided(r.decision, r.ratio, text, r.interval)

    what = "median" if stat == "p50" else "p95"
    threshold = f"new/old {what} ≤ {max_ratio:g}×" + (f" (or ≤ +{floor_ms:g} ms)"
                                                      if floor_ms else "")
    return Expanded(None, "true", None, threshold,
                    f"{flow} is slower on the new version than on the old one under the same "
                    f"traffic ({what})", native=decide,
                    refs=(f"workload.paired.old.{flow}.{stat}_ms",
                          f"workload.paired.new.{flow}.{stat}_ms"),
                    shown=f"Hodges–Lehmann ratio new/old of {flow}'s {what} latency in the "
                    f"paired phase, {float(p['confidence']):.0%} interval (Mann–Whitney"
                    + (")" if stat == "p50" else "; seeded bootstrap for p95)"))


def _count_ratio(new_sig: str, old_sig: str, max_ratio: float, floor: float, what: str,
                 per: Callable[[GateData, str], float]) -> Callable[[GateData], Decided]:
    """A ratio of two deterministic counts (no interval: a count is not a sample)."""
    def decide(data: GateData) -> Decided:
        try:
            new, old = per(data, new_sig), per(data, old_sig)
        except MissingData:
            return Decided("inconclusive", None,
                           data.missing[-1] if data.missing else "no data")
        if old > 0:
            ratio = new / old
        else:
            ratio = 1.0 if new <= 0 else math.inf
        limit_text = f"threshold ≤ {max_ratio:g}" + (f" (or ≤ +{floor:g})" if floor else "")
        ok = ratio <= max_ratio or new - old <= floor
        outcome = "pass" if ok else "fail"
        return Decided(outcome, None if math.isinf(ratio) else ratio,
                       f"new/old {what} {_ratio_text(ratio)} ({new:.4g} against {old:.4g}), "
                       f"{limit_text} → {outcome}", None)
    return decide


def _per_iteration(phase_of: Callable[[str], str]) -> Callable[[GateData, str], float]:
    """Read ``<signal>.per_iteration``, else the signal over its phase's iterations."""
    def per(data: GateData, sig: str) -> float:
        direct = data.signals.get(sig + ".per_iteration")
        if direct is not None and not math.isnan(direct):
            return float(direct)
        total = data.value(sig)
        iters = data.value(f"workload.{phase_of(sig)}.iterations")
        if iters <= 0:
            data.missing.append(f"no iterations in workload.{phase_of(sig)}")
            raise MissingData(sig)
        return total / iters
    return per


def _scopes(phase: str) -> tuple[str, str]:
    """(new, old) scopes: the candidate phase against the baseline, or the paired phase's
    versions against each other."""
    if phase == "paired":
        return "paired.new", "paired.old"
    return phase, "baseline"


def _cost_ratio(p):
    new_s, old_s = _scopes(p["phase"])
    counter = p["counter"]
    new_sig, old_sig = f"cost.{new_s}.{counter}", f"cost.{old_s}.{counter}"

    def per(data: GateData, sig: str) -> float:
        return data.value(sig + ".per_iteration")

    return Expanded(None, "true", None,
                    f"{counter} per iteration ≤ {float(p['max_ratio']):g}× the "
                    f"{old_s.replace('paired.', '')} version's",
                    f"the new version does more {counter} per business transaction",
                    native=_count_ratio(new_sig, old_sig, float(p["max_ratio"]),
                                        float(p["floor"] or 0), f"{counter} per iteration",
                                        per),
                    refs=(new_sig + ".per_iteration", old_sig + ".per_iteration"),
                    shown=f"{new_sig}.per_iteration / {old_sig}.per_iteration")


def _call_amplification(p):
    new_s, old_s = _scopes(p["phase"])
    twin, counter = p["twin"], p["counter"]
    new_sig, old_sig = f"twins.{twin}.{new_s}.{counter}", f"twins.{twin}.{old_s}.{counter}"

    def phase_of(sig: str) -> str:
        return new_s if sig == new_sig else old_s

    return Expanded(None, "true", None,
                    f"{twin} {counter} per iteration ≤ {float(p['max_ratio']):g}× the "
                    f"{old_s.replace('paired.', '')} version's",
                    f"the new version calls {twin} more often per business transaction "
                    "(retries or a call loop)",
                    native=_count_ratio(new_sig, old_sig, float(p["max_ratio"]),
                                        float(p["floor"] or 0), f"{twin} {counter} per "
                                        "iteration", _per_iteration(phase_of)),
                    refs=(new_sig, old_sig),
                    shown=f"({new_sig} / workload.{new_s}.iterations) / ({old_sig} / "
                    f"workload.{old_s}.iterations)")


def _downtime_within_window(p):
    return Expanded('signal("deploy.downtime_seconds")', f"value <= {_f(p['window_s'])}", None,
                    f"≤ {float(p['window_s']):g} s (maintenance window)",
                    "the downtime clients saw (old version stopped → new version answering "
                    "through the router) exceeds the maintenance window")


def _migration_within_window(p):
    projected = bool(p["projected"])
    sig = "migrate.projected_seconds" if projected else "migrate.seconds"
    what = "projected to production's rows" if projected else "as measured on staging"
    return Expanded(f"signal({_q(sig)})", f"value <= {_f(p['window_s'])}", None,
                    f"≤ {float(p['window_s']):g} s (maintenance window; {what})",
                    f"the upgrade, {what}, takes longer than the maintenance window")


BUILTINS: dict[str, Builtin] = {b.name: b for b in [
    Builtin("order-throughput", "Completed orders per second vs the baseline.",
            {"flow": REQUIRED, "max_drop_pct": 20}, _order_throughput),
    Builtin("inventory-update-success-rate", "Share of inventory updates that succeeded.",
            {"flow": REQUIRED, "min_pct": 99}, _inventory_success),
    Builtin("confirmation-timing", "Production confirmation → stock visible, vs the baseline.",
            {"flow": REQUIRED, "stat": "e2e_p95_ms", "max_increase_pct": 50,
             "min_absolute_ms": 100, "max_ms": None}, _confirmation_timing),
    Builtin("reconciliation-zero", "Every reconcile check found zero mismatches.", {},
            _reconciliation_zero),
    Builtin("queue-depth-recovered", "Work in flight drains back to baseline after load.",
            {"tolerance": 5}, _queue_depth),
    Builtin("restore-within-rto", "Rollback / restore finished within the declared RTO.",
            {"rto_s": REQUIRED}, _restore_rto),
    Builtin("recovery-rto", "The rollback drill recovered (served again with its data) within "
            "the RTO, timed from the failure.", {"rto_s": REQUIRED}, _recovery_rto),
    Builtin("recovery-rpo", "Acknowledged business effects lost by the recovery, at most "
            "the RPO (0 for tier 1).", {"max_lost": 0}, _recovery_rpo),
    Builtin("zero-critical-integration-failures", "No twin (plant integration) failed.",
            {"max": 0}, _integration_failures),
    Builtin("error-rate", "Errors per iteration under load.",
            {"phase": "candidate", "max": 0.01, "warn": None}, _error_rate),
    Builtin("latency-percentile", "A flow's p50/p95/p99 against a bound and/or the baseline.",
            {"flow": REQUIRED, "percentile": "p95", "max_ms": None, "max_increase_pct": 50,
             "min_absolute_ms": 50}, _latency),
    Builtin("paired-latency", "New vs old latency of a flow under the same traffic at the same "
            "time (paired phase): effect, interval, pass/fail/inconclusive.",
            {"flow": REQUIRED, "stat": "p50", "max_ratio": 2.0, "floor_ms": 0,
             "confidence": 0.95}, _paired_latency),
    Builtin("cost-ratio", "A deterministic cost counter per business transaction (database "
            "statements, rows read …), new vs old.",
            {"counter": REQUIRED, "max_ratio": 1.5, "phase": "candidate", "floor": 0},
            _cost_ratio),
    Builtin("call-amplification", "Calls to a twin per business transaction, new vs old "
            "(retry storms, call loops).",
            {"twin": REQUIRED, "counter": "requests", "max_ratio": 2.0, "phase": "candidate",
             "floor": 0}, _call_amplification),
    Builtin("downtime-within-window", "Recreate: the downtime a client saw through the router "
            "(deploy.downtime_seconds) fits in the maintenance window.",
            {"window_s": REQUIRED}, _downtime_within_window),
    Builtin("migration-within-window", "The upgrade's duration, projected from the staging "
            "subset to production's row counts (migrate.projected_seconds; projected: false "
            "for migrate.seconds as measured), fits in the maintenance window.",
            {"window_s": REQUIRED, "projected": True}, _migration_within_window),
]}


def window_gates(spec, release_name: str | None, covered: set[str]) -> list:
    """The key gates a release's ``maintenance_window`` implies (docs/strategies.md):
    ``downtime-within-window`` and ``migration-within-window``, unless a gate of the spec
    already judges their signal."""
    from plantstage.spec.gates import Gate

    try:
        rel = spec.release(release_name) if release_name else None
    except KeyError:
        rel = None
    window = getattr(rel, "maintenance_window", None)
    if window is None:
        return []
    out = []
    if "deploy.downtime_seconds" not in covered:
        out.append(Gate(name="downtime-within-window", use="downtime-within-window",
                        params={"window_s": window}))
    if not {"migrate.projected_seconds", "migrate.seconds"} & covered:
        out.append(Gate(name="migration-within-window", use="migration-within-window",
                        params={"window_s": window}))
    return out


def _paired_ref(name: str) -> bool:
    """A signal only a phase with both versions running at once records."""
    parts = name.split(".")
    return (len(parts) > 1 and parts[0] in ("workload", "cost", "monitor")
            and parts[1] == "paired") or \
        (len(parts) > 2 and parts[0] == "twins" and parts[2] == "paired")


def needs_both_versions(gate) -> bool:
    """The gate judges old and new running at the same time (the paired phase): a paired
    built-in, a ratio built-in with ``phase: paired``, or any gate reading a paired signal."""
    from plantstage.gates.cel import signal_refs

    if gate.signal is not None:
        return any(_paired_ref(n) for n in (gate.signal, gate.baseline) if n)
    if gate.use == "paired-latency" or (gate.use in ("cost-ratio", "call-amplification")
                                        and gate.params.get("phase") == "paired"):
        return True
    names: list[str] = []
    if gate.use is not None:
        try:
            x = expand_builtin(gate)
        except ValueError:
            return False
        names += list(x.refs)
        texts = [gate.value or x.value, gate.pass_ or x.pass_, gate.warn or x.warn]
    else:
        texts = [gate.value, gate.pass_, gate.warn]
    for text in texts:
        if text:
            try:
                names += [r.name for r in signal_refs(text)]
            except Exception:  # noqa: BLE001 - a bad expression is judged (inconclusive) elsewhere
                continue
    return any(_paired_ref(n) for n in names)


def not_applicable(gate, spec, release_name: str | None) -> str | None:
    """Why the gate does not apply to this release (None: it applies). Under ``strategy:
    recreate`` the old version stops before the migration, so a gate that compares old and new
    running at once has nothing to judge: not a pass (nothing was shown), not a failure
    (nothing went wrong), not inconclusive (no amount of data would settle it)."""
    try:
        rel = spec.release(release_name) if release_name else None
    except KeyError:
        return None
    if rel is None or str(getattr(rel, "strategy", "")) != "recreate":
        return None
    if needs_both_versions(gate):
        return ("not applicable under strategy recreate: the old version stops before the "
                "migration, so old and new never run at once (no paired phase)")
    return None


def expand_builtin(gate) -> Expanded:
    """The CEL a ``use:`` gate stands for; ``ValueError`` for an unknown name or parameter."""
    b = BUILTINS.get(gate.use)
    if b is None:
        raise ValueError(f"gate '{gate.name}': no built-in gate '{gate.use}'; built in: "
                         f"{', '.join(sorted(BUILTINS))}")
    unknown = sorted(set(gate.params) - set(b.params))
    if unknown:
        raise ValueError(f"gate '{gate.name}': {gate.use} has no parameter "
                         f"{', '.join(unknown)}; it takes {', '.join(b.params) or 'none'}")
    params = {**b.params, **gate.params}
    nested = sorted(k for k, v in gate.params.items() if isinstance(v, (list, dict)))
    if nested:
        raise ValueError(f"gate '{gate.name}': {gate.use} parameter {', '.join(nested)} takes "
                         "one value (a number or a name), not a list or a mapping")
    missing = [k for k in b.required if params[k] is REQUIRED or params[k] is None]
    if missing:
        raise ValueError(f"gate '{gate.name}': {gate.use} needs {', '.join(missing)} in its "
                         "params" + (" (flow: the flow's name as the workload drives it, e.g. "
                                     "params: {flow: my-flow})" if "flow" in missing else ""))
    if b.name == "latency-percentile" and params["percentile"] not in ("p50", "p95", "p99"):
        raise ValueError(f"gate '{gate.name}': percentile is p50, p95 or p99")
    _check_native(gate, b.name, params)
    try:
        return b.build(params)
    except (TypeError, ValueError) as exc:  # e.g. max_drop_pct: "a lot"
        raise ValueError(f"gate '{gate.name}': {gate.use} has a parameter of the wrong kind "
                         f"({exc})") from None


def _check_native(gate, name: str, params: dict[str, Any]) -> None:
    if name not in ("paired-latency", "cost-ratio", "call-amplification"):
        return
    if getattr(gate, "value", None) is not None or getattr(gate, "warn", None) is not None:
        raise ValueError(f"gate '{gate.name}': {name} decides from its interval or counts; "
                         "'value' and 'warn' do not apply to it")
    for k in ("max_ratio", "floor_ms", "floor", "confidence"):
        if k not in params:
            continue
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"gate '{gate.name}': {k} is a number, not {v!r}")
    if params.get("max_ratio", 1) <= 0 or params.get("floor_ms", 0) < 0 \
            or params.get("floor", 0) < 0:
        raise ValueError(f"gate '{gate.name}': max_ratio is > 0, floors are ≥ 0")
    if name == "paired-latency":
        if params["stat"] not in ("p50", "p95"):
            raise ValueError(f"gate '{gate.name}': stat is p50 (median shift) or p95")
        if not 0.5 <= params["confidence"] < 1:
            raise ValueError(f"gate '{gate.name}': confidence is between 0.5 and 1, e.g. 0.95")
    elif params["phase"] not in ("candidate", "paired"):
        raise ValueError(f"gate '{gate.name}': phase is candidate (against the baseline) or "
                         "paired (new against old in the paired phase)")
