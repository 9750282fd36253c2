"""The broker interface: the embedded broker and Mosquitto, exercised by real paho clients."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from plantstage.brokers import MqttBroker, open_broker, parse_mqtt_url
from plantstage.brokers.embedded import topic_matches, valid_filter
from plantstage.brokers.mqtt import BrokerError
from tests.conftest import requires_mosquitto


class Sub:
    def __init__(self, broker, topic: str, client_id: str, will: tuple | None = None):
        self.got: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if will:
            self.c.will_set(*will)
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, m.payload, m.retain))
        self.c.on_subscribe = lambda *_a: self.ready.set()
        self.c.connect(broker.host, broker.port)
        if topic:
            self.c.subscribe(topic, qos=1)
        else:
            self.ready.set()
        self.c.loop_start()
        assert self.ready.wait(5)

    def close(self, clean: bool = True) -> None:
        if clean:
            self.c.disconnect()
        else:
            self.c.socket().close()
        self.c.loop_stop()


def _wait(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def embedded():
    b = open_broker("embedded")
    yield b
    b.stop()


def test_topic_matching():
    assert topic_matches("plant/+/confirmations", "plant/acme/confirmations")
    assert not topic_matches("plant/+/confirmations", "plant/acme/confirmations/ack")
    assert topic_matches("plant/#", "plant/acme/confirmations/ack")
    assert topic_matches("#", "a")
    assert not topic_matches("#", "$SYS/broker")
    assert not valid_filter("plant/#/x") and not valid_filter("a+/b") and valid_filter("a/+/#")


def _pubsub_roundtrip(broker) -> None:
    root = f"ps-{uuid.uuid4().hex[:8]}"  # a shared broker may carry other tests' traffic
    a = Sub(broker, f"$share/{root}/{root}/+/c", f"{root}-a")
    b = Sub(broker, f"$share/{root}/{root}/+/c", f"{root}-b")
    plain = Sub(broker, f"{root}/#", f"{root}-plain")
    p = Sub(broker, "", f"{root}-pub")
    try:
        for i in range(20):
            p.c.publish(f"{root}/x/c", f"m{i}".encode(), qos=1)
        assert _wait(lambda: len(plain.got) == 20 and len(a.got) + len(b.got) == 20)
        # A shared subscription splits the stream; a plain one sees all, in order.
        assert a.got and b.got
        assert [m[1] for m in plain.got] == [f"m{i}".encode() for i in range(20)]
        assert sorted(m[1] for m in a.got + b.got) == sorted(m[1] for m in plain.got)
    finally:
        for s in (a, b, plain, p):
            s.close()


def test_embedded_broker_pubsub_and_shared_subscriptions(embedded):
    assert embedded.kind == "embedded"
    _pubsub_roundtrip(embedded)


def test_embedded_broker_retained_and_will(embedded):
    p = Sub(embedded, "", "pub")
    p.c.publish("state/line1", b"running", qos=1, retain=True).wait_for_publish(5)
    late = Sub(embedded, "state/#", "late")
    assert _wait(lambda: late.got == [("state/line1", b"running", True)])
    dying = Sub(embedded, "", "dying", will=("state/death", b"gone", 1, False))
    dying.close(clean=False)  # no DISCONNECT: the broker must publish the will
    assert _wait(lambda: ("state/death", b"gone", False) in late.got)
    p.close()
    late.close()


def test_embedded_port_in_use_is_a_plantstage_error(embedded):
    from plantstage.errors import PlantstageError

    with pytest.raises(PlantstageError, match="in use"):
        open_broker(f"embedded://{embedded.port}")


def test_mqtt_url_checks():
    assert parse_mqtt_url("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_mqtt_url("mqtt://broker") == ("broker", 1883)
    with pytest.raises(BrokerError, match="not an MQTT URL"):
        parse_mqtt_url("http://x")
    with pytest.raises(BrokerError, match="credentials"):
        parse_mqtt_url("mqtt://u:p@x")
    with pytest.raises(BrokerError, match="not reachable"):
        MqttBroker("mqtt://127.0.0.1:1").check(0.5)


@requires_mosquitto
def test_mosquitto_same_behaviour():
    b = open_broker("mqtt://127.0.0.1:1883")
    assert b.kind == "mqtt"
    _pubsub_roundtrip(b)
