"""Evaluate gates over recorded signals. A gate without data is ``inconclusive`` — never pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from plantstage.spec.models import Gate


@dataclass
class GateResult:
    name: str
    outcome: str  # pass | fail | inconclusive
    value: float | None
    threshold: str
    reason: str = ""
    cause: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}"


def evaluate_gate(gate: Gate, signals: dict[str, float]) -> GateResult:
    value = signals.get(gate.signal)
    if gate.baseline is not None:
        base = signals.get(gate.baseline)
        if value is None or base is None:
            missing = gate.signal if value is None else gate.baseline
            return GateResult(gate.name, "inconclusive", value,
                              f"≤ baseline +{gate.max_increase_pct}%", f"no data for {missing}",
                              gate.cause)
        limit = max(base * (1 + gate.max_increase_pct / 100), base + gate.min_absolute_increase)
        threshold = f"≤ {_fmt(limit)} (baseline {_fmt(base)} +{_fmt(gate.max_increase_pct)}%)"
        if value > limit:
            pct = (value / base - 1) * 100 if base else float("inf")
            return GateResult(gate.name, "fail", value, threshold,
                              f"{gate.signal} = {_fmt(value)} is {pct:+.0f}% against the baseline "
                              f"{_fmt(base)}", gate.cause)
        return GateResult(gate.name, "pass", value, threshold, "", gate.cause)
    parts = []
    if gate.max is not None:
        parts.append(f"≤ {_fmt(gate.max)}")
    if gate.min is not None:
        parts.append(f"≥ {_fmt(gate.min)}")
    threshold = " and ".join(parts)
    if value is None:
        return GateResult(gate.name, "inconclusive", None, threshold,
                          f"no data for {gate.signal}", gate.cause)
    if gate.max is not None and value > gate.max:
        return GateResult(gate.name, "fail", value, threshold,
                          f"{gate.signal} = {_fmt(value)} exceeds {_fmt(gate.max)}", gate.cause)
    if gate.min is not None and value < gate.min:
        return GateResult(gate.name, "fail", value, threshold,
                          f"{gate.signal} = {_fmt(value)} is below {_fmt(gate.min)}", gate.cause)
    return GateResult(gate.name, "pass", value, threshold, "", gate.cause)


def evaluate_gates(gates: list[Gate], signals: dict[str, float]) -> list[GateResult]:
    return [evaluate_gate(g, signals) for g in gates]


def verdict(gate_results: list[GateResult], steps_ok: bool) -> str:
    """GO only when every step passed and every gate passed (inconclusive is not a pass)."""
    if steps_ok and all(g.outcome == "pass" for g in gate_results):
        return "GO"
    return "NO-GO"
