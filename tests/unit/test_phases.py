"""Phases that tell the truth: the plan's order, phase-relative fault windows, the paired step's
preconditions and the twins' counters per phase."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from plantstage.rehearsal.steps import StepFailed, default_plan
from plantstage.rehearsal.steps.load import PairedLoad, TwinCounters, _twin_signal, meters_for
from plantstage.spec.twins import FaultPlanSpec, FaultRule
from plantstage.spec.workload import Workload
from plantstage.twins.faults import FaultInjector, FaultLog


def test_the_plan_runs_old_then_both_then_new_alone():
    names = [s.name for s in default_plan()]
    order = ["parity", "verify-artifacts", "twins", "provision", "twins-ready",
             "baseline-load", "backup", "migrate", "deploy", "paired-load", "switch",
             "smoke", "candidate-load", "rollback-drill", "reconcile", "twins-check", "gates"]
    assert [n for n in names if n in order] == order  # other steps may sit between
    assert names.index("paired-load") == names.index("deploy") + 1
    assert names.index("switch") == names.index("paired-load") + 1
    phases = {s.name: getattr(s, "phase", None) for s in default_plan()}
    assert phases["baseline-load"] == "baseline" and phases["paired-load"] == "paired"
    assert phases["candidate-load"] == "candidate"


def _injector(*rules: dict, now: list[float]) -> tuple[FaultInjector, FaultLog]:
    log = FaultLog(t0=1000.0)
    plan = FaultPlanSpec(seed=1, rules=[FaultRule(**r) for r in rules])
    return FaultInjector("wms", plan, log, clock=lambda: now[0]), log


def _phase(log: FaultLog, name: str | None, at: float | None) -> None:
    log.phase, log.phase_at = name, at


def test_a_fault_window_counts_from_the_start_of_its_phase():
    now = [0.0]
    inj, log = _injector({"kind": "outage", "start": 0.5, "duration": 1.0, "during": "paired"},
                         now=now)
    now[0] = 10.7
    assert inj.outage_left("http") == 0.0  # no phase running
    _phase(log, "baseline", 1010.0)
    assert inj.outage_left("http") == 0.0  # another phase
    _phase(log, "paired", 1010.0)  # started 10 s after t0
    now[0] = 10.2
    assert inj.outage_left("http") == 0.0  # 0.2 s into the phase: not yet
    now[0] = 10.7
    assert inj.outage_left("http") == pytest.approx(0.8)
    assert inj.decide("http", "k1").outage == pytest.approx(0.8)
    now[0] = 11.6
    assert inj.outage_left("http") == 0.0  # over
    assert [e.phase for e in log.events()] == ["paired"]


def test_all_means_every_load_phase_and_every_repeats():
    now = [0.0]
    inj, log = _injector({"kind": "outage", "start": 1, "duration": 0.5, "every": 2,
                          "during": "all"}, now=now)
    for phase in ("baseline", "paired", "candidate"):
        _phase(log, phase, 1100.0)
        now[0] = 100.0 + 1.2
        assert inj.outage_left("http") == pytest.approx(0.3), phase
        now[0] = 100.0 + 1.6
        assert inj.outage_left("http") == 0.0
        now[0] = 100.0 + 5.1  # 1 + 2·2 = 5: the third window
        assert inj.outage_left("http") == pytest.approx(0.4)
    # Without `during`, `every` repeats on the run's one timeline.
    inj, log = _injector({"kind": "duplicate", "start": 0, "duration": 1, "every": 3},
                         now=now)
    now[0] = 6.5
    assert inj.decide("l", "a").copies == 2
    now[0] = 7.5
    assert inj.decide("l", "a").copies == 1


def test_phase_hooks_on_the_fault_log():
    log = FaultLog()
    log.phase_started("candidate")
    assert log.phase == "candidate" and log.phase_at is not None
    log.phase_ended()
    assert log.phase is None and log.phases[0]["phase"] == "candidate"
    assert log.phases[0]["end"] >= log.phases[0]["start"]


def test_fault_rule_fields():
    assert FaultRule(kind="drop", during="n-1").during == "paired"
    with pytest.raises(ValidationError, match="shorter than 'every'"):
        FaultRule(kind="drop", every=2)
    with pytest.raises(ValidationError, match="shorter than 'every'"):
        FaultRule(kind="drop", start=0, duration=3, every=2)
    with pytest.raises(ValidationError):
        FaultRule(kind="drop", during="rollback")


class _Proc:
    def __init__(self, alive: bool):
        self._alive = alive
        self.base_url = "http://127.0.0.1:9"

    def alive(self) -> bool:
        return self._alive


def _ctx(workload: Workload, *, blue: bool, green: bool):
    return SimpleNamespace(spec=SimpleNamespace(workload=workload), blue=_Proc(blue),
                           green=_Proc(green), twin_set=None, cost_probe=None)


def test_the_paired_step_needs_both_versions_running():
    wl = Workload(paired={"enabled": False})
    assert "skipped" in PairedLoad().run(_ctx(wl, blue=True, green=True))
    wl = Workload()
    with pytest.raises(StepFailed, match="old version stopped"):
        PairedLoad().run(_ctx(wl, blue=False, green=True))
    with pytest.raises(StepFailed, match="new version is not running"):
        PairedLoad().run(_ctx(wl, blue=True, green=False))
    assert PairedLoad().duration(_ctx(Workload(duration=3), blue=True, green=True)) == 6
    assert PairedLoad().duration(_ctx(Workload(paired={"duration": 4}), blue=True,
                                      green=True)) == 4


def test_twin_counters_are_a_meter_named_per_component_and_phase():
    class Twins:
        def counters(self):
            return {"wms": {"movements": 4.0}, "mes.line-1": {"acks": 2.0}}

    probe = TwinCounters(Twins())
    read = probe.read()
    names = sorted(_twin_signal("baseline", k) for k in read)
    assert names == ["twins.mes.line-1.baseline.acks", "twins.wms.baseline.movements"]
    assert _twin_signal("paired.old", next(iter(read))) == "twins.wms.paired.old.movements"
    ctx = SimpleNamespace(twin_set=Twins(), cost_probe=None)
    assert len(meters_for(ctx)) == 1

    class Cost:
        def read(self):
            return {"statements": 1.0}

    ctx.cost_probe = Cost()
    meters = meters_for(ctx)
    assert len(meters) == 2 and meters[0].name("candidate", "statements") == \
        "cost.candidate.statements"
