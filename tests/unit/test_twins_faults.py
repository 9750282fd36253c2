"""Faults: deterministic per seed, logged with their time, windows and rates honoured."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from plantstage.spec.twins import FaultPlanSpec, FaultRule, TwinSpec
from plantstage.twins.faults import FaultInjector, FaultLog, corrupt_payload


def _plan(seed: int, *rules: dict) -> FaultPlanSpec:
    return FaultPlanSpec(seed=seed, rules=[FaultRule(**r) for r in rules])


def _timeline(seed: int, keys: list[str]) -> list[tuple]:
    log = FaultLog(t0=0.0)
    inj = FaultInjector("mes", _plan(seed, {"kind": "duplicate", "p": 0.3},
                                     {"kind": "drop", "p": 0.1},
                                     {"kind": "latency", "distribution": "lognormal", "ms": 5},
                                     {"kind": "corrupt", "p": 0.05}),
                        log, clock=lambda: 1.0)
    for k in keys:
        inj.decide("confirmations", k)
    return [(e.key, e.kind, e.detail) for e in log.events()]


def test_same_seed_same_timeline_any_order():
    keys = [f"m{i}" for i in range(300)]
    a = _timeline(7, keys)
    b = _timeline(7, list(reversed(keys)))
    assert sorted(a) == sorted(b)  # decisions follow the message, not the arrival order
    assert {k for _, k, _ in a} >= {"duplicate", "drop", "latency", "corrupt"}
    assert sorted(_timeline(8, keys)) != sorted(a)


def test_probabilities_roughly_hold():
    log = FaultLog(t0=0.0)
    inj = FaultInjector("t", _plan(1, {"kind": "duplicate", "p": 0.2}), log, clock=lambda: 0.0)
    dups = sum(inj.decide("l", f"k{i}").copies - 1 for i in range(2000))
    assert 300 < dups < 500


def test_outage_window_and_link_filter():
    now = [0.0]
    inj = FaultInjector("w", _plan(1, {"kind": "outage", "start": 2, "duration": 1,
                                       "link": "http"}), FaultLog(t0=0.0), clock=lambda: now[0])
    assert inj.decide("http", "a").outage == 0
    now[0] = 2.5
    assert inj.decide("http", "b").outage == pytest.approx(0.5)
    assert inj.outage_left("http") == pytest.approx(0.5)
    assert inj.decide("callbacks", "c").outage == 0  # another link is up
    now[0] = 3.0
    assert inj.decide("http", "d").clean


def test_slow_consumer_builds_a_backlog():
    inj = FaultInjector("w", _plan(1, {"kind": "slow-consumer", "rate": 10}), FaultLog(t0=0.0),
                        clock=lambda: 0.0)
    delays = [inj.decide("http", f"k{i}").delay for i in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_events_carry_time_in_run():
    now = [4.25]
    log = FaultLog(t0=100.0)
    inj = FaultInjector("m", _plan(1, {"kind": "drop"}), log, clock=lambda: now[0])
    inj.decide("confirmations", "x")
    (e,) = log.events()
    assert e.kind == "drop" and e.twin == "m" and e.key == "x"
    assert log.counts() == {"m": {"drop": 1}}


def test_corrupt_is_deterministic_and_damages():
    payload = b'{"message_id": "m1", "good_qty": 5}'
    assert corrupt_payload(payload, "k") == corrupt_payload(payload, "k")
    assert corrupt_payload(payload, "k") != payload


@pytest.mark.parametrize("rule, msg", [
    ({"kind": "outage"}, "start"),
    ({"kind": "slow-consumer"}, "rate"),
    ({"kind": "latency"}, "ms"),
    ({"kind": "teleport"}, "kind"),
])
def test_fault_rules_validate(rule, msg):
    with pytest.raises(ValidationError, match=msg):
        FaultRule(**rule)


def test_twin_spec_validates():
    with pytest.raises(ValidationError, match="replay"):
        TwinSpec(kind="replay")
    with pytest.raises(ValidationError):
        TwinSpec(kind="historian")
