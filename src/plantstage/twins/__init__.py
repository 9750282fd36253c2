"""Twins: stateful simulators of the external systems staging cannot own.

One module per twin kind, registered by name in :data:`KINDS`; ``faults.py`` decides and logs
message-level faults; ``record.py``/``replay.py`` capture real traffic and play it back.
:func:`start_twins` starts what a spec's staging bindings ask for on one broker and one fault
timeline; :class:`TwinSet` health-checks and always stops them.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plantstage.errors import SpecError
from plantstage.spec.loader import LoadedSpec
from plantstage.spec.models import ComponentKind, Fidelity
from plantstage.spec.twins import TwinKind, TwinSpec
from plantstage.twins.base import Twin, TwinEnv, TwinError, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.record import AppTraffic

__all__ = ["KINDS", "PlannedTwin", "Twin", "TwinError", "TwinSet", "plan_twins", "start_twins",
           "twin_class"]

#: Twin kind → "module:Class" (imported when used, so asyncua loads only for a PLC twin).
KINDS: dict[str, str] = {
    TwinKind.mes_line.value: "plantstage.twins.mes:MesLineTwin",
    TwinKind.wms.value: "plantstage.twins.wms:WmsTwin",
    TwinKind.supplier_portal.value: "plantstage.twins.supplier:SupplierPortalTwin",
    TwinKind.plc_line.value: "plantstage.twins.plc:PlcLineTwin",
    TwinKind.replay.value: "plantstage.twins.replay:ReplayTwin",
}


def twin_class(kind: str) -> type[Twin]:
    if kind not in KINDS:
        raise TwinError(f"unknown twin kind '{kind}'", where="twin.kind",
                        hint=f"known: {', '.join(sorted(KINDS))}")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class PlannedTwin:
    component: str
    spec: TwinSpec
    where: str


def plan_twins(loaded: LoadedSpec, env: str = "staging") -> list[PlannedTwin]:
    """The twins an environment's bindings ask for, checked against the estate."""
    spec = loaded.spec
    out = []
    lines = _lines(loaded)
    for comp, b in spec.environments[env].bindings.items():
        if b.twin is None:
            continue
        path = f"environments.{env}.bindings.{comp}.twin"
        where = f"{loaded.path}:{lines.get(comp, '?')} ({path})"
        kind = spec.estate.components[comp].kind
        if kind != ComponentKind.external:
            raise SpecError(f"'{comp}' is a {kind.value}, only external components have twins",
                            where=where, hint="remove the twin or mark the component external")
        if b.fidelity != Fidelity.simulated:
            raise SpecError(f"'{comp}' has a twin (and faults) but is not simulated",
                            where=where, hint="set fidelity: simulated on this binding")
        cls = twin_class(b.twin.kind.value)
        for i, rule in enumerate(b.twin.faults.rules):
            if rule.link is not None and rule.link not in cls.links:
                raise SpecError(f"a {cls.kind} twin has no link '{rule.link}'",
                                where=f"{where}.faults.rules[{i}].link",
                                hint=f"links: {', '.join(cls.links)}")
        out.append(PlannedTwin(comp, b.twin, where))
    return out


def _lines(loaded: LoadedSpec) -> dict[str, int]:
    """Line of each staging binding's ``twin:`` key (for messages)."""
    out: dict[str, int] = {}
    comp = None
    in_staging = False
    for n, line in enumerate(loaded.text.splitlines(), start=1):
        s = line.strip()
        if s.startswith("staging:"):
            in_staging = True
        elif in_staging and s.endswith(":") and line.startswith("      ") and \
                not line.startswith("        "):
            comp = s[:-1]
        elif in_staging and comp and s.startswith("twin:") and comp not in out:
            out[comp] = n
        elif in_staging and s and not line.startswith(" "):
            in_staging = False
    return out


@dataclass
class TwinSet:
    """The running twins of one run (or of ``plantstage twins``), on one broker."""

    runtime: TwinRuntime
    broker: Any
    log: FaultLog
    twins: dict[str, Twin] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    stopped: bool = False
    #: Extra loops for slow starters (the OPC UA server), so they never block the others.
    extra_runtimes: list[TwinRuntime] = field(default_factory=list)
    #: The HTTP calls the workload made to the app (what a recovery replays after a restore).
    traffic: AppTraffic = field(default_factory=lambda: AppTraffic())

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for twins still starting in the background (raises their start error)."""
        for t in self.twins.values():
            assert t.runtime is not None
            t.runtime.wait_started(t, timeout)

    def endpoints(self) -> dict[str, dict[str, str]]:
        return {n: t.endpoints() for n, t in self.twins.items()}

    def health(self) -> dict[str, tuple[bool, str]]:
        return {n: t.healthy() for n, t in self.twins.items()}

    def failures(self) -> dict[str, str]:
        return {n: why for n, (ok, why) in self.health().items() if not ok}

    def signals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        counts = self.log.counts()
        for n, t in self.twins.items():
            for k, v in t.signals().items():
                out[f"twins.{n}.{k}"] = v
            for kind, c in counts.get(n, {}).items():
                out[f"twins.{n}.faults.{kind}"] = float(c)
        out["twins.faults"] = float(sum(sum(c.values()) for c in counts.values()))
        out["twins.failures"] = float(len(self.failures()))
        return out

    def section(self) -> dict[str, Any]:
        """The report section: twins, where they listened, state, fault timeline."""
        health = self.health()
        return {
            "broker": {"kind": self.broker.kind, "url": self.broker.url} if self.broker else None,
            "t0": self.log.t0,
            "twins": [{"component": n, "kind": t.kind, "endpoints": t.endpoints(),
                       "healthy": health[n][0], "status": health[n][1], "state": t.state(),
                       "seed": t.spec.faults.seed,
                       "faults": [r.model_dump(exclude_none=True, mode="json")
                                  for r in t.spec.faults.rules]}
                      for n, t in self.twins.items()],
            "timeline": [e.as_dict() for e in self.log.events()],
            "phases": list(self.log.phases),
            "fault_counts": self.log.counts(),
        }

    def get(self, kind: str) -> list[Twin]:
        return [t for t in self.twins.values() if t.kind == kind]

    def phase_started(self, name: str) -> None:
        """A workload phase starts now: fault windows with ``during`` count from here."""
        self.log.phase_started(name)

    def phase_ended(self) -> None:
        """The running workload phase's load stopped (its ``during`` windows close)."""
        self.log.phase_ended()

    def counters(self) -> dict[str, dict[str, float]]:
        """Each twin's counters now (component → counter → value; they only grow in a run)."""
        return {n: t.counters() for n, t in self.twins.items()}

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            for rt in self.extra_runtimes:
                rt.stop()
            self.runtime.stop()
        finally:
            if self.broker is not None:
                self.broker.stop()


def start_twins(loaded: LoadedSpec, planned: list[PlannedTwin] | None = None, *,
                broker_url: str | None = None, app_url: Callable[[], str | None] = lambda: None,
                log: FaultLog | None = None, wait: bool = True) -> TwinSet:
    """Start the broker (embedded unless one is configured) and every planned twin.

    Slow starters (``Twin.slow_start``) start on their own loop; with ``wait=False`` they may
    still be starting on return — call :meth:`TwinSet.wait_ready` before relying on them.
    On any error everything started so far is stopped before the error propagates.
    """
    from plantstage.brokers import open_broker

    planned = plan_twins(loaded) if planned is None else planned
    log = log or FaultLog()
    needs_broker = any(p.spec.kind in (TwinKind.mes_line, TwinKind.replay) for p in planned)
    broker = open_broker(broker_url or _broker_binding(loaded), where="broker") \
        if needs_broker else None
    runtime = TwinRuntime()
    ts = TwinSet(runtime, broker, log, started=log.t0)
    env = TwinEnv(broker_url=broker.url if broker else None, base_dir=loaded.base_dir, log=log,
                  app_url=app_url, peers=ts.twins)
    try:
        # MES lines first: PLC twins attach to them.
        order = sorted(planned, key=lambda p: p.spec.kind != TwinKind.mes_line)
        for p in order:
            twin = twin_class(p.spec.kind.value)(p.component, p.spec, env, where=p.where)
            ts.twins[p.component] = twin
            if twin.slow_start:
                rt = TwinRuntime()
                ts.extra_runtimes.append(rt)
                rt.start_async(twin)
            else:
                runtime.start(twin)
        if wait:
            ts.wait_ready()
    except BaseException:
        ts.stop()
        raise
    return ts


def _broker_binding(loaded: LoadedSpec) -> str | None:
    """A staging broker component bound real with a URL; else None (embedded)."""
    spec = loaded.spec
    for comp in spec.components_of(ComponentKind.broker):
        b = spec.environments["staging"].bindings.get(comp)
        if b is not None and b.fidelity == Fidelity.real and b.url:
            return b.url
    return None
