"""Exactly-once effects: the spec's `effects:`, the effects step against a real MES line twin
(embedded broker, an app that acknowledges) and a real SQLite staging database, and the key
gate each effect gets."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from plantstage.engines import adapter_for
from plantstage.errors import SpecError
from plantstage.gates.evaluate import evaluate_gate
from plantstage.gates.judge import effective_gates
from plantstage.rehearsal.steps.effects import Effects, compare, id_text
from plantstage.spec import parse_spec_text
from plantstage.spec.effects import Effect
from tests.unit.test_twins_mes import App, _mes, _publish


@pytest.fixture
def mqtt_broker():
    from plantstage.brokers import open_broker

    b = open_broker("embedded")
    yield b
    b.stop()

SPEC = """\
name: tiny
estate:
  components:
    app: {kind: service, tier: 1}
    db: {kind: database, tier: 1}
    line: {kind: external, tier: 1}
    store: {kind: external, tier: 2}
  tenants: [{code: t1}, {code: t2}]
environments:
  production:
    bindings:
      db: {url: "sqlite:///prod.db"}
  staging:
    bindings:
      db: {url: "sqlite:///stage.db"}
      app: {command: ["{python}", "-m", "app"]}
      line:
        fidelity: simulated
        twin:
          kind: mes-line
          contract:
            publish: {topic: "l/{tenant}", id: "{key}", payload: {mid: "{id}"}}
            ack: {mode: none}
      store:
        fidelity: simulated
        twin:
          kind: wms
          contract:
            quantities: {qty: {unit: EA, decimals: 0, encoding: number}}
            routes: {book: {method: POST, path: /moves}}
            fields: {tenant: tenant, ref: ref, item: item, qty: qty}
current: "1.0"
releases:
  - name: "1.0"
    version: "1.0"
    artifact: {path: rel, sha256: "SHA"}
effects:
EFFECTS
""".replace("SHA", "0" * 64)


def _spec(effects: str):
    return parse_spec_text(SPEC.replace("EFFECTS", effects), Path("plantstage.yaml")).spec


GOOD = """\
  - {name: posted, twin: line, what: acked, id: mid, sql: "SELECT ref FROM ledger"}
  - {name: moved, twin: store, what: received, id: ref,
     sql: "SELECT ref FROM moves WHERE tenant = :tenant", key: false}
"""


def test_effects_are_declared_in_the_spec():
    spec = _spec(GOOD)
    assert [(e.name, e.twin, e.what.value, e.id) for e in spec.effects] == [
        ("posted", "line", "acked", "mid"), ("moved", "store", "received", "ref")]
    assert spec.effects[0].settle == 2.0 and spec.effects[1].key is False


@pytest.mark.parametrize("effect, words", [
    ("- {name: e, twin: nowhere, what: acked, id: i, sql: SELECT 1}", "not an estate component"),
    ("- {name: e, twin: app, what: acked, id: i, sql: SELECT 1}", "has no twin in staging"),
    ("- {name: e, twin: line, what: received, id: i, sql: SELECT 1}", "cannot say 'received'"),
    ("- {name: e, twin: store, what: acked, id: i, sql: SELECT 1}", "cannot say 'acked'"),
    ("- {name: e, twin: line, what: acked, id: i, sql: DELETE FROM x}", "must be a SELECT"),
    ("- {name: e, twin: line, what: heard, id: i, sql: SELECT 1}", "what"),
    ("- {name: e, twin: line, what: acked, id: i, sql: SELECT 1, database: app}",
     "is not a database"),
    ("- {name: e, twin: line, what: acked, id: i, sql: SELECT 1}\n"
     "  - {name: e, twin: line, what: sent, id: i, sql: SELECT 1}", "used twice"),
])
def test_a_bad_effect_is_one_line_naming_it(effect, words):
    with pytest.raises(SpecError) as exc:
        _spec("  " + effect)
    assert words in exc.value.message, exc.value.message
    assert "effects" in (exc.value.message + str(exc.value.where))


def test_compare_lists_lost_duplicated_and_unseen():
    from collections import Counter

    seen = [("t1", "a"), ("t1", "b"), ("t1", "b"), ("t2", "c"), ("t2", "d")]
    per_tenant = compare(seen, {"t1": Counter({"a": 1, "x": 1}),
                                "t2": Counter({"c": 3, "d": 1})})
    assert per_tenant["seen"] == 4 and per_tenant["lost"] == 1
    assert per_tenant["lost_ids"] == ["t1/b"]
    assert per_tenant["duplicated_ids"] == [{"id": "t2/c", "rows": 3}]
    assert per_tenant["unseen"] == 1
    # Not per tenant: ids compared across tenants.
    flat = compare(seen, {None: Counter({"a": 1, "b": 2, "c": 1})})
    assert (flat["lost_ids"], flat["duplicated_ids"]) == (["d"], [{"id": "b", "rows": 2}])
    assert id_text(3.0) == "3" and id_text(b"x") == "x"


def test_each_effect_gets_a_key_gate_that_needs_data():
    spec = _spec(GOOD)
    gates = {g.name: g for g in effective_gates(spec)}
    g = gates["effect-posted"]
    assert g.key and not gates["effect-moved"].key
    ok = {"effects.posted.lost": 0.0, "effects.posted.duplicated": 0.0}
    assert evaluate_gate(g, ok).outcome == "pass"
    assert evaluate_gate(g, {**ok, "effects.posted.lost": 2.0}).outcome == "fail"
    assert evaluate_gate(g, {**ok, "effects.posted.duplicated": 1.0}).value == 1.0
    assert evaluate_gate(g, {}).outcome == "inconclusive"  # no data is never a pass


def test_a_spec_gate_on_the_effect_replaces_the_builtin_one():
    spec = _spec(GOOD)
    spec.gates.append(type(effective_gates(spec)[0])(
        name="mine", signal="effects.posted.lost", max=3))
    assert "effect-posted" not in {g.name for g in effective_gates(spec)}


def _ctx(tmp_path: Path, effects: list[Effect], twins: dict):
    signals: dict[str, float] = {}
    spec = SimpleNamespace(effects=effects, estate=SimpleNamespace(
        tenants=[SimpleNamespace(code="acme"), SimpleNamespace(code="beta")]))
    return SimpleNamespace(spec=spec, staging_db=adapter_for(f"sqlite:///{tmp_path}/s.db"),
                           twin_set=SimpleNamespace(twins=twins), sections={},
                           signals=signals, signal=lambda k, v: signals.__setitem__(k, v),
                           database_component=lambda: "db")


def test_the_step_finds_lost_and_duplicated_confirmations(tmp_path: Path, mqtt_broker):
    broker = mqtt_broker
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("CREATE TABLE ledger (tenant TEXT, ref TEXT)")
    app = App(broker)
    rt, mes, _ = _mes(broker)
    try:
        for t, key in [("acme", "1"), ("acme", "2"), ("acme", "3"), ("beta", "4")]:
            assert _publish(mes, t, {"order": "WO-1", "good": 1}, key=key).accepted
    finally:
        rt.stop()
        app.close()
    assert [(d.tenant, d.id) for d in mes.outcomes()] == [
        ("acme", "m-1"), ("acme", "m-2"), ("acme", "m-3"), ("beta", "m-4")]
    assert [d.id for d in mes.outcomes("beta")] == ["m-4"]
    # m-2 posted twice, m-3 never reached the ledger; m-9 came from elsewhere.
    db.executemany("INSERT INTO ledger VALUES (?, ?)", [
        ("acme", "m-1"), ("acme", "m-2"), ("acme", "m-2"), ("beta", "m-4"), ("beta", "m-9")])
    db.commit()
    db.close()
    effects = [Effect(name="posted", twin="line", what="acked", id="mid", settle=0,
                      sql="SELECT ref FROM ledger WHERE tenant = :tenant"),
               Effect(name="sent", twin="line", what="sent", id="id", settle=0,
                      sql="SELECT ref FROM ledger"),
               Effect(name="moved", twin="store", what="received", id="ref", settle=0,
                      sql="SELECT ref FROM ledger")]
    ctx = _ctx(tmp_path, effects, {"line": mes})
    out = Effects().run(ctx)
    posted = out["posted"]
    assert (posted["seen"], posted["lost"], posted["duplicated"], posted["unseen"]) == \
        (4, 1, 1, 1)
    assert posted["lost_ids"] == ["acme/m-3"]
    assert posted["duplicated_ids"] == [{"id": "acme/m-2", "rows": 2}]
    # `id` falls back to the twin's own message id; compared across tenants.
    assert out["sent"]["lost_ids"] == ["m-3"] and out["sent"]["per_tenant"] is False
    assert ctx.signals["effects.posted.lost"] == 1 and ctx.signals["effects.sent.seen"] == 4
    # No WMS twin ran: nothing recorded, so the gate is inconclusive, not passed.
    assert "no store twin ran" in out["moved"]["skipped"]
    assert "effects.moved.lost" not in ctx.signals
    assert [f["name"] for f in ctx.sections["effects"]["effects"]] == ["posted", "sent", "moved"]


class _Wms:
    def __init__(self, bodies):
        self.bodies = bodies

    def received(self, tenant=None):
        return [b for t, b in self.bodies if tenant in (None, t)]


def test_received_movements_and_a_late_commit(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("CREATE TABLE moves (tenant TEXT, ref TEXT)")
    db.execute("INSERT INTO moves VALUES ('acme', 'r1')")
    db.commit()
    wms = _Wms([("acme", {"ref": "r1"}), ("acme", {"ref": "r2"}), ("beta", {"nope": 1})])
    effect = Effect(name="moved", twin="store", what="received", id="ref", settle=0.6,
                    sql="SELECT ref FROM moves WHERE tenant = :tenant")
    import threading

    def commit_late():
        late = sqlite3.connect(tmp_path / "s.db")
        late.execute("INSERT INTO moves VALUES ('acme', 'r2')")
        late.commit()
        late.close()

    timer = threading.Timer(0.2, commit_late)
    timer.start()
    out = Effects().run(_ctx(tmp_path, [effect], {"store": wms}))["moved"]
    timer.join()
    db.close()
    # r2 was committed after the check began: re-queried within `settle`, not lost.
    assert (out["seen"], out["lost"], out["duplicated"]) == (2, 0, 0)
    assert out["messages_without_id"] == 1
