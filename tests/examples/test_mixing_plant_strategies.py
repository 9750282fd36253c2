"""``strategy: recreate`` on the second stack (Flask, plain SQL, its own migrate command): the
good 2.1.0 upgraded stop-the-world is GO with its downtime measured through the router; the same
upgrade planned into a 0.2 s maintenance window is NO-GO by the implied window gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.test_mixing_plant_rehearsal import app_processes_of, evidence, rehearse

pytestmark = pytest.mark.slow


def test_recreate_release_is_go_with_downtime_measured(tmp_path: Path) -> None:
    out = tmp_path / "2.1.0-recreate"
    r = rehearse("2.1.0-recreate", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    assert ev["verdict"] == "GO", ev["reasons"]
    sig = ev["signals"]
    assert 0 < sig["steps.upgrade.seconds"] <= sig["deploy.downtime_seconds"] < 600
    assert sig["deploy.maintenance_window_seconds"] == 600
    assert sig["migrate.projected_seconds"] >= sig["migrate.seconds"] > 0
    steps = {s["name"]: s for s in ev["steps"]}
    assert steps["migrate"]["results"]["recreate"]["old_stopped"] is True
    assert steps["paired-load"]["results"]["skipped"].startswith("strategy recreate:")
    gates = {g["name"]: g["outcome"] for g in ev["gates"]}
    assert gates["downtime-within-window"] == gates["migration-within-window"] == "pass"
    assert sig["workload.candidate.batch-completion.batches_lost"] == 0
    assert sig["rollback.rows_lost"] == 0
    assert not app_processes_of(out)


def test_downtime_over_the_window_is_no_go_by_the_window_gate(tmp_path: Path) -> None:
    out = tmp_path / "over-window"
    r = rehearse("2.1.0-recreate-over-window", out)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    assert ev["verdict"] == "NO-GO"
    # Every step passed: the window gate alone decides.
    assert all(s["status"] == "passed" for s in ev["steps"]), ev["reasons"]
    gates = {g["name"]: g for g in ev["gates"]}
    down = gates["downtime-within-window"]
    assert down["outcome"] == "fail" and down["key"]
    assert down["value"] == ev["signals"]["deploy.downtime_seconds"] > 0.2
    assert ev["reasons"][0].startswith("gate downtime-within-window fail:"), ev["reasons"]
    assert not app_processes_of(out)


def test_canary_release_shares_traffic_in_steps_and_is_go(tmp_path: Path) -> None:
    out = tmp_path / "2.1.0-canary"
    r = rehearse("2.1.0-canary", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    assert ev["verdict"] == "GO", ev["reasons"]
    steps = {s["name"]: s for s in ev["steps"]}
    # Canary keeps both versions running: the paired phase runs as under blue-green.
    assert "skipped" not in steps["paired-load"]["results"]
    canary = steps["switch"]["results"]["canary"]
    assert [c["share"] for c in canary] == [0.25, 0.5]
    for c in canary:
        assert c["failed"] == 0 and c["old"] > 0 and c["new"] > 0
        # the router's split is deterministic: n connections hold n × share, rounded down
        assert c["routed_to_new"] == int(c["routed"] * c["share"] + 1e-9)
    sig = ev["signals"]
    assert sig["deploy.canary.failed_probes"] == 0
    assert 0 < sig["deploy.canary.step1.new_share"] < sig["deploy.canary.step2.new_share"] < 1
    assert not app_processes_of(out)
