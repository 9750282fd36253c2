"""``plantstage load``: drive a spec's workload against a running app, standalone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from plantstage.errors import SpecError
from plantstage.signals import MetricsServer, SignalStore, to_csv, to_openmetrics
from plantstage.spec.models import ComponentKind
from plantstage.workload.engine import PhaseResult, Tick, run_phase
from plantstage.workload.plan import build_lanes, tenant_data_where


@dataclass
class LoadOutcome:
    result: PhaseResult
    store: SignalStore
    out: Path | None
    #: Per monitor: its stats and first error (MonitorSampler.describe); why none were sampled.
    monitors: dict = field(default_factory=dict)
    monitors_skipped: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when every iteration succeeded and none was dropped, else 1."""
        s = self.result.signals()
        p = f"workload.{self.result.name}"
        return 0 if s[f"{p}.errors"] == 0 and s[f"{p}.dropped"] == 0 else 1


def _default_target(loaded) -> str:
    spec = loaded.spec
    staging = spec.environments["staging"].bindings
    for name in spec.components_of(ComponentKind.service):
        b = staging.get(name)
        if b is not None and b.url and "{" not in b.url:
            return b.url
    raise SpecError("no workload target: no staging service is bound with a fixed url",
                    where=f"{loaded.path}: environments.staging.bindings",
                    hint="give --target http://HOST:PORT of the running app")


def _monitor_database(loaded, database_url: str | None) -> str | None:
    """Where the monitors read: ``--database-url``, else the staging database's fixed url."""
    if database_url:
        return database_url
    spec = loaded.spec
    staging = spec.environments["staging"].bindings
    for name in spec.components_of(ComponentKind.database):
        b = staging.get(name)
        if b is not None and b.url and "{" not in b.url:
            return b.url
    return None


def load(path: str | Path, *, target: str | None = None, duration: float | None = None,
         rate: float | None = None, tenants: list[str] | None = None, phase: str = "load",
         out: str | Path | None = None, metrics_port: int | None = None,
         database_url: str | None = None, mqtt_url: str | None = None,
         on_tick: Tick | None = None) -> LoadOutcome:
    """Run the workload of the spec at ``path`` against ``target`` for one phase.

    ``duration`` overrides ``workload.duration``; ``rate`` scales every flow so the iterations
    started per second total ``rate``; ``tenants`` limits the tenants driven. With ``out``, the
    signals are kept in ``OUT/signals.sqlite`` and exported as ``signals.csv`` and
    ``signals.om.txt`` (OpenMetrics). ``metrics_port`` serves them for Prometheus while it runs.
    """
    from plantstage.spec.loader import load_spec

    loaded = load_spec(path)
    if duration is not None and duration <= 0:
        raise SpecError("the duration must be positive", where="--duration")
    if rate is not None and rate <= 0:
        raise SpecError("the rate must be positive", where="--rate")
    lanes = build_lanes(loaded, tenants=tenants or None)
    if not lanes:
        raise SpecError("the workload drives nothing", where=f"{loaded.path}: workload",
                        hint="declare workload.flows or archetypes, and estate tenants")
    target = target or _default_target(loaded)
    out_dir = Path(out) if out is not None else None
    store = SignalStore(out_dir / "signals.sqlite" if out_dir else None)
    wl = loaded.spec.workload
    port = metrics_port if metrics_port is not None else wl.metrics_port
    monitors, skipped = None, None
    if loaded.spec.monitors:
        db = _monitor_database(loaded, database_url)
        if db is None:
            skipped = "no --database-url and no staging database with a fixed url"
        else:
            from plantstage.engines import adapter_for
            from plantstage.workload.monitors import sampler_for

            monitors = sampler_for(loaded, adapter_for(db).readonly_engine, phase,
                                   sorted({ln.tenant for ln in lanes}), store)
            try:
                monitors.probe()
            except BaseException:
                monitors.stop()
                raise
    tick = on_tick
    if monitors is not None and on_tick is not None:
        def tick(snap: dict) -> None:
            on_tick({**snap, "monitors": monitors.latest()})
    server = None
    try:
        server = MetricsServer(store, port) if port is not None else None
        if server is not None and monitors is not None:
            server.watch(monitors)
        result = run_phase(target, wl, [], phase, duration, lanes=lanes, store=store,
                           database_url=database_url, mqtt_url=mqtt_url, on_tick=tick,
                           rate=rate, data_where=tenant_data_where(loaded),
                           on_start=monitors.start if monitors is not None else None)
    finally:
        if monitors is not None:
            monitors.stop()
        if server is not None:
            server.stop()
    if out_dir is not None:
        (out_dir / "signals.csv").write_text(to_csv(store))
        (out_dir / "signals.om.txt").write_text(to_openmetrics(store))
    return LoadOutcome(result, store, out_dir,
                       monitors.describe() if monitors is not None else {}, skipped)


def export_signals(run: str | Path, fmt: str = "openmetrics") -> str:
    """A recorded run's signals (run folder or signals.sqlite) as OpenMetrics text or CSV."""
    p = Path(run)
    store = SignalStore.open(p / "signals.sqlite" if p.is_dir() else p)
    if fmt == "csv":
        return to_csv(store)
    if fmt == "openmetrics":
        return to_openmetrics(store)
    raise SpecError(f"unknown format '{fmt}'", where="--format", hint="openmetrics or csv")
