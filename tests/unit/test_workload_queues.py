"""Queue depth during load: the embedded broker's unacked deliveries, Mosquitto's $SYS store
count, the MES twin's backlog — sampled into the signal store and summarised per phase."""

import asyncio
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest

from plantstage.brokers import EmbeddedBroker
from plantstage.signals import SignalStore
from plantstage.spec.workload import Workload, WorkloadFlow
from plantstage.workload.engine import run_phase
from plantstage.workload.plan import Lane
from plantstage.workload.queues import QueueProbe, QueueTrack
from tests.conftest import requires_mosquitto


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture()
def broker():
    b = EmbeddedBroker().start()
    yield b
    b.stop()


def _utf8(s: str) -> bytes:
    return struct.pack("!H", len(s)) + s.encode()


def _stuck_subscriber(port: int, topic: str) -> socket.socket:
    """A raw MQTT client that subscribes at QoS 1 and never acknowledges what it receives:
    a consumer that has stopped keeping up."""
    s = socket.create_connection(("127.0.0.1", port))
    body = _utf8("MQTT") + bytes([4, 2]) + struct.pack("!H", 60) + _utf8("stuck")
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4)[:1] == b"\x20"  # CONNACK
    sub = struct.pack("!H", 1) + _utf8(topic) + b"\x01"
    s.sendall(bytes([0x82, len(sub)]) + sub)
    assert s.recv(5)[:1] == b"\x90"  # SUBACK
    return s


async def publish_flow(ctx):
    await ctx.publish("plant/t1/confirmations", {"ref": ctx.ref})


def _phase(app, broker, store, phase, settle=0.5):
    wl = Workload(duration=1.0, concurrency=8, grace=1, queue_settle=settle)
    wf = WorkloadFlow(flow="test_workload_queues:publish_flow", rate=20)
    return run_phase(app, wl, [], phase, lanes=[Lane("t1", "a", wf, publish_flow, wl.arrival)],
                     store=store, mqtt_url=broker.url, queues=QueueProbe(embedded=broker))


def test_a_stuck_consumer_shows_as_queue_depth_that_does_not_drain(app, broker):
    sock = _stuck_subscriber(broker.port, "plant/+/confirmations")
    try:
        store = SignalStore()
        res = _phase(app, broker, store, "candidate")
        s = res.signals()
        n = s["workload.candidate.iterations"]
        assert n > 0 and s["workload.candidate.errors"] == 0
        assert s["workload.candidate.queue_depth.before"] == 0
        # Every QoS 1 message the workload published is still waiting for its PUBACK.
        assert s["workload.candidate.queue_depth.end"] == n
        assert s["workload.candidate.queue_depth.max"] == n
        assert s["workload.candidate.queue_drained"] == 0
        assert s["workload.candidate.queue_drain_s"] == 0.5
        series = store.series("broker.queue_depth")["broker.queue_depth"]
        assert len(series) >= 2 and series[0][1] == 0 and series[-1][1] == n
        assert [v for _, v in series] == sorted(v for _, v in series)
        assert store.get("workload.candidate.queue_depth.end") == n
    finally:
        sock.close()


def test_a_consumer_that_keeps_up_drains_back_to_baseline(app, broker):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="keeps-up")
    sub.on_message = lambda _c, _u, m: got.append(m.payload)
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("plant/+/confirmations", qos=1)
    sub.loop_start()
    try:
        time.sleep(0.2)
        s = _phase(app, broker, SignalStore(), "baseline").signals()
        assert s["workload.baseline.iterations"] > 0
        assert len(got) == s["workload.baseline.iterations"]
        assert s["workload.baseline.queue_depth.end"] == s["workload.baseline.queue_depth.before"]
        assert s["workload.baseline.queue_drained"] == 1
        assert s["workload.baseline.queue_drain_s"] < 0.5
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_mes_twin_backlog_is_read_from_its_pending_confirmations():
    class Twin:  # the MES line twin's outbox: confirmations waiting for acknowledgements
        pending: dict = {}

    twin = Twin()
    probe = QueueProbe(mes_twins=[twin])
    assert asyncio.run(probe.sample()) == {"twins.mes.backlog": 0.0}
    track = QueueTrack({"twins.mes.backlog": 0.0})
    twin.pending = {"mes-1": object(), "mes-2": object()}
    q = asyncio.run(probe.sample())
    track.add(q)
    assert q == {"twins.mes.backlog": 2.0} and not track.drained(q)
    track.end = q
    sig = track.signals("candidate")
    assert sig["workload.candidate.mes_backlog.max"] == 2
    assert sig["workload.candidate.mes_backlog.before"] == 0


def test_no_sources_no_signals(app):
    wl = Workload(duration=0.3, concurrency=2, grace=1)
    wf = WorkloadFlow(flow="x:get", rate=5)

    async def get(ctx):
        await ctx.http.get("/")

    s = run_phase(app, wl, [], "p", lanes=[Lane("t", "a", wf, get, wl.arrival)],
                  queues=QueueProbe()).signals()
    assert not [k for k in s if "queue" in k]


@requires_mosquitto
def test_mosquitto_store_count_is_read_from_sys():
    async def main():
        probe = QueueProbe(mqtt_url="mqtt://127.0.0.1:1883")
        await probe.start(wait=12)  # $SYS values are retained: they arrive on subscribe
        try:
            return await probe.sample()
        finally:
            await probe.aclose()

    q = asyncio.run(main())
    assert "broker.queue_depth" in q and q["broker.queue_depth"] >= 0
