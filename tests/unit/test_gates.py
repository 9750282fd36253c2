import pytest

from plantstage.gates import evaluate_gates, verdict
from plantstage.spec.models import Gate


def test_max_gate_pass_and_fail():
    g = Gate(name="dups", signal="reconcile.dups.mismatches", max=0, cause="duplicate postings")
    assert evaluate_gates([g], {"reconcile.dups.mismatches": 0})[0].outcome == "pass"
    r = evaluate_gates([g], {"reconcile.dups.mismatches": 3})[0]
    assert r.outcome == "fail" and "exceeds" in r.reason and r.cause == "duplicate postings"


def test_missing_signal_is_inconclusive_not_pass():
    g = Gate(name="x", signal="nothing.here", max=1)
    r = evaluate_gates([g], {})[0]
    assert r.outcome == "inconclusive"
    assert verdict([r], steps_ok=True) == "INCONCLUSIVE"  # never GO from no data
    assert verdict([r], steps_ok=False) == "NO-GO"


def test_baseline_comparison_with_noise_floor():
    g = Gate(name="lat", signal="new", baseline="old", max_increase_pct=100,
             min_absolute_increase=50)
    assert evaluate_gates([g], {"new": 60, "old": 20})[0].outcome == "pass"  # +40 ms < floor
    r = evaluate_gates([g], {"new": 400, "old": 100})[0]
    assert r.outcome == "fail" and "+300%" in r.reason
    assert evaluate_gates([g], {"new": 400})[0].outcome == "inconclusive"


def test_verdict_needs_steps_ok():
    g = Gate(name="x", signal="s", min=1)
    rs = evaluate_gates([g], {"s": 2})
    assert verdict(rs, steps_ok=True) == "GO"
    assert verdict(rs, steps_ok=False) == "NO-GO"


def test_builtin_gate_params_of_the_wrong_kind_are_one_clear_error():
    import pydantic

    from plantstage.spec.gates import Gate

    for params, words in (({"max": [1, 2]}, "not a list"), ({"max": "lots"}, "wrong kind")):
        with pytest.raises(pydantic.ValidationError, match=words):
            Gate(name="g", use="error-rate", params=params)
