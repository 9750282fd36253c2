"""The MES line twin against a real MQTT client playing the app: the contract the spec
declares (topics, fields, decimal quantities), each ack mode, redeliveries and faults."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from decimal import Decimal

import paho.mqtt.client as mqtt
import pytest

from plantstage.brokers import open_broker
from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinError, TwinRuntime
from plantstage.twins.contract import ContractError
from plantstage.twins.faults import FaultLog
from plantstage.twins.mes import MesLineTwin, TwinUnavailable

#: A line that confirms whole pieces and wants an app-level ack (the sample plant's shape).
PIECES = {
    "quantities": {"good": {"unit": "EA", "decimals": 0, "encoding": "number"},
                   "scrap": {"unit": "EA", "decimals": 0, "encoding": "number"}},
    "defaults": {"scrap": 0},
    "publish": {"topic": "line/{tenant}/out", "id": "m-{key}",
                "payload": {"mid": "{id}", "order": "{order}", "good": "{good}",
                            "scrap": "{scrap}", "lot": None, "at": "{now}"}},
    "ack": {"mode": "topic", "topic": "line/{tenant}/out/ack", "id": "mid",
            "status": "result", "accepted": ["posted", "duplicate"]},
}

#: A batch plant: nested quantity as a decimal string with its unit, no ack at all.
BATCH = {
    "quantities": {"quantity": {"unit": "kg", "decimals": 3}},
    "publish": {"topic": "mix/{tenant}/batches", "id": "{key}",
                "payload": {"batchId": "{id}", "material": "{material}",
                            "quantity": {"value": "{quantity}", "uom": "{quantity.unit}"}}},
    "ack": {"mode": "none"},
}


def _mosquitto_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), 0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["embedded", "mosquitto"])
def any_broker(request):
    if request.param == "mosquitto":
        if not _mosquitto_up():
            pytest.skip("Mosquitto is not running on 127.0.0.1:1883")
        b = open_broker("mqtt://127.0.0.1:1883")
    else:
        b = open_broker("embedded")
    yield b
    b.stop()


@pytest.fixture
def broker():
    b = open_broker("embedded")
    yield b
    b.stop()


class App:
    """Consumes like an app: posts once per message id, acks on the ack topic."""

    def __init__(self, broker, topic="line/+/out", ack: bool = True,
                 double_post: bool = False):
        self.seen: list[dict] = []
        self.raw: list[bytes] = []
        self.posted: dict[str, int] = {}
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"app-{id(self):x}")

        def on_message(cl, _u, m):  # noqa: ANN001
            self.raw.append(m.payload)
            try:
                body = json.loads(m.payload)
            except ValueError:
                return  # corrupt: no ack, the MES must redeliver
            self.seen.append(body)
            mid = body.get("mid")
            dup = mid in self.posted and not double_post
            self.posted[mid] = self.posted.get(mid, 0) + (0 if dup else 1)
            if ack:
                cl.publish(m.topic + "/ack", json.dumps(
                    {"mid": mid, "result": "duplicate" if dup else "posted"}), qos=1)

        self.c.on_message = on_message
        self.c.on_subscribe = lambda *_a: self.ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        assert self.ready.wait(5)

    def wait(self, n: int, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while len(self.raw) < n and time.monotonic() < end:
            time.sleep(0.01)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _mes(broker, contract=PIECES, rules=(), **settings):
    spec = TwinSpec(kind="mes-line", settings={"ack_timeout": 0.3, "http": False, **settings},
                    contract=contract, faults={"seed": 3, "rules": list(rules)})
    log = FaultLog()
    rt = TwinRuntime()
    twin = MesLineTwin("mes-line", spec, TwinEnv(broker_url=broker.url, log=log))
    rt.start(twin)
    return rt, twin, log


def _publish(twin, tenant, values, key=None):
    """What a flow does: publish from its own event loop (not the twin's)."""
    return asyncio.run(twin.publish(tenant, values, key=key))


def test_message_is_built_from_the_contract_and_acked(broker):
    app = App(broker)
    rt, mes, _ = _mes(broker)
    try:
        d = _publish(mes, "acme", {"order": "WO-1", "good": 4}, key="r1")
        assert (d.status, d.accepted, d.deliveries, d.acks) == ("posted", True, 1, ["posted"])
        assert d.id == "m-r1" and d.topic == "line/acme/out"
        (msg,) = app.seen
        assert msg == {"mid": "m-r1", "order": "WO-1", "good": 4, "scrap": 0, "lot": None,
                       "at": msg["at"]}
        assert d.message["good"] == 4
        c = mes.counters()
        assert c["published"] == 1 and c["acks"] == 1 and c["accepted"] == 1
        assert mes.reset_counters()["published"] == 1 and mes.counters()["published"] == 0
    finally:
        rt.stop()
        app.close()


def test_duplicate_fault_redelivers_identical_message(broker):
    app = App(broker)
    rt, mes, log = _mes(broker, rules=[{"kind": "duplicate", "p": 1.0}])
    try:
        d = _publish(mes, "acme", {"order": "WO-1", "good": 2}, key="r1")
        assert d.deliveries == 2
        assert sorted(d.acks) == ["duplicate", "posted"]
        assert app.raw[0] == app.raw[1]  # byte-identical redelivery
        assert [e.kind for e in log.events()] == ["duplicate"]
    finally:
        rt.stop()
        app.close()


def test_a_consumer_that_posts_twice_shows_in_the_acks(broker):
    app = App(broker, double_post=True)
    rt, mes, _ = _mes(broker, rules=[{"kind": "duplicate", "p": 1.0}])
    try:
        d = _publish(mes, "acme", {"order": "WO-1", "good": 1}, key="r1")
        assert d.acks == ["posted", "posted"]
    finally:
        rt.stop()
        app.close()


def test_no_ack_means_redelivery_until_acked_or_given_up(broker):
    app = App(broker, ack=False)
    rt, mes, log = _mes(broker, max_redeliveries=2)
    try:
        d = _publish(mes, "acme", {"order": "WO-1", "good": 1}, key="r1")
        assert d.status is None and not d.accepted and d.deliveries == 3
        assert mes.stats["unacked"] == 1 and mes.stats["redeliveries"] == 2
        assert [e.kind for e in log.events()] == ["redelivery", "redelivery"]
    finally:
        rt.stop()
        app.close()


def test_a_status_outside_accepted_is_a_rejection(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    ready = threading.Event()

    def on_message(cl, _u, m):  # noqa: ANN001
        cl.publish(m.topic + "/ack", json.dumps({"mid": json.loads(m.payload)["mid"],
                                                 "result": "rejected"}), qos=1)

    c.on_message, c.on_subscribe = on_message, lambda *_a: ready.set()
    c.connect(broker.host, broker.port)
    c.subscribe("line/+/out", 1)
    c.loop_start()
    assert ready.wait(5)
    rt, mes, _ = _mes(broker)
    try:
        d = _publish(mes, "acme", {"order": "WO-9", "good": 1})
        assert d.status == "rejected" and not d.accepted and d.deliveries == 1
        assert mes.stats["rejected"] == 1
    finally:
        rt.stop()
        c.disconnect()
        c.loop_stop()


def test_dropped_and_corrupt_messages_are_redelivered(broker):
    app = App(broker)
    rt, mes, log = _mes(broker, rules=[{"kind": "corrupt", "p": 1.0, "start": 0,
                                        "duration": 0.2}])
    try:
        d = _publish(mes, "acme", {"order": "WO-1", "good": 3}, key="r1")
        # the first delivery is damaged (no ack); the redelivery after the window is clean
        assert d.status == "posted" and d.deliveries == 2
        assert {e.kind for e in log.events()} == {"corrupt", "redelivery"}
    finally:
        rt.stop()
        app.close()


def test_decimal_kg_stays_exact_end_to_end(any_broker):
    """2.75 kg declared with 3 decimals is 2.750 on the wire, whatever the flow gives."""
    app = App(any_broker, topic="mix/+/batches")
    rt, mes, _ = _mes(any_broker, BATCH)
    try:
        given = [Decimal("2.75"), "2.75", 2.75, "2.750 kg", "12"]
        for i, q in enumerate(given):
            d = _publish(mes, "mix-1", {"material": "RM-7", "quantity": q}, key=f"b{i}")
            assert d.status == "sent" and d.accepted and d.acks == []
        app.wait(len(given))
        bodies = [json.loads(r, parse_float=Decimal) for r in app.raw]
        assert [b["quantity"] for b in bodies[:4]] == [{"value": "2.750", "uom": "kg"}] * 4
        assert bodies[4]["quantity"]["value"] == "12.000"
        assert app.raw[0] == (b'{"batchId":"b0","material":"RM-7",'
                              b'"quantity":{"value":"2.750","uom":"kg"}}')
        assert d.message["quantity"] == {"value": "12.000", "uom": "kg"}
        assert mes.state()["totals"]["quantity"] == "23.000"
    finally:
        rt.stop()
        app.close()


def test_decimal_as_a_json_number_is_written_exactly(broker):
    contract = {**BATCH, "quantities": {"quantity": {"unit": "kg", "decimals": 3,
                                                     "encoding": "number"}}}
    app = App(broker, topic="mix/+/batches")
    rt, mes, _ = _mes(broker, contract)
    try:
        _publish(mes, "m", {"material": "X", "quantity": "0.1"})
        app.wait(1)
        assert b'"value":0.100,' in app.raw[0]
        assert json.loads(app.raw[0], parse_float=Decimal)["quantity"]["value"] == \
            Decimal("0.100")
    finally:
        rt.stop()
        app.close()


def test_quantities_are_never_rounded_and_values_must_be_given(broker):
    rt, mes, _ = _mes(broker, BATCH)
    try:
        with pytest.raises(ContractError, match="more than 3 decimal"):
            _publish(mes, "m", {"material": "X", "quantity": "2.7501"})
        with pytest.raises(ContractError, match="in lb, the contract says kg"):
            _publish(mes, "m", {"material": "X", "quantity": "2 lb"})
        with pytest.raises(ContractError, match="not a decimal"):
            _publish(mes, "m", {"material": "X", "quantity": "lots"})
        with pytest.raises(ContractError, match=r"value 'material' is missing.*given: quantity"):
            _publish(mes, "m", {"quantity": "1"})
        with pytest.raises(ContractError, match="'tenant' is reserved"):
            _publish(mes, "m", {"material": "X", "quantity": "1", "tenant": "t"})
        assert mes.stats["published"] == 0
    finally:
        rt.stop()


def test_ack_mode_qos_waits_for_the_puback(any_broker):
    contract = {**BATCH, "ack": {"mode": "qos"}}
    rt, mes, _ = _mes(any_broker, contract)
    try:
        d = _publish(mes, "m", {"material": "X", "quantity": 1})
        assert d.status == "sent" and d.accepted and d.deliveries == 1 and d.mode == "qos"
    finally:
        rt.stop()
    rt, mes, _ = _mes(any_broker, contract, rules=[{"kind": "drop", "p": 1.0}],
                      ack_timeout=0.1)
    try:
        d = _publish(mes, "m", {"material": "X", "quantity": 1})
        assert d.status is None and d.deliveries == 0 and mes.stats["unacked"] == 1
    finally:
        rt.stop()
    with pytest.raises(TwinError, match="needs QoS 1"):
        _mes(any_broker, contract, qos=0)


def test_publish_on_a_stopped_twin_is_a_twin_failure(broker):
    rt, mes, _ = _mes(broker, BATCH)
    rt.stop()
    with pytest.raises(TwinUnavailable, match="not running"):
        _publish(mes, "m", {"material": "X", "quantity": 1})


def test_b2mml_payload_parses_back(broker):
    import xml.etree.ElementTree as ET

    contract = {"quantities": {"good": {"unit": "kg", "decimals": 2},
                               "scrap": {"unit": "kg", "decimals": 2}},
                "publish": {"format": "b2mml", "topic": "line/{tenant}/perf",
                            "b2mml": {"request": "{order}", "lot": "{order}-L{seq}",
                                      "material": "{item}",
                                      "quantities": {"good": "good", "scrap": "scrap"}}},
                "ack": {"mode": "none"}}
    app = App(broker, topic="line/+/perf")
    rt, mes, _ = _mes(broker, contract)
    try:
        d = _publish(mes, "acme", {"order": "WO-9", "item": "FG-1", "good": "3.5",
                                   "scrap": 0})
        app.wait(1)
        root = ET.fromstring(app.raw[0])
        ns = "{http://www.mesa.org/xml/B2MML}"
        assert root.tag == f"{ns}ProductionPerformance"
        assert root.findtext(f"{ns}ProductionResponse/{ns}ProductionRequestID") == "WO-9"
        assert root.find(f".//{ns}LotID").text == "WO-9-L1"
        qty = {q.findtext(f"{ns}Key"): (q.findtext(f"{ns}QuantityString"),
                                         q.findtext(f"{ns}UnitOfMeasure"))
               for q in root.iter(f"{ns}Quantity")}
        assert qty == {"good": ("3.50", "kg"), "scrap": ("0.00", "kg")}
        assert d.message["request"] == "WO-9"
    finally:
        rt.stop()
        app.close()


def test_publish_over_the_twins_http(broker):
    import httpx

    app = App(broker, topic="mix/+/batches")
    rt, mes, _ = _mes(broker, BATCH, http=True)
    try:
        base = mes.endpoints()["http"]
        r = httpx.post(base + "/publish", json={"tenant": "t", "key": "h1", "values": {
            "material": "M", "quantity": 2.75}})
        assert r.status_code == 200 and r.json()["status"] == "sent"
        bad = httpx.post(base + "/publish", json={"tenant": "t", "values": {"quantity": 1}})
        assert bad.status_code == 422 and "material" in bad.json()["error"]
        app.wait(1)
        assert b'"value":"2.750"' in app.raw[0]
    finally:
        rt.stop()
        app.close()


def test_bad_settings_and_contracts_fail_clearly():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"settings.colour: unknown setting .*known: "):
        TwinSpec(kind="mes-line", contract=PIECES, settings={"colour": 1})
    with pytest.raises(ValidationError, match="it is now contract.publish.format"):
        TwinSpec(kind="mes-line", contract=PIECES, settings={"format": "csv"})
    # twins built from an unchecked spec refuse them too
    spec = TwinSpec(kind="mes-line", contract=PIECES).model_copy(update={
        "settings": {"lots": "mes"}})
    with pytest.raises(TwinError, match="unknown setting 'lots'") as exc:
        MesLineTwin("m", spec, TwinEnv())
    assert "contract.publish.payload" in exc.value.hint
    cases = [
        (None, "needs a contract"),
        ({"publish": PIECES["publish"]}, "needs contract.ack"),
        ({**PIECES, "ack": {"mode": "topic", "topic": "a/{tenant}"}}, "needs 'id'"),
        ({**PIECES, "ack": {"mode": "none", "topic": "x"}}, "takes no topic"),
        ({**PIECES, "publish": {"topic": "a", "payload": {"q": "{x"}}}, "bad placeholder"),
        ({**PIECES, "publish": {"payload": {}}}, "needs 'topic'"),
        ({**PIECES, "routes": {"book": {"path": "/x"}}}, "takes no contract.routes"),
        ({**PIECES, "publish": {"topic": "a", "payload": {"x": "{good}"}}},
         "must carry the message id"),
    ]
    for contract, msg in cases:
        with pytest.raises(ValidationError, match=msg):
            TwinSpec(kind="mes-line", contract=contract)


def test_standalone_rate_publishes_the_defaults(broker):
    contract = {**BATCH, "defaults": {"material": "RM-1", "quantity": "0.5"}}
    app = App(broker, topic="mix/+/batches")
    rt, mes, _ = _mes(broker, contract, rate=50, tenant="site-9")
    try:
        app.wait(3)
        assert len(app.raw) >= 3
        body = json.loads(app.raw[0])
        assert body["material"] == "RM-1" and body["quantity"]["value"] == "0.500"
    finally:
        rt.stop()
        app.close()
    with pytest.raises(TwinError, match="needs the tenant"):
        MesLineTwin("m", TwinSpec(kind="mes-line", contract=contract, settings={"rate": 1}),
                    TwinEnv())
