"""The workload steps: the current version alone (baseline), old and new side by side in
alternating blocks (paired), and the new version alone after the switch (candidate).

Every phase writes into the run's signal store (``ctx.signal_store()``), which mirrors its values
into ``ctx.signals`` for the gates; raw latency samples go to the store's ``samples`` table for
the judge. Around each phase the steps also read counter probes (the run's cost probe and the
twins' counters) and tell the twins' fault log which phase runs, so fault windows can be
declared relative to a phase (``during:``).
"""

from __future__ import annotations

from typing import Any

from plantstage.rehearsal.steps import Step, StepFailed
from plantstage.workload.engine import CounterProbe, Meter, Paired, describe, run_phase
from plantstage.workload.monitors import MonitorSampler, sampler_for
from plantstage.workload.plan import build_lanes, tenant_data_where
from plantstage.workload.queues import QueueProbe

_SEP = "\x1f"


def _queue_probe(ctx) -> QueueProbe:
    """Queue depths of the twins' broker and the MES line twins (empty without twins)."""
    return QueueProbe.for_twins(ctx.twin_set) or QueueProbe()


class TwinCounters:
    """The running twins' counters as one probe (``<component>\\x1f<counter>`` keys)."""

    def __init__(self, twin_set: Any):
        self.twin_set = twin_set

    def read(self) -> dict[str, float]:
        return {f"{comp}{_SEP}{k}": v for comp, counters in self.twin_set.counters().items()
                for k, v in counters.items()}


def _twin_signal(scope: str, key: str) -> str:
    """``twins.<component>.<phase>.<counter>`` (scope ``paired.old`` → per version)."""
    comp, _, counter = key.partition(_SEP)
    return f"twins.{comp}.{scope}.{counter}"


def cost_probe(ctx) -> CounterProbe | None:
    """The run's cost probe: ``ctx.cost_probe`` when a step set one, else what
    ``plantstage.signals.cost.probe_for(ctx)`` makes (None when there is none)."""
    probe = getattr(ctx, "cost_probe", None)
    if probe is not None:
        return probe
    try:
        from plantstage.signals import cost
    except ImportError:
        return None
    make = getattr(cost, "probe_for", None)
    return make(ctx) if make is not None else None


def monitors_for(ctx, phase: str, lanes) -> MonitorSampler | None:
    """The spec's business transaction monitors on a read-only engine on staging; None when
    the spec declares none or staging has no database.

    Probed before the baseline, on production's schema: a query that fails there is the
    spec's mistake, and fails the step naming its file:line before any load. After the
    migration a failing query may be the release's doing (a renamed column): the phase runs
    and its failed samples are counted, with the first error in the step's results.
    """
    if ctx.staging_db is None:
        return None
    sampler = sampler_for(ctx.loaded, ctx.staging_db.readonly_engine, phase,
                          sorted({ln.tenant for ln in lanes}), ctx.signal_store())
    if sampler is not None and phase == "baseline":
        try:
            sampler.probe()
        except BaseException:
            sampler.stop()
            raise
    return sampler


def meters_for(ctx) -> list[Meter]:
    out: list[Meter] = []
    probe = cost_probe(ctx)
    if probe is not None:
        out.append(Meter(probe))
    if ctx.twin_set is not None and hasattr(ctx.twin_set, "counters"):
        out.append(Meter(TwinCounters(ctx.twin_set), _twin_signal))
    return out


class _Load(Step):
    phase = "baseline"
    version = "old"

    def target(self, ctx) -> tuple[str, Paired | None]:
        """Where the load goes: one URL, or the paired phase's two."""
        return ctx.router.url, None

    def duration(self, ctx) -> float | None:
        return None  # the workload's

    def run(self, ctx):
        wl = ctx.spec.workload
        loaded = ctx.loaded
        lanes = build_lanes(loaded)
        if not lanes:
            return {"skipped": "no workload flows declared"}
        base_url, paired = self.target(ctx)
        store = ctx.signal_store()
        server = None
        if wl.metrics_port is not None:  # before the monitors: a taken port leaks nothing
            from plantstage.signals import MetricsServer

            server = MetricsServer(store, wl.metrics_port)
        try:
            monitors = monitors_for(ctx, self.phase, lanes)
        except BaseException:
            if server is not None:
                server.stop()
            raise
        ts = ctx.twin_set
        on_start = (lambda: ts.phase_started(self.phase)) \
            if ts is not None and hasattr(ts, "phase_started") else None
        on_end = ts.phase_ended if on_start is not None else None
        if monitors is not None:
            if server is not None:
                server.watch(monitors)
            twins_start = on_start

            def on_start() -> None:  # sample from the phase's first iteration on
                monitors.start()
                if twins_start is not None:
                    twins_start()
        try:
            result = run_phase(
                base_url, wl, [], self.phase, self.duration(ctx), lanes=lanes, store=store,
                database_url=ctx.staging_db.app_url() if ctx.staging_db is not None else None,
                mqtt_url=ctx.placeholders.get("mqtt_url"), twin_set=ts,
                progress=getattr(ctx, "progress", None), queues=_queue_probe(ctx),
                data_where=tenant_data_where(loaded), version=self.version, paired=paired,
                meters=meters_for(ctx), on_start=on_start, on_end=on_end)
        finally:
            if monitors is not None:
                monitors.stop()  # the phase's monitor.* signals, into the store
            if server is not None:
                server.stop()
            if on_end is not None and getattr(ts.log, "phase", None) == self.phase:
                on_end()  # the phase failed before its end: close its fault windows
        out = describe(result)
        if monitors is not None:
            out["monitors"] = monitors.describe()
        from plantstage.signals.cost import finish_phase

        finish_phase(ctx, self.phase, out)  # late counters, cost.<phase>.unmeasured, report
        if result.signals().get(f"workload.{self.phase}.iterations", 0) == 0:
            raise StepFailed("the workload completed no iteration", out)
        return out


class BaselineLoad(_Load):
    """The workload on the current version: the baseline the new version is judged against."""

    name = "baseline-load"
    title = "Baseline workload on the current version"
    phase = "baseline"
    version = "old"


class PairedLoad(_Load):
    """Old (on the migrated schema: N-1) and new side by side, the same traffic in alternating
    blocks at the same time, each version driven directly at its own URL."""

    name = "paired-load"
    title = "Paired workload: old (N-1 on the new schema) and new, alternating blocks"
    phase = "paired"

    def target(self, ctx) -> tuple[str, Paired | None]:
        p = ctx.spec.workload.paired
        return ctx.green.base_url, Paired(ctx.blue.base_url, ctx.green.base_url, p.block,
                                          p.warmup)

    def duration(self, ctx) -> float | None:
        wl = ctx.spec.workload
        return wl.paired.duration if wl.paired.duration is not None else 2 * wl.duration

    def run(self, ctx):
        if not ctx.spec.workload.paired.enabled:
            return {"skipped": "workload.paired.enabled is false"}
        if str(getattr(getattr(ctx, "release", None), "strategy", "")) == "recreate":
            # Stop the world: the old version stopped before the migration, so the two never
            # run at once; gates that compare them are judged not applicable (docs/strategies.md).
            return {"skipped": "strategy recreate: the old version was stopped before the "
                    "migration, so old and new never run at once (gates that compare them "
                    "are not applicable)", "strategy": "recreate"}
        if ctx.green is None or not ctx.green.alive():
            raise StepFailed("the new version is not running beside the old one")
        if ctx.blue is None or not ctx.blue.alive():
            raise StepFailed("the old version stopped before the paired phase (N-1: it must "
                             "keep running on the migrated schema)")
        out = super().run(ctx)
        s = ctx.signals
        old_rate = s.get("workload.paired.old.error_rate", 0.0)
        out["n_minus_1"] = {"old_error_rate": round(old_rate, 4),
                            "new_error_rate": round(s.get("workload.paired.new.error_rate",
                                                          0.0), 4)}
        return out


class CandidateLoad(_Load):
    """The same workload on the new version alone, after the switch (its consumers too)."""

    name = "candidate-load"
    title = "Workload on the new version alone"
    phase = "candidate"
    version = "new"
