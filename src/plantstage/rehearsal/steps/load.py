from __future__ import annotations

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.workload.engine import describe, run_phase


class _Load(Step):
    phase = "baseline"

    def run(self, ctx):
        wl = ctx.spec.workload
        if not wl.flows:
            return {"skipped": "no workload flows declared"}
        tenants = wl.tenants or [t.code for t in ctx.spec.estate.tenants]
        if not tenants:
            raise StepFailed("the workload has no tenants to drive")
        result = run_phase(ctx.router.url, wl, tenants, self.phase,
                           progress=getattr(ctx, "progress", None))
        ctx.signals_from(result.signals())
        return describe(result)


class BaselineLoad(_Load):
    """The workload on the current version: the baseline the new version is judged against."""

    name = "baseline-load"
    title = "Baseline workload on the current version"
    phase = "baseline"


class CandidateLoad(_Load):
    """The same workload on the new version, with redelivered confirmations."""

    name = "candidate-load"
    title = "Workload on the new version"
    phase = "candidate"
