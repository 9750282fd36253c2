"""Record real traffic and replay it at 10x: same order, same content, faults on top."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest

from plantstage.brokers import open_broker
from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinError, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.record import load_capture, record_mqtt
from plantstage.twins.replay import ReplayTwin


@pytest.fixture
def broker():
    b = open_broker("embedded")
    yield b
    b.stop()


def _client(broker, topic=None):
    got: list[tuple[float, str, bytes]] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: got.append((time.monotonic(), m.topic, m.payload))
    c.on_subscribe = lambda *_a: ready.set()
    c.connect(broker.host, broker.port)
    if topic:
        c.subscribe(topic, qos=1)
    else:
        ready.set()
    c.loop_start()
    assert ready.wait(5)
    return c, got


def test_mqtt_capture_replays_at_10x_in_order(broker, tmp_path):
    cap = tmp_path / "cap.jsonl"
    ready = threading.Event()
    n = 12
    rec = threading.Thread(target=record_mqtt, args=(broker.url, ["plant/#"], cap),
                           kwargs={"count": n, "ready": ready})
    rec.start()
    assert ready.wait(5)
    pub, _ = _client(broker)
    sent = []
    for i in range(n):
        payload = json.dumps({"message_id": f"m{i}", "good_qty": i}).encode()
        topic = f"plant/{'acme' if i % 2 else 'blue'}/confirmations"
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
        sent.append((topic, payload))
        time.sleep(0.05)
    rec.join(10)
    capture = load_capture(cap)
    assert [(r["topic"], base64.b64decode(r["payload_b64"])) for r in capture.records] == sent
    recorded = capture.duration

    sub, got = _client(broker, "plant/#")
    spec = TwinSpec(kind="replay", replay={"file": str(cap), "speed": 10})
    rt = TwinRuntime()
    twin = ReplayTwin("replayed", spec, TwinEnv(broker_url=broker.url, base_dir=tmp_path))
    t0 = time.monotonic()
    rt.start(twin)
    try:
        for _ in range(200):
            if len(got) >= n:
                break
            time.sleep(0.01)
        assert [(t, p) for _, t, p in got] == sent  # same order, same bytes
        replayed = got[-1][0] - t0
        assert replayed < recorded  # time-scaled (10x): faster than it was recorded
    finally:
        rt.stop()
        sub.loop_stop()
        pub.loop_stop()


def test_replay_with_duplicate_fault_on_top(broker, tmp_path):
    cap = tmp_path / "cap.jsonl"
    lines = [json.dumps({"capture": 1, "protocol": "mqtt", "source": "test"})]
    for i in range(5):
        lines.append(json.dumps({"t": i * 0.01, "topic": "plant/a/confirmations", "qos": 1,
                                 "payload_b64": base64.b64encode(f"m{i}".encode()).decode()}))
    cap.write_text("\n".join(lines) + "\n")
    sub, got = _client(broker, "plant/#")
    spec = TwinSpec(kind="replay", replay={"file": "cap.jsonl", "speed": 10},
                    faults={"seed": 2, "rules": [{"kind": "duplicate", "p": 1.0}]})
    log = FaultLog()
    rt = TwinRuntime()
    rt.start(ReplayTwin("r", spec, TwinEnv(broker_url=broker.url, base_dir=tmp_path, log=log)))
    try:
        for _ in range(200):
            if len(got) >= 10:
                break
            time.sleep(0.01)
        assert [p for _, _, p in got] == [f"m{i}".encode() for i in range(5) for _ in (0, 1)]
        assert len(log.events()) == 5
    finally:
        rt.stop()
        sub.loop_stop()


def test_http_capture_is_served_back(tmp_path):
    cap = tmp_path / "http.jsonl"
    recs = [{"capture": 1, "protocol": "http", "source": "http://wms"},
            {"t": 0.0, "method": "GET", "path": "/stock", "status": 200,
             "content_type": "application/json", "body_b64": base64.b64encode(b'{"n":1}').decode()},
            {"t": 0.1, "method": "GET", "path": "/stock", "status": 200,
             "content_type": "application/json", "body_b64": base64.b64encode(b'{"n":2}').decode()}]
    cap.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    rt = TwinRuntime()
    twin = ReplayTwin("r", TwinSpec(kind="replay", replay={"file": str(cap)}),
                      TwinEnv(base_dir=tmp_path))
    rt.start(twin)
    try:
        base = twin.endpoints()["http"]
        assert [httpx.get(base + "/stock").json()["n"] for _ in range(3)] == [1, 2, 2]
        assert httpx.get(base + "/nope").status_code == 404
    finally:
        rt.stop()


@pytest.mark.parametrize("text, where", [
    ("", ":1"),
    ("not json\n", ":1"),
    ('{"capture": 1, "protocol": "mqtt"}\n{"t": 1, "topic": "a", "payload_b64": "!!"}\n', ":2"),
    ('{"capture": 1, "protocol": "mqtt"}\n{"t": 1, "topic": "a", "payload_b64": ""}\n'
     '{"t": 0.5, "topic": "a", "payload_b64": ""}\n', ":3"),
])
def test_malformed_captures_name_the_line(tmp_path, text, where):
    cap = tmp_path / "c.jsonl"
    cap.write_text(text)
    with pytest.raises(TwinError) as exc:
        load_capture(cap)
    assert exc.value.where == f"{cap}{where}"
