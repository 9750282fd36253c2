"""The MES line twin against a real MQTT client playing the ERP (acks, redeliveries, faults)."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest

from plantstage.brokers import open_broker
from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.mes import MesLineTwin


class Erp:
    """Consumes confirmations like the sample plant: posts once per message_id, acks each."""

    def __init__(self, broker, ack: bool = True, double_post: bool = False):
        self.seen: list[dict] = []
        self.posted: dict[str, int] = {}
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="erp")

        def on_message(cl, _u, m):  # noqa: ANN001
            try:
                body = json.loads(m.payload)
            except ValueError:
                return  # corrupt: no ack, the MES must redeliver
            self.seen.append(body)
            mid = body["message_id"]
            dup = mid in self.posted and not double_post
            self.posted[mid] = self.posted.get(mid, 0) + (0 if dup else 1)
            if ack:
                tenant = m.topic.split("/")[1]
                cl.publish(f"plant/{tenant}/confirmations/ack",
                           json.dumps({"message_id": mid,
                                       "status": "duplicate" if dup else "posted"}), qos=1)

        self.c.on_message = on_message
        self.c.on_subscribe = lambda *_a: self.ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe("$share/erp/plant/+/confirmations", qos=1)
        self.c.loop_start()
        assert self.ready.wait(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def broker():
    b = open_broker("embedded")
    yield b
    b.stop()


def _mes(broker, rules=(), **settings):
    spec = TwinSpec(kind="mes-line", settings={"ack_timeout": 0.3, "http": False, **settings},
                    faults={"seed": 3, "rules": list(rules)})
    log = FaultLog()
    rt = TwinRuntime()
    twin = MesLineTwin("mes-line", spec, TwinEnv(broker_url=broker.url, log=log))
    rt.start(twin)
    return rt, twin, log


def test_confirmation_is_published_and_acked(broker):
    erp = Erp(broker)
    rt, mes, _ = _mes(broker)
    try:
        out = rt.call(mes.confirm("acme", "WO-1", "r1", good=4))
        assert out["status"] == "posted" and out["deliveries"] == 1
        (msg,) = erp.seen
        assert msg["work_order"] == "WO-1" and msg["good_qty"] == 4
        assert msg["scrap_qty"] <= 4 and msg["lot"] is None
        assert mes.work_orders[("acme", "WO-1")].good == 4
    finally:
        rt.stop()
        erp.close()


def test_duplicate_fault_redelivers_identical_message(broker):
    erp = Erp(broker)
    rt, mes, log = _mes(broker, [{"kind": "duplicate", "p": 1.0}])
    try:
        out = rt.call(mes.confirm("acme", "WO-1", "r1"))
        assert out["deliveries"] == 2
        assert sorted(out["acks"]) == ["duplicate", "posted"]
        assert erp.seen[0] == erp.seen[1]  # byte-identical redelivery
        assert [e.kind for e in log.events()] == ["duplicate"]
    finally:
        rt.stop()
        erp.close()


def test_a_consumer_that_posts_twice_shows_in_the_acks(broker):
    erp = Erp(broker, double_post=True)
    rt, mes, _ = _mes(broker, [{"kind": "duplicate", "p": 1.0}])
    try:
        out = rt.call(mes.confirm("acme", "WO-1", "r1"))
        assert out["acks"] == ["posted", "posted"]
    finally:
        rt.stop()
        erp.close()


def test_no_ack_means_redelivery_until_acked_or_given_up(broker):
    erp = Erp(broker, ack=False)
    rt, mes, log = _mes(broker, max_redeliveries=2)
    try:
        out = rt.call(mes.confirm("acme", "WO-1", "r1"))
        assert out["status"] is None and out["deliveries"] == 3
        assert mes.stats["unacked"] == 1
        assert [e.kind for e in log.events()] == ["redelivery", "redelivery"]
    finally:
        rt.stop()
        erp.close()


def test_dropped_and_corrupt_messages_are_redelivered(broker):
    erp = Erp(broker)
    rt, mes, log = _mes(broker, [{"kind": "corrupt", "p": 1.0, "start": 0, "duration": 0.2}])
    try:
        out = rt.call(mes.confirm("acme", "WO-1", "r1"))
        # the first delivery is damaged (no ack); the redelivery after the window is clean
        assert out["status"] == "posted" and out["deliveries"] == 2
        assert {e.kind for e in log.events()} == {"corrupt", "redelivery"}
    finally:
        rt.stop()
        erp.close()


def test_b2mml_payload_parses_back(broker):
    import xml.etree.ElementTree as ET

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="xml")
    ready = threading.Event()
    c.on_message = lambda _c, _u, m: got.append(m.payload)
    c.on_subscribe = lambda *_a: ready.set()
    c.connect(broker.host, broker.port)
    c.subscribe("plant/+/confirmations")
    c.loop_start()
    ready.wait(5)
    rt, mes, _ = _mes(broker, format="b2mml", lots="mes", max_redeliveries=0)
    try:
        rt.call(mes.confirm("acme", "WO-9", "x", good=3, wait_acks=False))
        import time

        for _ in range(100):
            if got:
                break
            time.sleep(0.02)
        root = ET.fromstring(got[0])
        ns = "{http://www.mesa.org/xml/B2MML}"
        assert root.tag == f"{ns}ProductionPerformance"
        assert root.findtext(f"{ns}ProductionResponse/{ns}ProductionRequestID") == "WO-9"
        assert root.find(f".//{ns}LotID").text == "WO-9-L001"
    finally:
        rt.stop()
        c.disconnect()
        c.loop_stop()


def test_bad_settings_fail_clearly(broker):
    from plantstage.twins.base import TwinError

    with pytest.raises(TwinError, match="unknown setting 'colour'"):
        MesLineTwin("m", TwinSpec(kind="mes-line", settings={"colour": 1}), TwinEnv())
    with pytest.raises(TwinError, match="format"):
        MesLineTwin("m", TwinSpec(kind="mes-line", settings={"format": "csv"}), TwinEnv())
