"""Recovery: objectives and rollback kinds in the spec, the implied gates, the flag flips, the
traffic recording a replay reads, and the replay against a real HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from plantstage.errors import SpecError
from plantstage.gates.evaluate import evaluate_gate
from plantstage.gates.judge import effective_gates
from plantstage.rehearsal.steps.rollback import Timeline, flip_flag
from plantstage.spec.loader import parse_spec_text
from plantstage.spec.recovery import (
    FlagProvider,
    RollbackKind,
    objective_for,
    recovered_components,
)
from plantstage.twins.record import AppTraffic, Exchange
from plantstage.twins.replay import replay_calls

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-plant"


def _spec(change=None):
    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    if change:
        change(data)
    return parse_spec_text(yaml.safe_dump(data, sort_keys=False),
                           EXAMPLE / "plantstage.yaml").spec


def test_rollback_kind_defaults_keep_todays_behaviour_and_the_release_can_declare_one():
    spec = _spec()
    assert spec.release("1.1.0").rollback_kind() == RollbackKind.downgrade
    assert spec.release("1.1.0-irreversible").rollback_kind() == RollbackKind.restore
    assert spec.release("1.0.0").rollback_kind() == RollbackKind.restore  # no downgrade

    def not_reversible(data):
        rel = next(r for r in data["releases"] if r["name"] == "1.1.0")
        rel["migrations"]["reversible"] = False

    assert _spec(not_reversible).release("1.1.0").rollback_kind() == RollbackKind.restore


def test_objectives_per_tier_with_a_component_override_the_strictest_wins():
    spec = _spec()
    comps = recovered_components(spec)
    assert set(comps) == {"erp", "erp-db"}
    o = objective_for(spec, comps)
    assert (o.rto, o.rpo) == (300, 0)

    def override(data):
        data["recovery"]["objectives"]["components"] = {"erp-db": {"rto": 45}}

    o = objective_for(_spec(override), comps)
    assert (o.rto, o.rpo) == (45, 0)


def test_objectives_imply_key_gates_that_judge_the_recovery_signals():
    gates = {g.name: g for g in effective_gates(_spec())}
    rto, rpo = gates["recovery-rto"], gates["recovery-rpo"]
    assert rto.key and rpo.key
    assert evaluate_gate(rto, {"recovery.rto_seconds": 20.0}).outcome == "pass"
    assert evaluate_gate(rto, {"recovery.rto_seconds": 301.0}).outcome == "fail"
    assert evaluate_gate(rpo, {"recovery.rpo_lost": 0.0}).outcome == "pass"
    assert evaluate_gate(rpo, {"recovery.rpo_lost": 3.0}).outcome == "fail"
    # No data is never a pass.
    assert evaluate_gate(rpo, {}).outcome == "inconclusive"

    def none(data):
        del data["recovery"]

    assert not [g for g in effective_gates(_spec(none)) if g.name.startswith("recovery-")]


@pytest.mark.parametrize("change,words", [
    (lambda d: next(r for r in d["releases"] if r["name"] == "1.1.0")
     .__setitem__("rollback", {"kind": "feature-flag"}), "needs recovery.flag"),
    (lambda d: next(r for r in d["releases"] if r["name"] == "1.0.0")
     .__setitem__("rollback", {"kind": "downgrade"}), "downgrade needs a downgrade"),
    (lambda d: d["recovery"]["objectives"].__setitem__("tiers", {7: {"rto": 1}}),
     "not a tier"),
    (lambda d: d["recovery"].__setitem__("objectives", {"components": {"nope": {"rpo": 0}}}),
     "not an estate component"),
    (lambda d: next(r for r in d["releases"] if r["name"] == "1.1.0")
     .__setitem__("rollback", {"kind": "rewind"}), "rollback.kind"),
])
def test_bad_recovery_declarations_name_the_place(change, words):
    with pytest.raises(SpecError) as exc:
        _spec(change)
    assert words in exc.value.one_line()


def test_flag_provider_needs_its_place():
    with pytest.raises(ValueError, match="needs 'variable'"):
        FlagProvider(provider="env", flag="x")
    with pytest.raises(ValueError, match="needs 'file'"):
        FlagProvider(provider="flagd", flag="x")


def _ctx(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return SimpleNamespace(run_dir=run_dir, spec_dir=tmp_path,
                           expand=lambda t: t.replace("{run_dir}", str(run_dir)))


def test_flags_are_turned_off_where_the_app_reads_them(tmp_path):
    ctx = _ctx(tmp_path)
    env = flip_flag(ctx, FlagProvider(provider="env", flag="lots", variable="LOTS",
                                      off="false"))
    assert env["env"] == {"LOTS": "false"}

    cfg = ctx.run_dir / "app.yaml"
    cfg.write_text("features:\n  lots: true\nother: 1\n")
    flip_flag(ctx, FlagProvider(provider="file", flag="lots", file="{run_dir}/app.yaml",
                                key="features.lots", off=False))
    assert yaml.safe_load(cfg.read_text()) == {"features": {"lots": False}, "other": 1}

    flagd = ctx.run_dir / "flags.json"
    flagd.write_text(json.dumps({"flags": {"lots": {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on",
        "targeting": {"if": [True, "on"]}}}}))
    flip_flag(ctx, FlagProvider(provider="flagd", flag="lots", file="{run_dir}/flags.json"))
    f = json.loads(flagd.read_text())["flags"]["lots"]
    assert f["defaultVariant"] == "off" and "targeting" not in f
    assert f["variants"]["off"] is False


def test_a_malformed_flag_file_is_one_line_naming_the_field(tmp_path):
    ctx = _ctx(tmp_path)
    for name, text in (("flags.json", "{not json"), ("app.yaml", "a: [1"),
                       ("list.json", "[1, 2]")):
        (ctx.run_dir / name).write_text(text)
        with pytest.raises(SpecError) as e:
            flip_flag(ctx, FlagProvider(provider="file", flag="lots",
                                        file="{run_dir}/" + name, key="lots", off=False))
        assert e.value.where == "recovery.flag.file" and "\n" not in e.value.message


def test_a_flag_file_outside_the_run_folder_is_refused(tmp_path):
    ctx = _ctx(tmp_path)
    (tmp_path / "flags.json").write_text("{}")
    with pytest.raises(SpecError, match="outside the run's folder"):
        flip_flag(ctx, FlagProvider(provider="flagd", flag="x", file="flags.json"))
    assert (tmp_path / "flags.json").read_text() == "{}"  # the project's file is untouched


def test_traffic_keeps_state_changing_calls_in_order_and_says_when_it_dropped_some():
    t = AppTraffic(limit=4)
    t("GET", "/a", None, None, 200)
    for i in range(3):
        t("POST", f"/p{i}", {"X": "1"}, b"{}", 201)
    assert [c.target for c in t.since(0)] == ["/p0", "/p1", "/p2"]
    mid = t.calls[1].at
    assert [c.target for c in t.since(mid)] == ["/p1", "/p2"]
    assert t.complete_since(0)
    for i in range(3, 6):
        t("PUT", f"/p{i}", None, None, 200)
    assert len(t.calls) <= 4 and not t.complete_since(0)


def test_timeline_counts_from_the_backup():
    tl = Timeline(100.0)
    tl.add("backup taken", 100.0, 2.0)
    tl.add("failure", 130.5)
    assert tl.events == [{"event": "backup taken", "start": 0.0, "seconds": 2.0},
                         {"event": "failure", "start": 30.5, "seconds": None}]
    with tl.timed("restore"):
        pass
    assert tl.events[-1]["event"] == "restore" and tl.events[-1]["seconds"] >= 0


def test_replay_sends_the_calls_again_in_order_and_counts_refusals():
    got: list[tuple[str, str, bytes, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append((self.command, self.path, body, self.headers.get("X-Role")))
            self.send_response(422 if self.path == "/refuse" else 201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        calls = [Exchange(1.0, "POST", "/a?x=1", {"X-Role": "op"}, b'{"n": 1}', 201),
                 Exchange(2.0, "POST", "/refuse", {}, b"", 201),
                 Exchange(3.0, "POST", "/b", {}, b'{"n": 2}', 201)]
        out = replay_calls(f"http://127.0.0.1:{srv.server_port}", calls)
    finally:
        srv.shutdown()
    assert [g[1] for g in got] == ["/a?x=1", "/refuse", "/b"]
    assert got[0][2] == b'{"n": 1}' and got[0][3] == "op"
    assert (out.sent, out.refused, out.failed) == (3, 1, 0)
    assert "422" in out.notes[0]


def test_replay_carries_the_ids_the_app_generates_afresh_into_later_calls():
    """An app that numbers what it creates at random: the first run's numbers are not the
    replay's. The replay learns old → new from the two answers and rewrites later calls (path,
    query and JSON body), so the confirmation books against the replayed order."""
    import random

    orders: set[str] = set()
    booked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/orders":
                number = f"WO-{random.randrange(10**9)}"
                orders.add(number)
                status, answer = 201, {"number": number, "status": "open", "qty": body["qty"]}
            else:  # /orders/<number>/confirm?lot=<number>
                number = self.path.split("/")[2]
                ok = number in orders and body.get("work_order") == number \
                    and self.path.endswith(f"lot={number}")
                if ok:
                    booked.append(number)
                status, answer = (201 if ok else 422), {"status": "posted" if ok else "unknown"}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    old = "WO-1"  # what the app answered the first time, before the restore
    calls = [Exchange(1.0, "POST", "/orders", {}, b'{"qty": 2}', 201,
                      json.dumps({"number": old, "status": "closed", "qty": 2}).encode()),
             Exchange(2.0, "POST", f"/orders/{old}/confirm?lot={old}", {},
                      json.dumps({"work_order": old, "good": 2, "status": "closed"}).encode(),
                      201)]
    try:
        out = replay_calls(f"http://127.0.0.1:{srv.server_port}", calls)
        # Without the learnt ids the same confirmation is refused: the test can fail.
        bare = replay_calls(f"http://127.0.0.1:{srv.server_port}",
                            [Exchange(1.0, "POST", "/orders", {}, b'{"qty": 1}', 201), calls[1]])
    finally:
        srv.shutdown()
    assert (out.sent, out.refused, out.ids_carried) == (2, 0, 1)
    assert len(booked) == 1 and booked[0] != old and booked[0] in orders
    assert bare.refused == 1  # no recorded answer: nothing learnt, the call names WO-1


def test_only_identity_members_are_learnt_and_values_keep_their_type():
    from plantstage.twins.replay import carry_ids, learn_ids

    m: dict = {}
    learn_ids({"id": 7, "orderNumber": "A", "status": "open", "lines": [{"line_id": "x"}]},
              {"id": 9, "orderNumber": "B", "status": "released", "lines": [{"line_id": "y"}]},
              m)
    assert m == {7: 9, "A": "B", "x": "y"}  # the status is not an id
    assert carry_ids({"order": "A", "n": 7, "s": "7", "flag": True, "st": "open"}, m) == \
        {"order": "B", "n": 9, "s": "7", "flag": True, "st": "open"}


def test_republish_puts_the_recorded_messages_back_on_the_broker_in_order():
    import paho.mqtt.client as mqtt

    from plantstage.brokers import open_broker, parse_mqtt_url
    from plantstage.twins.replay import republish

    broker = open_broker("embedded")
    got: list[tuple[str, bytes]] = []
    done, ready = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="recovery-test-sub")

    def on_message(_c, _u, msg):
        got.append((msg.topic, msg.payload))
        if len(got) == 3:
            done.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: ready.set()
    try:
        sub.connect(*parse_mqtt_url(broker.url))
        sub.loop_start()
        sub.subscribe("plant/#", 1)
        assert ready.wait(5)
        msgs = [("plant/a/c", b'{"id": 1}', 1), ("plant/b/c", b'{"id": 2}', 1),
                ("plant/a/c", b'{"id": 3}', 0)]
        out = republish(broker.url, msgs)
        assert done.wait(5)
    finally:
        sub.disconnect()
        sub.loop_stop()
        broker.stop()
    assert (out.sent, out.failed) == (3, 0)
    assert got == [(t, p) for t, p, _q in msgs]


def test_republish_to_no_broker_fails_every_message_and_says_why():
    from plantstage.twins.replay import republish

    out = republish("mqtt://127.0.0.1:1", [("t", b"x", 1)])
    assert out.failed == 1 and out.sent == 0 and "not reachable" in out.notes[0]


def test_staging_is_marked_incomplete_while_recovering_and_complete_after(tmp_path):
    from plantstage import engines
    from plantstage.data import refresh_state
    from plantstage.rehearsal.steps.rollback import mark_staging

    url = f"sqlite:///{tmp_path / 'staging.sqlite'}"
    db = engines.adapter_for(url)
    db.create()
    ctx = SimpleNamespace(staging_db=db)
    assert refresh_state(url) is None  # cloned without a refresh: no marker yet
    mark_staging(ctx, "incomplete")
    assert refresh_state(url) == "incomplete"
    mark_staging(ctx, "complete")
    assert refresh_state(url) == "complete"
    mark_staging(ctx, "incomplete")
    assert refresh_state(url) == "incomplete"
