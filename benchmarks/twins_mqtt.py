"""MES twin confirmations through Mosquitto (faults on) vs a bare paho-mqtt publisher.

Same broker, same run, same payload size; QoS 0 and QoS 1 side by side (the twin and the bare
publisher always at the same QoS). Prints both rates and the ratio per QoS.
Goal (issue #4): ≥ 5,000 messages/s from one core and ≥ 50% of the bare publisher.

A rate is counted until the broker has acknowledged every delivery (QoS 1: PUBACKs) or, at
QoS 0, until the client has written every packet to the socket.

    .venv/bin/python benchmarks/twins_mqtt.py [--n 20000] [--broker mqtt://127.0.0.1:1883]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time

import paho.mqtt.client as mqtt

from plantstage.brokers import open_broker
from plantstage.spec.twins import TwinSpec
from plantstage.twins.base import TwinEnv, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.mes import MesLineTwin


def bare(broker, n: int, payload: bytes, qos: int) -> float:
    done = threading.Event()
    acked = [0]

    def on_publish(*_a):  # noqa: ANN002
        acked[0] += 1
        if acked[0] >= n:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare")
    c.max_inflight_messages_set(128)  # the same window as the twin's default
    c.on_publish = on_publish
    c.connect(broker.host, broker.port)
    c.loop_start()
    t0 = time.perf_counter()
    for _ in range(n):
        c.publish("bench/bare/confirmations", payload, qos=qos)
    done.wait(120)
    secs = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return n / secs


#: The contract the twin publishes with: 8 fields, two whole-number quantities (the same shape
#: and size as the bare publisher's sample payload).
CONTRACT = {
    "quantities": {"good": {"unit": "EA", "decimals": 0, "encoding": "number"},
                   "scrap": {"unit": "EA", "decimals": 0, "encoding": "number"}},
    "defaults": {"scrap": 0, "item": "FG-0001"},
    "publish": {"topic": "bench/{tenant}/out", "id": "mes-x-{key}",
                "payload": {"id": "{id}", "order": "{order}", "item": "{item}",
                            "good": "{good}", "scrap": "{scrap}", "lot": None,
                            "line": "{line}", "at": "{now}"}},
    "ack": {"mode": "none"},
}


def twin(broker, n: int, qos: int) -> tuple[float, int, dict]:
    spec = TwinSpec(kind="mes-line", settings={"http": False, "qos": qos}, contract=CONTRACT,
                    faults={"seed": 1, "rules": [
                        {"kind": "duplicate", "p": 0.05}, {"kind": "corrupt", "p": 0.01},
                        {"kind": "reorder", "p": 0.01}, {"kind": "drop", "p": 0.01}]})
    log = FaultLog()
    rt = TwinRuntime()
    mes = MesLineTwin("bench-mes", spec, TwinEnv(broker_url=broker.url, log=log))
    rt.start(mes)
    acked = [0]
    mes.client.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)

    async def produce() -> None:
        batch = 500  # confirmations in flight at once, as concurrent flows would have
        for start in range(0, n, batch):
            await asyncio.gather(*(mes.send("t1", {"order": f"WO-{i % 50:06d}", "good": 5},
                                            key=f"{i:06d}", wait=False)
                                   for i in range(start, min(n, start + batch))))

    t0 = time.perf_counter()
    rt.call(produce(), timeout=300)
    target = mes.stats["deliveries"]
    while acked[0] < target and time.perf_counter() - t0 < 120:
        time.sleep(0.001)
    secs = time.perf_counter() - t0
    rt.stop()
    return n / secs, target, log.counts().get("bench-mes", {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    a = ap.parse_args()
    try:
        socket.create_connection(("127.0.0.1", 1883), 1).close()
        broker = open_broker(a.broker)
    except OSError:
        print("Mosquitto is down: using the embedded broker")
        broker = open_broker("embedded")
    sample = json.dumps({"id": "mes-x-000001", "order": "WO-000001", "item": "FG-0001",
                         "good": 5, "scrap": 0, "lot": None, "line": "bench-mes",
                         "at": "2025-01-01T00:00:00+00:00"}).encode()
    bare(broker, 2000, sample, 1)  # warm-up
    print(f"broker: {broker.url} ({broker.kind}), {a.n} confirmations per run")
    print(f"{'QoS':>3}  {'bare paho msg/s':>16}  {'MES twin conf/s':>16}  {'ratio':>6}  "
          "twin deliveries / faults")
    for qos in (0, 1):
        b = bare(broker, a.n, sample, qos)
        t, deliveries, faults = twin(broker, a.n, qos)
        print(f"{qos:>3}  {b:16,.0f}  {t:16,.0f}  {t / b:6.2f}  {deliveries} / {faults}")
    broker.stop()


if __name__ == "__main__":
    main()
