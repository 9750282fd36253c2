"""Evaluate gates over recorded signals. A gate without data is ``inconclusive`` — never pass.

Outcomes: ``pass``, ``warn``, ``fail``, ``inconclusive`` (no data, too few samples, or an
expression error), and ``waived`` (a failing non-key gate someone accepted, until the waiver
expires). The total score follows Keptn: Σ weight × (1 pass, ½ warn or waived, 0 otherwise) /
Σ weight, compared with ``scoring.pass`` and ``scoring.warning``; a failing or inconclusive
*key* gate vetoes whatever the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from plantstage.gates.cel import GateData, MissingData, SampleSource, evaluate
from plantstage.spec.gates import Gate, Scoring

_POINTS = {"pass": 1.0, "warn": 0.5, "waived": 0.5}


@dataclass
class GateResult:
    name: str
    outcome: str  # pass | warn | fail | inconclusive | waived
    value: float | None
    threshold: str
    reason: str = ""
    cause: str = ""
    key: bool = True
    weight: float = 1.0
    expression: str = ""
    waiver: dict[str, Any] | None = None
    #: A comparison's effect (e.g. the new/old median ratio), its interval, and the decision
    #: in words ("new/old median ratio 1.08 [0.91, 1.27], threshold ≤ 2.0 → pass").
    effect: float | None = None
    interval: list[float] | None = None
    decision: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Score:
    pct: float | None  # None: no weighted gate
    result: str  # pass | warning | fail
    pass_pct: float
    warning_pct: float
    vetoes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"


def _simple(gate: Gate, data: GateData) -> GateResult:
    """The original form: one signal against max/min or against a baseline signal."""
    def get(name: str) -> float | None:
        try:
            return data.value(name)
        except MissingData:
            return None

    def res(outcome, value, threshold, reason=""):
        return GateResult(gate.name, outcome, value, gate.threshold or threshold, reason,
                          gate.cause, gate.key, gate.weight, "")

    value = get(gate.signal)
    if gate.baseline is not None:
        base = get(gate.baseline)
        if value is None or base is None:
            return res("inconclusive", value, f"≤ baseline +{gate.max_increase_pct}%",
                       data.missing[-1] if data.missing else "no data")
        limit = max(base * (1 + gate.max_increase_pct / 100), base + gate.min_absolute_increase)
        threshold = f"≤ {_fmt(limit)} (baseline {_fmt(base)} +{_fmt(gate.max_increase_pct)}%)"
        if value > limit:
            pct = (value / base - 1) * 100 if base else float("inf")
            return res("fail", value, threshold,
                       f"{gate.signal} = {_fmt(value)} is {pct:+.0f}% against the baseline "
                       f"{_fmt(base)}")
        return res("pass", value, threshold)
    parts = []
    if gate.max is not None:
        parts.append(f"≤ {_fmt(gate.max)}")
    if gate.min is not None:
        parts.append(f"≥ {_fmt(gate.min)}")
    threshold = " and ".join(parts)
    if value is None:
        return res("inconclusive", None, threshold,
                   data.missing[-1] if data.missing else f"no data for {gate.signal}")
    if gate.max is not None and value > gate.max:
        return res("fail", value, threshold,
                   f"{gate.signal} = {_fmt(value)} exceeds {_fmt(gate.max)}")
    if gate.min is not None and value < gate.min:
        return res("fail", value, threshold,
                   f"{gate.signal} = {_fmt(value)} is below {_fmt(gate.min)}")
    return res("pass", value, threshold)


def expressions(gate: Gate) -> tuple[str | None, str, str | None, str, str]:
    """``(value, pass, warn, threshold, cause)`` of a CEL or built-in gate."""
    if gate.use is not None:
        from plantstage.gates.library import expand_builtin

        x = expand_builtin(gate)
        return (gate.value or x.value, gate.pass_ or x.pass_, gate.warn or x.warn,
                gate.threshold or x.threshold, gate.cause or x.cause)
    return gate.value, gate.pass_, gate.warn, gate.threshold or gate.pass_, gate.cause


def _native(gate: Gate, data: GateData) -> GateResult | None:
    """A built-in that decides itself (paired comparison, count ratios); None for CEL ones."""
    if gate.use is None:
        return None
    from plantstage.gates.library import expand_builtin

    x = expand_builtin(gate)
    if x.native is None:
        return None
    d = x.native(data)
    return GateResult(gate.name, d.outcome, d.value, gate.threshold or x.threshold,
                      "" if d.outcome == "pass" else d.decision, gate.cause or x.cause,
                      gate.key, gate.weight, x.shown, effect=d.value, interval=d.interval,
                      decision=d.decision)


def _cel(gate: Gate, data: GateData, variables: Mapping[str, Any]) -> GateResult:
    value_x, pass_x, warn_x, threshold, cause = expressions(gate)
    shown = pass_x if value_x is None else f"value = {value_x}; pass: {pass_x}"

    def res(outcome, value, reason=""):
        return GateResult(gate.name, outcome, value, threshold, reason, cause, gate.key,
                          gate.weight, shown)

    value = None
    try:
        env = dict(variables)
        if value_x is not None:
            value = evaluate(value_x, env, data)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return res("inconclusive", None, f"value is {value!r}, not a number")
            value = float(value)
            env["value"] = value
        ok = evaluate(pass_x, env, data)
        if not isinstance(ok, bool):
            return res("inconclusive", value, f"pass gave {ok!r}, not true/false")
        if ok:
            return res("pass", value)
        if warn_x is not None and evaluate(warn_x, env, data) is True:
            return res("warn", value, "within the warning threshold only")
        shown_v = f" (value {_fmt(value)})" if value is not None else ""
        return res("fail", value, f"{pass_x} is false{shown_v}")
    except MissingData:
        return res("inconclusive", value, data.missing[-1] if data.missing else "no data")
    except ValueError as exc:
        return res("inconclusive", value, f"expression error: {exc}")


def evaluate_gate(gate: Gate, signals: Mapping[str, float], *,
                  series: Mapping[str, list[tuple[float, float]]] | None = None,
                  last_go: Mapping[str, float] | None = None,
                  variables: Mapping[str, Any] | None = None,
                  samples: SampleSource | None = None) -> GateResult:
    """Judge one gate. ``samples`` is the run's raw samples (its signal store), which the
    paired comparison reads; without them such a gate is inconclusive."""
    data = GateData(signals, series or {}, last_go, gate.min_samples, recording=samples)
    if gate.signal is not None:
        return _simple(gate, data)
    native = _native(gate, data)
    if native is not None:
        return native
    return _cel(gate, data, variables or {})


def evaluate_gates(gates: list[Gate], signals: Mapping[str, float], **kw) -> list[GateResult]:
    return [evaluate_gate(g, signals, **kw) for g in gates]


def score(results: list[GateResult], scoring: Scoring | None = None) -> Score:
    scoring = scoring or Scoring()
    vetoes = [r.name for r in results if r.key and r.outcome in ("fail", "inconclusive")]
    total = sum(r.weight for r in results)
    pct = (100.0 * sum(r.weight * _POINTS.get(r.outcome, 0.0) for r in results) / total
           if total > 0 else None)
    if vetoes:
        result = "fail"
    elif pct is None or pct >= scoring.pass_pct:
        result = "pass"
    elif pct >= scoring.warning_pct:
        result = "warning"
    else:
        result = "fail"
    return Score(None if pct is None else round(pct, 1), result, scoring.pass_pct,
                 scoring.warning_pct, vetoes)


def verdict(gate_results: list[GateResult], steps_ok: bool) -> str:
    """GO only when every step passed and every gate passed; INCONCLUSIVE when nothing failed
    but a gate could not decide (inconclusive is not a pass, and not a failure either).

    The strict rule for callers without scoring or signoffs; rehearsals decide with
    :func:`plantstage.gates.judge.judge`.
    """
    if not steps_ok or any(g.outcome not in ("pass", "inconclusive") for g in gate_results):
        return "NO-GO"
    if all(g.outcome == "pass" for g in gate_results):
        return "GO"
    return "INCONCLUSIVE"
