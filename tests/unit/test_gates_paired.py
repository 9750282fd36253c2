"""The paired comparison (Hodges–Lehmann ratio with a Mann–Whitney interval) and its gates."""

from __future__ import annotations

import math
import random
from itertools import combinations

import pytest

from plantstage.gates.evaluate import evaluate_gate
from plantstage.gates.judge import INCONCLUSIVE, judge
from plantstage.gates.paired import _u_counts, compare, hodges_lehmann, rank_of_bound
from plantstage.signals import SignalStore
from plantstage.spec.gates import Gate


def lognormal(rng: random.Random, n: int, median_ms: float, sigma: float) -> list[float]:
    return [median_ms * math.exp(rng.gauss(0, sigma)) for _ in range(n)]


def test_u_distribution_is_the_count_of_orderings():
    for m, n in ((1, 1), (3, 4), (6, 6)):
        counts = _u_counts(m, n)
        brute = [0] * (m * n + 1)
        for xs in combinations(range(m + n), m):  # positions of the x sample in the ordering
            rest = [i for i in range(m + n) if i not in xs]
            brute[sum(1 for y in rest for x in xs if x < y)] += 1
        assert list(counts) == brute


def test_rank_of_bound_matches_the_tables():
    # Critical values of U (two-sided 5 %): 2 for 5×5, 23 for 10×10 → k = U + 1.
    assert rank_of_bound(5, 5, 0.95) == 3
    assert rank_of_bound(10, 10, 0.95) == 24
    assert rank_of_bound(3, 3, 0.95) == 0  # no 95 % interval from 3 + 3 samples
    # Above the exact limit the normal approximation continues the exact values smoothly.
    assert abs(rank_of_bound(50, 50, 0.95) - rank_of_bound(51, 51, 0.95)) < 50


def test_hodges_lehmann_of_a_pure_shift():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    est, lo, hi = hodges_lehmann(x, [v + 10 for v in x])
    assert est == 10 and lo is not None and hi is not None and lo < 10 < hi


def test_equal_distributions_with_heavy_noise_pass():
    rng = random.Random(1)
    old = lognormal(rng, 40, 150, 0.8)  # p95 ≈ 3.7 × the median
    new = lognormal(rng, 40, 150, 0.8)
    r = compare(old, new, max_ratio=2.0)
    assert r.decision == "pass", r.text
    assert 0.6 < r.ratio < 1.6 and r.high <= 2.0
    assert r.text.startswith("new/old median ratio ") and "→ pass" in r.text


def test_three_times_slower_fails():
    rng = random.Random(2)
    old = lognormal(rng, 15, 150, 0.5)
    new = lognormal(rng, 15, 450, 0.5)
    r = compare(old, new, max_ratio=2.0)
    assert r.decision == "fail" and r.low > 2.0 and 2.2 < r.ratio < 4.2, r.text


def test_tiny_samples_are_inconclusive_and_say_how_many():
    r = compare([100, 120, 110], [300, 320, 310], max_ratio=2.0)
    assert r.decision == "inconclusive" and r.needed == 8
    assert "at least 8 per version" in r.text and r.interval is None


def test_straddling_interval_is_inconclusive_with_a_sample_size_hint():
    rng = random.Random(3)
    old = lognormal(rng, 10, 100, 0.9)
    new = lognormal(rng, 10, 200, 0.9)  # truly 2×: right at the threshold of 1.5
    r = compare(old, new, max_ratio=1.5)
    assert r.decision == "inconclusive" and r.low < 1.5 < r.high
    assert "straddles" in r.text


def test_bursty_noise_hitting_both_versions_alike_passes():
    """A neighbour burns the CPU for a few seconds at a time: every request in a burst is 3–6×
    slower. The paired phase alternates 1 s blocks, so bursts land on both versions."""
    rng = random.Random(4)
    old, new = [], []
    busy_until, t = -1.0, 0.0
    burst = 1.0
    for block in range(24):
        version = old if block % 2 == 0 else new
        for i in range(3):
            t = block + i / 3
            if t >= busy_until:  # a new busy or idle period
                busy = rng.random() < 0.5
                busy_until = t + rng.uniform(3, 10)
                burst = rng.uniform(3, 6) if busy else 1.0
            version.append(120 * math.exp(rng.gauss(0, 0.3)) * burst)
    # Unpaired, the same medians measured minutes apart would read as a 3× regression
    # whenever one phase met the neighbour and the other did not.
    r = compare(old, new, max_ratio=2.0, blocks=(12, 12))
    assert r.decision == "pass", r.text


def test_floor_ms_absorbs_small_absolute_increases():
    rng = random.Random(5)
    old = lognormal(rng, 30, 4, 0.2)
    new = lognormal(rng, 30, 12, 0.2)  # 3× slower, but +8 ms
    assert compare(old, new, max_ratio=2.0).decision == "fail"
    r = compare(old, new, max_ratio=2.0, floor_ms=20)
    assert r.decision == "pass" and r.limit > 5 and "20 ms floor" in r.text


def test_p95_comparison_is_seeded_and_needs_more_samples():
    rng = random.Random(6)
    old = lognormal(rng, 60, 100, 0.4)
    new = lognormal(rng, 60, 100, 0.4)
    a = compare(old, new, max_ratio=2.0, stat="p95")
    b = compare(old, new, max_ratio=2.0, stat="p95")
    assert a == b and a.decision == "pass"
    assert compare(old[:10], new[:10], max_ratio=2.0, stat="p95").needed == 20


def test_too_few_blocks_is_inconclusive():
    rng = random.Random(7)
    r = compare(lognormal(rng, 20, 100, 0.2), lognormal(rng, 20, 100, 0.2), max_ratio=2.0,
                blocks=(1, 1))
    assert r.decision == "inconclusive" and "too few blocks" in r.text


# -- the built-in gates ------------------------------------------------------------------------

def _store(old: list[float], new: list[float], flow: str = "f") -> SignalStore:
    s = SignalStore()
    s.add_samples("paired", "old", flow, [(2 * (i % 6), i * 0.1, v, True)
                                          for i, v in enumerate(old)])
    s.add_samples("paired", "new", flow, [(2 * (i % 6) + 1, i * 0.1, v, True)
                                          for i, v in enumerate(new)])
    return s


def G(**kw) -> Gate:
    return Gate.model_validate({"name": "lat", **kw})


def test_paired_latency_gate_reads_the_samples():
    rng = random.Random(8)
    g = G(use="paired-latency", params={"flow": "f", "max_ratio": 2.0, "floor_ms": 50})
    ok = evaluate_gate(g, {}, samples=_store(lognormal(rng, 20, 200, 0.3),
                                             lognormal(rng, 20, 210, 0.3)))
    assert ok.outcome == "pass" and ok.effect == ok.value and len(ok.interval) == 2
    assert "new/old median ratio" in ok.decision and "→ pass" in ok.decision
    assert "n = 20 old, 20 new, in 6 + 6 blocks" in ok.decision
    bad = evaluate_gate(g, {}, samples=_store(lognormal(rng, 20, 200, 0.3),
                                              lognormal(rng, 20, 800, 0.3)))
    assert bad.outcome == "fail" and "→ fail" in bad.reason and bad.cause
    assert evaluate_gate(g, {}).outcome == "inconclusive"  # no recording at all
    none = evaluate_gate(g, {}, samples=SignalStore())
    assert none.outcome == "inconclusive" and "no paired samples of f" in none.reason


def test_failed_iterations_are_left_out_of_the_latency():
    s = _store([100.0] * 10, [100.0] * 10)
    s.add_samples("paired", "new", "f", [(1, 0.0, 5.0, False)] * 3)
    r = evaluate_gate(G(use="paired-latency", params={"flow": "f"}), {}, samples=s)
    assert r.outcome == "pass" and "3 failed iterations left out" in r.decision


def test_cost_ratio_gate():
    g = G(use="cost-ratio", params={"counter": "db_statements", "max_ratio": 1.5})
    sig = {"cost.baseline.db_statements.per_iteration": 12.0,
           "cost.candidate.db_statements.per_iteration": 13.0}
    r = evaluate_gate(g, sig)
    assert r.outcome == "pass" and r.interval is None and r.value == pytest.approx(13 / 12)
    r = evaluate_gate(g, {**sig, "cost.candidate.db_statements.per_iteration": 60.0})
    assert r.outcome == "fail" and "new/old db_statements per iteration 5.00" in r.reason
    assert evaluate_gate(g, {}).outcome == "inconclusive"
    paired = G(use="cost-ratio", params={"counter": "rows", "phase": "paired"})
    assert evaluate_gate(paired, {"cost.paired.old.rows.per_iteration": 0.0,
                                  "cost.paired.new.rows.per_iteration": 0.0}).outcome == "pass"


def test_call_amplification_gate():
    g = G(use="call-amplification", params={"twin": "wms", "max_ratio": 2.0})
    sig = {"twins.wms.baseline.requests": 40.0, "workload.baseline.iterations": 100.0,
           "twins.wms.candidate.requests": 50.0, "workload.candidate.iterations": 100.0}
    assert evaluate_gate(g, sig).outcome == "pass"
    storm = {**sig, "twins.wms.candidate.requests": 400.0}
    r = evaluate_gate(g, storm)
    assert r.outcome == "fail" and r.value == pytest.approx(10.0)
    assert "wms requests per iteration 10.00" in r.reason
    # A per-iteration signal the load step wrote is read as it is.
    direct = {**sig, "twins.wms.candidate.requests.per_iteration": 0.45}
    assert evaluate_gate(g, direct).value == pytest.approx(0.45 / 0.4)


@pytest.mark.parametrize("params, problem", [
    ({"flow": "f", "stat": "p99"}, "stat is p50"),
    ({"flow": "f", "max_ratio": "two"}, "max_ratio is a number"),
    ({"flow": "f", "confidence": 1.2}, "confidence"),
    ({}, "needs flow"),
])
def test_bad_paired_params_are_spec_errors(params, problem):
    with pytest.raises(ValueError, match=problem):
        G(use="paired-latency", params=params)


def _judge_with(store, gates):
    class Spec:  # only what judge() reads of a spec
        reconcile, signoffs, scoring = [], [], None

        def release(self, name):
            return None

    spec = Spec()
    spec.gates = gates
    return judge(spec, signals={}, series={}, steps=[{"name": "load", "status": "passed"}],
                 status="completed", release_name="r", samples=store)


def test_verdict_from_the_paired_gate():
    rng = random.Random(9)
    gates = [G(use="paired-latency", params={"flow": "f"})]
    go = _judge_with(_store(lognormal(rng, 20, 100, 0.3), lognormal(rng, 20, 100, 0.3)), gates)
    assert go.verdict == "GO"
    nogo = _judge_with(_store(lognormal(rng, 20, 100, 0.3), lognormal(rng, 20, 400, 0.3)),
                       gates)
    assert nogo.verdict == "NO-GO"
    few = _judge_with(_store([100.0] * 3, [400.0] * 3), gates)
    assert few.verdict == INCONCLUSIVE
    assert "could not decide" in few.reasons[0] and "lat" in few.reasons[0]


def _tenants(rng: random.Random, shift: float, per: int = 5) -> tuple[list[float], list[str]]:
    """Imports of four tenants whose batches differ 12× in size, a little contention noise."""
    values, strata = [], []
    for tenant, median in (("big", 250), ("small", 20), ("mid-1", 60), ("mid-2", 60)):
        for _ in range(per):
            values.append(median * shift * math.exp(rng.gauss(0, 0.5)))
            strata.append(tenant)
    return values, strata


def test_strata_compare_like_with_like():
    """Pooled, the spread between tenants swamps a 3× slowdown; within tenants it does not."""
    rng = random.Random(10)
    old, s_old = _tenants(rng, 1.0)
    new, s_new = _tenants(rng, 3.2)
    pooled = compare(old, new, max_ratio=2.0, floor_ms=50)
    strat = compare(old, new, max_ratio=2.0, floor_ms=50, strata=(s_old, s_new))
    assert pooled.decision == "inconclusive"
    assert strat.decision == "fail" and strat.low > 2.0, strat.text
    same, s_same = _tenants(rng, 1.0)
    assert compare(old, same, max_ratio=2.0, floor_ms=50,
                   strata=(s_old, s_same)).decision == "pass"
    # A stratum only one version met is left out, not compared with another tenant.
    lone = compare(old + [5000.0], new, max_ratio=2.0, strata=(s_old + ["x"], s_new))
    assert lone.n_old == len(old)


def test_stratified_bound_is_the_convolution():
    from plantstage.gates.paired import rank_of_bound_strata

    assert rank_of_bound_strata([(10, 10)], 0.95) == rank_of_bound(10, 10, 0.95)
    # Two strata of 5 + 5: U₁ + U₂ over 0…50; k lies between one 5×5 table's and 10×10's.
    k = rank_of_bound_strata([(5, 5), (5, 5)], 0.95)
    assert 3 < k < 24
    assert rank_of_bound_strata([(0, 4), (3, 0)], 0.95) == 0


def test_gate_reads_strata_from_samples():
    class Recording:  # rows with a fifth field: the tenant that drove the iteration
        def __init__(self, rows):
            self.rows = rows

        def samples(self, phase, flow, version):
            return self.rows.get(version, [])

    rng = random.Random(11)
    old, s_old = _tenants(rng, 1.0)
    new, s_new = _tenants(rng, 3.2)
    rec = Recording({"old": [(2 * (i % 5), 0.0, v, True, s) for i, (v, s)
                             in enumerate(zip(old, s_old, strict=True))],
                     "new": [(2 * (i % 5) + 1, 0.0, v, True, s) for i, (v, s)
                             in enumerate(zip(new, s_new, strict=True))]})
    r = evaluate_gate(G(use="paired-latency", params={"flow": "f", "floor_ms": 50}), {},
                      samples=rec)
    assert r.outcome == "fail", r.decision


def test_check_names_an_unknown_flow_of_a_paired_gate():
    from plantstage.gates.catalogue import gate_problems
    from plantstage.spec.loader import parse_spec_text
    from tests.conftest import EXAMPLE

    text = (EXAMPLE / "plantstage.yaml").read_text()
    assert "params: {flow: sales-order-import, stat: p50" in text
    bad = text.replace("params: {flow: sales-order-import, stat: p50",
                       "params: {flow: sales-order-imprt, stat: p50")
    spec = parse_spec_text(bad, EXAMPLE / "plantstage.yaml").spec
    problems = [msg for _, msg, _ in gate_problems(spec)]
    assert any("import-latency" in m and "no flow 'sales-order-imprt'" in m for m in problems)
    assert not gate_problems(parse_spec_text(text, EXAMPLE / "plantstage.yaml").spec)


def test_inconclusive_exit_code_is_5():
    from pathlib import Path

    from plantstage.errors import EXIT_INCONCLUSIVE
    from plantstage.evidence.cli import _CODES
    from plantstage.rehearsal.runner import RunOutcome

    out = RunOutcome("r", Path("."), "completed", INCONCLUSIVE, {})
    assert out.exit_code == EXIT_INCONCLUSIVE == 5 == _CODES[INCONCLUSIVE]
