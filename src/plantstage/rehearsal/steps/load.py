"""The workload steps: the same workload on the current version, then on the new one.

Both phases write into the run's signal store (``ctx.signal_store()``), which mirrors its values
into ``ctx.signals`` for the gates; the report compares the two phases per signal.
"""

from __future__ import annotations

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.workload.engine import describe, run_phase
from plantstage.workload.plan import build_lanes, tenant_data_where
from plantstage.workload.queues import QueueProbe


def _queue_probe(ctx) -> QueueProbe:
    """Queue depths of the twins' broker and the MES line twins (empty without twins)."""
    return QueueProbe.for_twins(ctx.twin_set) or QueueProbe()


class _Load(Step):
    phase = "baseline"

    def run(self, ctx):
        wl = ctx.spec.workload
        loaded = ctx.loaded
        lanes = build_lanes(loaded)
        if not lanes:
            return {"skipped": "no workload flows declared"}
        store = ctx.signal_store()
        server = None
        if wl.metrics_port is not None:
            from plantstage.signals import MetricsServer

            server = MetricsServer(store, wl.metrics_port)
        try:
            result = run_phase(
                ctx.router.url, wl, [], self.phase, lanes=lanes, store=store,
                database_url=ctx.staging_db.app_url() if ctx.staging_db is not None else None,
                mqtt_url=ctx.placeholders.get("mqtt_url"), twin_set=ctx.twin_set,
                progress=getattr(ctx, "progress", None), queues=_queue_probe(ctx),
                data_where=tenant_data_where(loaded))
        finally:
            if server is not None:
                server.stop()
        out = describe(result)
        if result.signals().get(f"workload.{self.phase}.iterations", 0) == 0:
            raise StepFailed("the workload completed no iteration", out)
        return out


class BaselineLoad(_Load):
    """The workload on the current version: the baseline the new version is judged against."""

    name = "baseline-load"
    title = "Baseline workload on the current version"
    phase = "baseline"


class CandidateLoad(_Load):
    """The same workload on the new version."""

    name = "candidate-load"
    title = "Workload on the new version"
    phase = "candidate"
