from __future__ import annotations

from plantstage.gates.evaluate import evaluate_gates
from plantstage.gates.judge import effective_gates, last_go_signals
from plantstage.rehearsal.steps import Step

__all__ = ["Gates", "effective_gates"]


class Gates(Step):
    """Judge the recorded signals (the verdict, with score and signoffs, is decided at the end
    of the run by plantstage.gates.judge from the same data)."""

    name = "gates"
    title = "Judge the gates"
    after_failure = True

    def run(self, ctx):
        import time

        series = ctx.store.series() if ctx.store is not None else {}
        steps = {n: "failed" for n in ctx.failed_steps}
        ctx.gate_results = evaluate_gates(
            effective_gates(ctx.spec), ctx.signals, series=series,
            last_go=last_go_signals(ctx.run_dir, ctx.spec.name, time.time()),
            variables={"steps": steps})
        return {g.name: g.outcome for g in ctx.gate_results}
