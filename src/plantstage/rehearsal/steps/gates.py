from __future__ import annotations

from plantstage.gates.judge import effective_gates
from plantstage.rehearsal.steps import Step

__all__ = ["Gates", "effective_gates"]


class Gates(Step):
    """Judge the run: gates (paired samples included), score, signoffs and the verdict — once,
    with the same function ``plantstage gate RUN`` re-judges a recording with. The runner uses
    this judgement for the ledger, the evidence and the exit code."""

    name = "gates"
    title = "Judge the gates"
    after_failure = True

    def run(self, ctx):
        from plantstage.evidence.bundle import judge_context

        steps = [r for r in ctx.step_records if r["name"] != self.name]
        ctx.judgement = judge_context(ctx, steps, status="completed")
        ctx.gate_results = ctx.judgement.gates
        return {g.name: g.outcome for g in ctx.gate_results}
