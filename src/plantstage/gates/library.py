"""The built-in manufacturing gate library: ``use: NAME`` with ``params`` in the spec.

Each built-in expands to CEL (``value``, ``pass``, optional ``warn``) plus a threshold and a
cause in words, so a built-in gate is judged, shown and re-judged exactly like a hand-written one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Expanded:
    value: str
    pass_: str
    warn: str | None
    threshold: str
    cause: str


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
    Builtin("zero-critical-integration-failures", "No twin (plant integration) failed.",
            {"max": 0}, _integration_failures),
    Builtin("error-rate", "Errors per iteration under load.",
            {"phase": "candidate", "max": 0.01, "warn": None}, _error_rate),
    Builtin("latency-percentile", "A flow's p50/p95/p99 against a bound and/or the baseline.",
            {"flow": REQUIRED, "percentile": "p95", "max_ms": None, "max_increase_pct": 50,
             "min_absolute_ms": 50}, _latency),
]}


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
    missing = [k for k in b.required if params[k] is REQUIRED or params[k] is None]
    if missing:
        raise ValueError(f"gate '{gate.name}': {gate.use} needs {', '.join(missing)} in its "
                         "params" + (" (flow: the flow's name as the workload drives it, e.g. "
                                     "params: {flow: my-flow})" if "flow" in missing else ""))
    if b.name == "latency-percentile" and params["percentile"] not in ("p50", "p95", "p99"):
        raise ValueError(f"gate '{gate.name}': percentile is p50, p95 or p99")
    return b.build(params)
