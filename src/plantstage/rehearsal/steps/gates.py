from __future__ import annotations

from plantstage.gates import evaluate_gates
from plantstage.rehearsal.steps import Step
from plantstage.spec.models import Gate


def effective_gates(spec) -> list[Gate]:
    """The spec's gates, plus a zero-mismatch gate for each reconcile check none covers."""
    gates = list(spec.gates)
    covered = {g.signal for g in gates}
    for check in spec.reconcile:
        sig = f"reconcile.{check.name}.mismatches"
        if sig not in covered:
            gates.append(Gate(name=f"reconcile-{check.name}", signal=sig, max=0,
                              cause=check.description or f"reconciliation '{check.name}' "
                              "found mismatches"))
    return gates


class Gates(Step):
    """Judge the recorded signals."""

    name = "gates"
    title = "Judge the gates"
    after_failure = True

    def run(self, ctx):
        ctx.gate_results = evaluate_gates(effective_gates(ctx.spec), ctx.signals)
        return {g.name: g.outcome for g in ctx.gate_results}
