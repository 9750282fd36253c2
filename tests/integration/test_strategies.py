"""Deployment strategies rehearsed on the sample plant: ``strategy: recreate`` (stop the old
version, upgrade, start the new one) with downtime measured through the router and gated
against the release's maintenance window (docs/strategies.md).

The sample's own ``1.1.0-recreate`` release takes over five minutes (its lot backfill runs
310 s on purpose: a step longer than the 300 s a migration was once allowed); the variants
run in a copy of the sample's folder with a short backfill and short workloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, run_cli, sample_plant_copy

pytestmark = pytest.mark.slow

RELEASE = "1.1.0-recreate"


def _evidence(out: Path) -> dict:
    return json.loads((out / "evidence.json").read_text())


def _step(ev: dict, name: str) -> dict:
    return next(s for s in ev["steps"] if s["name"] == name)


def _gates(ev: dict) -> dict[str, dict]:
    return {g["name"]: g for g in ev["gates"]}


def _copy(tmp_path: Path, backfill_s: str = "2") -> tuple[Path, dict]:
    """A copy of the sample (short workloads; the recreate release's backfill ``backfill_s``)."""
    spec_path = sample_plant_copy(tmp_path / "plant")
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    spec["workload"]["duration"] = 2
    spec["workload"]["paired"] = {"duration": 4, "block": 1}
    rel = next(r for r in spec["releases"] if r["name"] == RELEASE)
    backfill = next(s for s in rel["steps"]["upgrade"] if s["name"] == "lot-backfill")
    backfill["command"][-1] = backfill_s
    return spec_path, spec


def _write(path: Path, spec: dict) -> None:
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def _assert_recreate_go(ev: dict, window: float) -> None:
    assert ev["verdict"] == "GO", ev["reasons"]
    sig = ev["signals"]
    # Downtime as a client saw it, through the router: the old version stopped before the
    # upgrade, so it covers at least the upgrade itself.
    assert 0 < sig["steps.upgrade.seconds"] <= sig["deploy.downtime_seconds"] < window
    assert sig["deploy.maintenance_window_seconds"] == window
    assert sig["deploy.downtime_failed_probes"] > 0
    assert sig["migrate.seconds"] == sig["steps.upgrade.seconds"]
    assert sig["migrate.projected_seconds"] >= sig["migrate.seconds"]
    assert sig["migrate.rows_production"] > 0 and sig["migrate.rows_staging"] > 0
    migrate = _step(ev, "migrate")["results"]
    assert migrate["recreate"]["old_was_running"] and migrate["recreate"]["old_stopped"]
    assert migrate["projection"]["production_rows_from"]
    assert _step(ev, "deploy")["results"]["old_still_running"] is False
    paired = _step(ev, "paired-load")
    assert paired["status"] == "passed"
    assert paired["results"]["skipped"].startswith("strategy recreate:")
    assert "workload.paired.iterations" not in sig
    switch = _step(ev, "switch")["results"]
    assert switch["downtime"]["downtime_seconds"] == pytest.approx(
        sig["deploy.downtime_seconds"], abs=0.001)
    gates = _gates(ev)
    for name in ("downtime-within-window", "migration-within-window"):
        assert gates[name]["outcome"] == "pass" and gates[name]["key"], gates[name]
    # The sample's gates that compare old and new at the same time: not applicable, not a pass.
    for name in ("import-latency", "old-version-on-new-schema"):
        assert gates[name]["outcome"] == "n/a", gates[name]
        assert "recreate" in gates[name]["reason"]
    assert gates["error-rate"]["outcome"] == "pass"


def test_recreate_release_is_go_with_downtime_within_its_window(tmp_path, production_db):
    spec_path, spec = _copy(tmp_path)
    _write(spec_path, spec)
    out = tmp_path / "run"
    r = run_cli("rehearse", str(spec_path), "--release", RELEASE, "--out", str(out))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    ev = _evidence(out)
    _assert_recreate_go(ev, 900.0)
    steps = [(s["phase"], s["name"]) for s in ev["sections"]["release_steps"]["steps"]
             if s["group"] == "upgrade"]
    assert steps == [("before", "pre-upgrade-check"), ("upgrade", "migrations"),
                     ("upgrade", "lot-backfill")]


def test_recreate_failing_before_step_is_no_go_with_its_exception_line(tmp_path,
                                                                       production_db):
    spec_path, spec = _copy(tmp_path)
    (spec_path.parent / "release-steps" / "broken.sql").write_text(
        "-- the vendor's check, against a column this database does not have\n"
        "SELECT COUNT(*) FROM on_hand;\n"
        "SELECT lot_reserved_qty FROM on_hand;\n")
    rel = next(r for r in spec["releases"] if r["name"] == RELEASE)
    rel["steps"]["before"] = [{"name": "vendor-check", "sql": "release-steps/broken.sql"}]
    _write(spec_path, spec)
    out = tmp_path / "run"
    r = run_cli("rehearse", str(spec_path), "--release", RELEASE, "--out", str(out))
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    ev = _evidence(out)
    assert ev["verdict"] == "NO-GO"
    migrate = _step(ev, "migrate")
    line = "sqlite3.OperationalError: no such column: lot_reserved_qty"
    assert migrate["status"] == "failed" and line in migrate["error"]
    assert "before step 'vendor-check'" in migrate["error"]
    assert "^" not in migrate["error"].split(": ", 1)[1].split()[0]
    # The old version had been stopped (recreate) before the upgrade failed.
    assert migrate["results"]["recreate"]["old_stopped"] is True
    assert any(line in reason for reason in ev["reasons"])
    upgrade = [s["name"] for s in ev["sections"]["release_steps"]["steps"]
               if s["group"] == "upgrade"]
    assert upgrade == ["vendor-check"]
    # The rollback drill brought the old version back.
    assert _step(ev, "rollback-drill")["status"] in ("passed", "failed")


def test_sample_recreate_release_with_a_long_migration_is_go(tmp_path, production_db):
    """The sample's 1.1.0-recreate as shipped: its backfill runs 310 s (> 300 s) under its own
    600 s timeout; the rehearsal takes over five minutes."""
    out = tmp_path / "run"
    r = run_cli("rehearse", str(EXAMPLE), "--release", RELEASE, "--out", str(out),
                timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    ev = _evidence(out)
    _assert_recreate_go(ev, 900.0)
    sig = ev["signals"]
    assert sig["steps.upgrade.upgrade.lot-backfill.seconds"] > 300
    assert sig["migrate.seconds"] > 300
    backfill = next(s for s in ev["sections"]["release_steps"]["steps"]
                    if s["name"] == "lot-backfill")
    assert backfill["status"] == "passed" and backfill["timeout"] == 600
    assert "lot backfill done" in backfill["tail"]


def test_canary_release_shares_traffic_in_steps_and_is_go(tmp_path, production_db):
    """1.1.0 switched in canary steps. The paired phase runs (both versions are up at once, as
    under blue-green); its latency comparison is left out here, since a short paired phase on
    a busy machine may leave it inconclusive, and this test is about the switch."""
    spec_path, spec = _copy(tmp_path)
    spec["gates"] = [g for g in spec["gates"] if g.get("use") != "paired-latency"]
    good = next(r for r in spec["releases"] if r["name"] == "1.1.0")
    spec["releases"].append({**good, "name": "1.1.0-canary", "strategy": "canary",
                             "canary_steps": [0.5], "canary_hold": 2})
    _write(spec_path, spec)
    out = tmp_path / "run"
    r = run_cli("rehearse", str(spec_path), "--release", "1.1.0-canary", "--out", str(out))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    ev = _evidence(out)
    assert ev["verdict"] == "GO", ev["reasons"]
    (step,) = _step(ev, "switch")["results"]["canary"]
    assert step["share"] == 0.5 and step["failed"] == 0 and step["old"] > 0 and step["new"] > 0
    assert step["routed_to_new"] == step["routed"] // 2
    assert _gates(ev)["old-version-on-new-schema"]["outcome"] == "pass"  # paired phase ran
    assert "deploy.downtime_seconds" not in ev["signals"]
