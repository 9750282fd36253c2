"""Deployment strategies without a whole rehearsal: the recreate spec fields, the downtime
prober on a real router between two real HTTP servers, the migration projection, the gates a
maintenance window implies, and paired gates judged not applicable under recreate."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from plantstage.gates.judge import effective_gates, judge
from plantstage.gates.library import needs_both_versions, not_applicable, window_gates
from plantstage.rehearsal.processes import free_port
from plantstage.rehearsal.router import Router
from plantstage.rehearsal.steps.deploy import DowntimeProber
from plantstage.rehearsal.steps.migrate import project_duration
from plantstage.spec.gates import Gate
from plantstage.spec.models import Release, Strategy
from plantstage.spec.smoke import HealthProbe
from tests.unit.test_gates_cel import CLEAN, SERIES, STEPS, _paired, _spec

ART = {"path": "releases/x", "sha256": "0" * 64}


def test_recreate_release_takes_a_window_and_blue_green_refuses_one():
    r = Release(name="r", version="1", artifact=ART, strategy="recreate",
                maintenance_window=900, migration_tables=["on_hand"])
    assert r.strategy == Strategy.recreate and r.maintenance_window == 900
    assert Release(name="r", version="1", artifact=ART).strategy == Strategy.blue_green
    with pytest.raises(ValidationError, match="only a recreate release has downtime"):
        Release(name="r", version="1", artifact=ART, maintenance_window=900)
    with pytest.raises(ValidationError):
        Release(name="r", version="1", artifact=ART, strategy="recreate", maintenance_window=0)
    with pytest.raises(ValidationError):
        Release(name="r", version="1", artifact=ART, strategy="canary-ish")


def test_canary_steps_rise_between_0_and_1_and_need_strategy_canary():
    r = Release(name="r", version="1", artifact=ART, strategy="canary",
                canary_steps=[0.1, 0.5], canary_hold=1)
    assert r.strategy == Strategy.canary and r.canary_steps == [0.1, 0.5]
    for bad in ([0.5, 0.1], [0.0, 0.5], [0.5, 1.0], [0.3, 0.3]):
        with pytest.raises(ValidationError, match="must increase"):
            Release(name="r", version="1", artifact=ART, strategy="canary", canary_steps=bad)
    with pytest.raises(ValidationError, match="only a canary release"):
        Release(name="r", version="1", artifact=ART, canary_steps=[0.1])


def test_projection_scales_by_rows_and_never_below_the_measurement():
    p = project_duration(10.0, {"a": 100, "b": 900}, {"a": 1000, "b": 19000})
    assert p["scale"] == 20.0 and p["projected_seconds"] == 200.0
    # staging holds more rows than production (the baseline load added some): as measured
    p = project_duration(10.0, {"a": 1000}, {"a": 990})
    assert p["projected_seconds"] == 10.0 and p["scale"] == 0.99
    p = project_duration(10.0, {"a": 0}, {"a": 50})
    assert p["projected_seconds"] is None and p["scale"] is None


def _server(version: str) -> ThreadingHTTPServer:
    body = json.dumps({"status": "ok", "version": version}).encode()

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_prober_measures_the_outage_a_client_sees_through_the_router():
    old, new = _server("1.0"), _server("1.1")
    router = Router(free_port())
    router.start()
    router.switch(old.server_address[1])
    spec = HealthProbe(path="/health", version={"json": "version"})
    prober = DowntimeProber(router.url, spec, "1.1", interval=0.02).start()
    try:
        assert prober.wait_first(10)
        prober.old_stopping()
        old.shutdown()
        old.server_close()  # connections to the old port are refused from here on
        gap = 0.5
        time.sleep(gap)
        assert prober.downtime is None and not prober.wait_back(0)
        router.switch(new.server_address[1])
        assert prober.wait_back(10)
    finally:
        prober.stop()
        router.stop()
        new.shutdown()
    assert prober.last_ok is not None  # the old version's last answer (maybe while stopping)
    assert prober.downtime >= gap  # a lower bound: the gap clients could not get through
    assert prober.failed > 0
    d = prober.describe()
    assert d["downtime_seconds"] == round(prober.downtime, 3) and d["probes"] > d["failed_probes"]


def test_prober_waits_for_the_new_version_not_any_answer():
    old = _server("1.0")
    router = Router(free_port())
    router.start()
    router.switch(old.server_address[1])
    prober = DowntimeProber(router.url, HealthProbe(path="/", version={"json": "version"}),
                            "1.1", interval=0.02).start()
    try:
        prober.old_stopping()  # the old version keeps answering: not the new one
        assert not prober.wait_back(0.3)
        assert prober.downtime is None
        assert prober.last_ok is not None and prober.last_ok >= prober.stopped_at  # still served
    finally:
        prober.stop()
        router.stop()
        old.shutdown()


def test_health_only_prober_ends_the_outage_only_after_the_switch():
    """A probe that names no version cannot tell the versions apart: the old one answering
    while it shuts down must not end the outage; only an answer after the router points at
    the new version does."""
    old, new = _server("1.0"), _server("1.1")
    router = Router(free_port())
    router.start()
    router.switch(old.server_address[1])
    prober = DowntimeProber(router.url, HealthProbe(path="/health"), "1.1",
                            interval=0.02).start()
    try:
        assert prober.wait_first(10)
        prober.old_stopping()  # told to stop, still answering
        assert not prober.wait_back(0.3)
        old.shutdown()
        old.server_close()
        router.switch(new.server_address[1])
        prober.routed_to_new()
        assert prober.wait_back(10)
    finally:
        prober.stop()
        router.stop()
        new.shutdown()
    assert prober.back_at >= prober.routed_at
    assert prober.downtime is not None and prober.last_ok < prober.routed_at


def _recreate_spec():
    """The sample spec, whose 1.1.0-recreate release declares a 900 s maintenance window."""
    spec = _spec()
    assert spec.release("1.1.0-recreate").maintenance_window == 900
    return spec


def test_window_implies_two_key_gates_unless_the_spec_judges_them():
    spec = _recreate_spec()
    names = {g.name: g for g in effective_gates(spec, "1.1.0-recreate")}
    assert names["downtime-within-window"].params == {"window_s": 900.0}
    assert names["migration-within-window"].key
    assert "downtime-within-window" not in {g.name for g in effective_gates(spec, "1.1.0")}
    assert "downtime-within-window" not in {g.name for g in effective_gates(spec)}
    covered = {"deploy.downtime_seconds"}
    assert [g.name for g in window_gates(spec, "1.1.0-recreate", covered)] == [
        "migration-within-window"]


def test_gates_that_need_both_versions_at_once():
    assert needs_both_versions(Gate(name="a", use="paired-latency", params={"flow": "f"}))
    assert needs_both_versions(Gate(name="b", signal="workload.paired.old.error_rate", max=0))
    assert needs_both_versions(Gate(name="c", use="cost-ratio",
                                    params={"counter": "statements", "phase": "paired"}))
    assert needs_both_versions(Gate(name="d", pass_='signal("twins.wms.paired.new.requests") '
                                    '< 3.0'))
    assert needs_both_versions(Gate(name="m", signal="monitor.paired.lag.max", max=5))
    assert not needs_both_versions(Gate(name="n", signal="monitor.candidate.lag.max", max=5))
    assert not needs_both_versions(Gate(name="e", use="error-rate"))
    assert not needs_both_versions(Gate(name="f", use="cost-ratio",
                                        params={"counter": "statements"}))
    assert not needs_both_versions(Gate(name="g", signal="workload.candidate.error_rate", max=0))


def _window_signals(downtime: float) -> dict[str, float]:
    return {**CLEAN, "deploy.downtime_seconds": downtime, "migrate.projected_seconds": 20.0,
            "migrate.seconds": 20.0}


def test_recreate_paired_gates_are_not_applicable_never_a_pass_nor_a_veto():
    spec = _recreate_spec()
    gate = next(g for g in spec.gates if g.name == "import-latency")
    assert "recreate" in not_applicable(gate, spec, "1.1.0-recreate")
    assert not_applicable(gate, spec, "1.1.0") is None
    clean = {k: v for k, v in _window_signals(30.0).items() if ".paired." not in k}
    effects = {f"effects.{e.name}.{k}": 0.0 for e in spec.effects
               for k in ("lost", "duplicated")}

    def run(release: str, samples=None, **extra: float):
        return judge(spec, signals={**effects, **clean, **extra}, series=SERIES, steps=STEPS,
                     status="completed", release_name=release, samples=samples)

    # No paired samples at all: under recreate the run is GO, the paired gates n/a.
    j = run("1.1.0-recreate")
    blue_green = run("1.1.0")
    over = run("1.1.0-recreate", samples=_paired(), **{"deploy.downtime_seconds": 901.0})
    outcomes = {g.name: g.outcome for g in j.gates}
    assert j.verdict == "GO", j.reasons
    assert outcomes["import-latency"] == outcomes["old-version-on-new-schema"] == "n/a"
    assert outcomes["downtime-within-window"] == outcomes["migration-within-window"] == "pass"
    assert j.score.pct == 100.0  # n/a gates are left out of the score, not counted as 0
    # The same data for a blue-green release: its paired gates have nothing → not GO.
    assert blue_green.verdict == "INCONCLUSIVE"
    # Downtime over the window: NO-GO by the implied key gate.
    assert over.verdict == "NO-GO"
    assert over.reasons[0].startswith("gate downtime-within-window fail:")


def test_paired_step_is_skipped_under_recreate_with_its_reason():
    from types import SimpleNamespace

    from plantstage.rehearsal.steps.load import PairedLoad
    from plantstage.spec.workload import Workload

    ctx = SimpleNamespace(spec=SimpleNamespace(workload=Workload()), blue=None, green=None,
                          release=SimpleNamespace(strategy=Strategy.recreate))
    out = PairedLoad().run(ctx)  # neither version running: no failure, a stated skip
    assert out["skipped"].startswith("strategy recreate: the old version was stopped")
