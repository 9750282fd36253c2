"""CEL gates, the built-in library, scoring, signoff judgement and the signal catalogue."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plantstage.errors import SpecError
from plantstage.gates.cel import CelSyntaxError, compile_expr, signal_refs
from plantstage.gates.evaluate import evaluate_gate, score
from plantstage.gates.judge import judge
from plantstage.gates.stats import mann_whitney, mann_whitney_worse
from plantstage.signals import SignalStore
from plantstage.spec.gates import Gate, Scoring
from plantstage.spec.loader import parse_spec_text
from tests.conftest import EXAMPLE


def G(**kw) -> Gate:
    return Gate.model_validate({"name": "g", **kw})


def test_cel_pass_warn_fail():
    g = G(value='signal("workload.candidate.error_rate")', **{"pass": "value <= 0.01"},
          warn="value <= 0.05")
    assert evaluate_gate(g, {"workload.candidate.error_rate": 0.0}).outcome == "pass"
    assert evaluate_gate(g, {"workload.candidate.error_rate": 0.03}).outcome == "warn"
    r = evaluate_gate(g, {"workload.candidate.error_rate": 0.2})
    assert r.outcome == "fail" and r.value == pytest.approx(0.2)


def test_missing_data_is_inconclusive_even_when_cel_would_absorb_the_error():
    g = G(**{"pass": 'signal("rollback.rows_lost") <= 0.0 || true'})
    r = evaluate_gate(g, {})
    assert r.outcome == "inconclusive" and "no data for rollback.rows_lost" in r.reason


def test_too_few_samples_is_inconclusive():
    g = G(**{"pass": 'signal("workload.candidate.f.p95_ms") <= 100.0'}, min_samples=5)
    sig = {"workload.candidate.f.p95_ms": 10.0, "workload.candidate.f.count": 2.0}
    assert "too few samples" in evaluate_gate(g, sig).reason
    sig["workload.candidate.f.count"] = 50.0
    assert evaluate_gate(g, sig).outcome == "pass"


def test_expression_type_error_is_inconclusive_not_pass():
    g = G(**{"pass": 'signal("rollback.rows_lost") == 0'})  # double == int: no overload
    r = evaluate_gate(g, {"rollback.rows_lost": 0.0})
    assert r.outcome == "inconclusive" and "expression error" in r.reason


def test_baseline_and_last_go():
    g = G(**{"pass": 'signal("workload.candidate.f.p95_ms") <= '
             'baseline("workload.candidate.f.p95_ms") * 1.1 && '
             'signal("workload.candidate.f.p95_ms") <= last_go("workload.candidate.f.p95_ms")'
             ' * 1.1'})
    sig = {"workload.candidate.f.p95_ms": 105.0, "workload.baseline.f.p95_ms": 100.0}
    assert "no earlier GO" in evaluate_gate(g, sig).reason
    assert evaluate_gate(g, sig, last_go={"workload.candidate.f.p95_ms": 100.0}).outcome \
        == "pass"
    assert evaluate_gate(g, sig, last_go={"workload.candidate.f.p95_ms": 50.0}).outcome \
        == "fail"


def test_mann_whitney_judge():
    base = [10.0 + (i % 7) for i in range(60)]
    same = [10.0 + ((i + 3) % 7) for i in range(60)]
    slower = [v + 6 for v in base]
    assert not mann_whitney_worse(base, same)
    assert mann_whitney_worse(base, slower)
    _, p, delta = mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert delta == 1.0 and p < 0.05
    g = G(**{"pass": '!mw_worse(samples("workload.baseline.f.p95_ms"), '
             'samples("workload.candidate.f.p95_ms"), 0.05, 0.3)'}, min_samples=10)
    series = {"workload.baseline.f.p95_ms": list(enumerate(base)),
              "workload.candidate.f.p95_ms": list(enumerate(slower))}
    assert evaluate_gate(g, {}, series=series).outcome == "fail"
    series["workload.candidate.f.p95_ms"] = series["workload.candidate.f.p95_ms"][:3]
    assert "too few samples" in evaluate_gate(g, {}, series=series).reason


@pytest.mark.parametrize("use,params,signals,outcome", [
    ("restore-within-rto", {"rto_s": 60}, {"rollback.seconds": 12.0}, "pass"),
    ("restore-within-rto", {"rto_s": 10}, {"rollback.seconds": 12.0}, "fail"),
    ("reconciliation-zero", {}, {"reconcile.a.mismatches": 0.0, "reconcile.b.mismatches": 2.0},
     "fail"),
    ("reconciliation-zero", {}, {}, "inconclusive"),
    ("order-throughput", {"flow": "sales-order-import", "max_drop_pct": 20},
     {"workload.candidate.sales-order-import.rate": 9.0,
      "workload.baseline.sales-order-import.rate": 10.0}, "pass"),
    ("inventory-update-success-rate", {"flow": "inventory-adjustment"},
     {"workload.candidate.inventory-adjustment.errors": 5.0,
      "workload.candidate.inventory-adjustment.count": 100.0}, "fail"),
    ("zero-critical-integration-failures", {}, {"twins.failures": 0.0}, "pass"),
    ("latency-percentile", {"flow": "f", "max_ms": 200},
     {"workload.candidate.f.p95_ms": 150.0, "workload.baseline.f.p95_ms": 140.0}, "pass"),
    ("confirmation-timing", {"flow": "work-order-to-stock"},
     {"workload.candidate.work-order-to-stock.e2e_p95_ms": 900.0,
      "workload.baseline.work-order-to-stock.e2e_p95_ms": 300.0}, "fail"),
])
def test_builtin_library(use, params, signals, outcome):
    assert evaluate_gate(G(use=use, params=params), signals).outcome == outcome


def test_queue_depth_builtin_reads_series():
    g = G(use="queue-depth-recovered", params={"tolerance": 2})
    series = {"workload.baseline.in_flight": [(1, 9.0), (2, 1.0)],
              "workload.candidate.in_flight": [(5, 20.0), (6, 2.0)]}
    assert evaluate_gate(g, {}, series=series).outcome == "pass"
    series["workload.candidate.in_flight"].append((7, 8.0))
    assert evaluate_gate(g, {}, series=series).outcome == "fail"


def test_bad_gates_are_spec_errors():
    with pytest.raises(ValueError, match="does not parse at column 7: the expression ends after"):
        G(**{"pass": "value <= "})
    with pytest.raises(ValueError, match="no built-in gate 'nope'"):
        G(use="nope")
    with pytest.raises(ValueError, match="needs rto_s"):
        G(use="restore-within-rto")
    with pytest.raises(ValueError, match="order-throughput needs flow in its params"):
        G(use="order-throughput")
    with pytest.raises(ValueError, match="exactly one of"):
        G(signal="x", max=1, **{"pass": "true"})
    with pytest.raises(CelSyntaxError):
        compile_expr("signal(")
    refs = signal_refs('signal("a.b") + baseline("workload.candidate.x.p95_ms")')
    assert [(r.function, r.name, r.column) for r in refs] == [
        ("signal", "a.b", 8), ("baseline", "workload.candidate.x.p95_ms", 26)]


def test_score_and_key_veto():
    rs = [evaluate_gate(G(name=f"k{i}", signal="s", max=1, weight=1), {"s": 0.0})
          for i in range(3)]
    soft = evaluate_gate(G(name="soft", signal="s", max=-1, key=False, weight=1), {"s": 0.0})
    sc = score([*rs, soft], Scoring())
    assert sc.pct == 75.0 and sc.result == "warning" and not sc.vetoes
    hard = evaluate_gate(G(name="hard", signal="nothing", max=1), {})
    assert score([*rs, hard]).vetoes == ["hard"]
    assert score([*rs, hard]).result == "fail"


def _spec(extra: str = "", signoffs: str = ""):
    text = (EXAMPLE / "plantstage.yaml").read_text()
    if signoffs:
        start = text.index("signoffs:\n")
        end = text.index("\n# Production → staging refresh")
        text = text[:start] + signoffs + text[end:]
    return parse_spec_text(text + extra, EXAMPLE / "plantstage.yaml").spec


CLEAN = {"reconcile.confirmations-posted-once.mismatches": 0.0,
         "reconcile.ledger-matches-on-hand.mismatches": 0.0, "rollback.rows_lost": 0.0,
         "reconcile.stock-unchanged-by-upgrade.mismatches": 0.0,
         "rollback.seconds": 3.0, "twins.failures": 0.0,
         "workload.candidate.sales-order-import.p95_ms": 500.0,
         "workload.baseline.sales-order-import.p95_ms": 450.0,
         "workload.candidate.sales-order-import.p50_ms": 180.0,
         "workload.baseline.sales-order-import.p50_ms": 160.0,
         "workload.candidate.sales-order-import.rate": 3.0,
         "workload.baseline.sales-order-import.rate": 3.0,
         "workload.candidate.error_rate": 0.0,
         "workload.candidate.production-confirmation.confirmations_posted": 20.0,
         "rollback.values_lost": 0.0, "rollback.columns_lost": 0.0,
         "workload.paired.old.error_rate": 0.0,
         "twins.wms.baseline.requests": 30.0, "workload.baseline.iterations": 60.0,
         "twins.wms.candidate.requests": 33.0, "workload.candidate.iterations": 60.0,
         "rbac.violations": 0.0, "rbac.gained": 0.0, "secrets.found": 0.0,
         "isolation.leaks": 0.0, "isolation.object_leaks": 0.0,
         # the rollback drill's recovery, judged by the gates the spec's objectives imply
         "recovery.rto_seconds": 12.0, "recovery.rpo_lost": 0.0,
         # business transaction monitors sampled while the new version ran alone
         "monitor.candidate.posting-failures.max": 0.0,
         "monitor.candidate.work-order-backlog-age.max": 0.2,
         "monitor.candidate.confirmation-to-stock-lag.max": 1.0}
SERIES = {"workload.baseline.in_flight": [(1, 3.0)], "workload.candidate.in_flight": [(9, 2.0)]}
STEPS = [{"name": "provision", "status": "passed"}]


def _paired(old_ms: float = 150.0, new_ms: float = 160.0, n: int = 12) -> SignalStore:
    """Paired-phase imports: old in even blocks, new in odd ones, a little spread."""
    s = SignalStore()
    for version, base, first in (("old", old_ms, 0), ("new", new_ms, 1)):
        s.add_samples("paired", version, "sales-order-import",
                      [(first + 2 * (i % 5), i * 0.4, base * (0.8 + 0.04 * i), True)
                       for i in range(n)])
    return s


def _judge(spec, signals=CLEAN, **kw):
    kw.setdefault("samples", _paired())
    # Each declared effect gets a key gate (effect-<name>): a clean run lost and duplicated none.
    clean_effects = {f"effects.{e.name}.{k}": 0.0 for e in getattr(spec, "effects", []) or []
                     for k in ("lost", "duplicated")}
    return judge(spec, signals={**clean_effects, **signals}, series=SERIES, steps=STEPS,
                 status="completed", release_name="1.1.0", **kw)


def test_sample_spec_is_go_with_no_signoff_required():
    j = _judge(_spec())
    assert j.verdict == "GO", j.reasons
    assert not [g.name for g in j.gates if g.outcome != "pass"]
    assert {s["state"] for s in j.signoffs} == {"not required this run"}
    imp = next(g for g in j.gates if g.name == "import-latency")
    assert imp.outcome == "pass" and imp.interval and "new/old median ratio" in imp.decision


def test_sample_spec_slow_import_is_no_go_and_too_few_is_inconclusive():
    j = _judge(_spec(), samples=_paired(new_ms=150.0 * 3.5))
    assert j.verdict == "NO-GO" and any("import-latency fail" in r for r in j.reasons)
    j = _judge(_spec(), samples=_paired(n=4))
    assert j.verdict == "INCONCLUSIVE", j.reasons
    assert "at least 8 per version" in " ".join(j.reasons)
    j = _judge(_spec(), samples=None)  # a run recorded before samples were kept
    assert j.verdict == "INCONCLUSIVE"


def test_inconclusive_never_hides_a_failure_or_a_rejection():
    few = _paired(n=4)
    j = _judge(_spec(), {**CLEAN, "rollback.rows_lost": 3.0}, samples=few)
    assert j.verdict == "NO-GO"  # a measured failure wins over missing data
    j = judge(_spec(), signals=CLEAN, series=SERIES, status="completed", release_name="1.1.0",
              steps=[{"name": "migrate", "status": "failed", "error": "x"}], samples=few)
    assert j.verdict == "NO-GO"
    spec = _spec(signoffs="signoffs:\n  - role: board\n    quorum: 1\n")
    rej = {"role": "board", "by": "a", "decision": "reject", "reason": "no", "at": 1}
    assert _judge(spec, samples=few, records=[rej]).verdict == "NO-GO"
    assert _judge(spec, samples=few).verdict == "INCONCLUSIVE"  # before PENDING


def test_non_key_inconclusive_gates_alone_never_make_no_go():
    rs = [evaluate_gate(G(name="soft", signal="nothing", max=1, key=False), {})]
    assert score(rs).result == "fail"  # 0 % of the score

    class Spec:
        gates = [G(name="soft", signal="nothing", max=1, key=False)]
        reconcile, signoffs, scoring = [], [], None

        def release(self, name):
            return None

    j = judge(Spec(), signals={}, series={}, steps=STEPS, status="completed",
              release_name="r")
    assert j.verdict == "INCONCLUSIVE" and "soft could not decide" in j.reasons[0]


def test_finance_required_when_reconciliation_mismatches():
    j = _judge(_spec(), {**CLEAN, "reconcile.ledger-matches-on-hand.mismatches": 3.0})
    assert j.verdict == "NO-GO"  # the key gate fails first
    fin = next(s for s in j.signoffs if s["role"] == "finance")
    assert fin["required"] and fin["state"] == "pending"


def test_unconditional_role_pending_approve_reject():
    spec = _spec(signoffs="signoffs:\n  - role: board\n    quorum: 2\n")
    assert _judge(spec).verdict == "PENDING"
    one = {"role": "board", "by": "a", "decision": "approve", "reason": "ok", "at": 1}
    two = {**one, "by": "b"}
    assert _judge(spec, records=[one]).verdict == "PENDING"
    assert _judge(spec, records=[one, one]).verdict == "PENDING"  # distinct people
    assert _judge(spec, records=[one, two]).verdict == "GO"
    rej = {**two, "decision": "reject", "reason": "no"}
    j = _judge(spec, records=[one, two, rej])
    assert j.verdict == "NO-GO" and any("rejected by b" in r for r in j.reasons)


def test_waiver_applies_to_non_key_gate_and_expires():
    sig = {**CLEAN, "rollback.seconds": 500.0}  # restore-within-rto (non-key) fails
    spec = _spec()
    j = _judge(spec, sig)
    assert j.verdict == "PENDING"  # non-key gate failed → gates.warned → operations must sign
    waiver = {"gate": "restore-within-rto", "owner": "ops", "reason": "known",
              "expires": "2030-01-01", "at": 1}
    j = _judge(spec, sig, waivers=[waiver], now=datetime(2029, 6, 1, tzinfo=UTC))
    g = next(g for g in j.gates if g.name == "restore-within-rto")
    assert g.outcome == "waived" and j.waivers[0]["state"] == "applied"
    j = _judge(spec, sig, waivers=[waiver], now=datetime(2030, 1, 2, tzinfo=UTC))
    assert next(g for g in j.gates if g.name == "restore-within-rto").outcome == "fail"
    assert j.waivers[0]["state"] == "expired"
    key_waiver = {**waiver, "gate": "rollback-keeps-data"}
    j = _judge(spec, {**sig, "rollback.rows_lost": 3.0}, waivers=[key_waiver],
               now=datetime(2029, 6, 1, tzinfo=UTC))
    assert j.verdict == "NO-GO" and j.waivers[0]["state"] == "not applied: key gate"


def test_check_names_unknown_signal_with_position(tmp_path):
    from plantstage.gates.catalogue import validate
    from plantstage.spec.loader import load_spec

    text = (EXAMPLE / "plantstage.yaml").read_text().replace(
        "signal: reconcile.ledger-matches-on-hand.mismatches",
        "signal: reconcile.ledger-matches-on-hnad.mismatches")
    (tmp_path / "plantstage.yaml").write_text(text)
    with pytest.raises(SpecError) as exc:
        validate(load_spec(tmp_path))
    msg = exc.value.one_line()
    assert "inventory-reconciles" in msg and "ledger-matches-on-hnad" in msg
    assert "plantstage.yaml:" in msg
    validate(load_spec(EXAMPLE))  # the sample spec is clean
