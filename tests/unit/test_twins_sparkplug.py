"""Sparkplug B from the MES twin, seen by a real MQTT client subscribed to ``spBv1.0/#``.

Runs on the embedded broker and on Mosquitto (127.0.0.1:1883, skipped when down). The client
decodes every payload with the schema and checks what a Sparkplug host application checks:
seq order and wrap, bdSeq of NBIRTH = bdSeq of NDEATH, aliases declared in the birth, and the
NDEATH Will when the twin's connection dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from plantstage.brokers import open_broker
from plantstage.spec.twins import TwinSpec
from plantstage.twins import sparkplug as spb
from plantstage.twins.base import TwinEnv, TwinRuntime
from plantstage.twins.faults import FaultLog
from plantstage.twins.mes import MesLineTwin


def _mosquitto_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), 0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request):
    if request.param == "mosquitto":
        if not _mosquitto_up():
            pytest.skip("Mosquitto is not running on 127.0.0.1:1883 "
                        "(mosquitto -d -c /etc/mosquitto/mosquitto.conf)")
        b = open_broker("mqtt://127.0.0.1:1883")
    else:
        b = open_broker("embedded")
    yield b
    b.stop()


class Host:
    """A Sparkplug host application: subscribes to spBv1.0/GROUP/# and decodes everything."""

    def __init__(self, broker, group: str):
        self.msgs: list[tuple[str, str | None, object]] = []  # (type, device, payload)
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"spb-host-{group}-{os.getpid()}")

        def on_message(_c, _u, m):  # noqa: ANN001
            g, kind, _node, device = spb.parse_topic(m.topic)
            assert g == group
            with self.lock:
                self.msgs.append((kind, device, spb.decode(m.payload)))

        self.c.on_message = on_message
        self.c.on_subscribe = lambda *_a: ready.set()
        self.c.connect(broker.host, broker.port)
        self.c.subscribe(f"spBv1.0/{group}/#", qos=1)
        self.c.loop_start()
        assert ready.wait(5)

    def wait(self, pred, timeout: float = 10.0) -> list:
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if pred(self.msgs):
                    return list(self.msgs)
            time.sleep(0.01)
        with self.lock:
            raise AssertionError(f"timed out; got {[(k, d) for k, d, _ in self.msgs]}")

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _, _ in self.msgs]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _metrics(p) -> dict:
    return {(m.name or m.alias): spb.metric_value(m) for m in p.metrics}


def _count(kind: str, n: int = 1):
    return lambda msgs: sum(1 for k, _, _ in msgs if k == kind) >= n


def contract(group: str, node: str = "MES1") -> dict:
    """Sparkplug B with the metric names a line controller might use (declared, not built in)."""
    ea = {"unit": "EA", "decimals": 0}
    return {
        "quantities": {"good": ea, "scrap": ea}, "defaults": {"good": 1, "scrap": 0, "lot": None},
        "publish": {"format": "sparkplug", "sparkplug": {
            "group": group, "node": node, "device": "Line1", "metrics": {
                "Production/GoodCount": {"type": "UInt64", "total": "good"},
                "Production/ScrapCount": {"type": "UInt64", "total": "scrap"},
                "Confirmation/MessageId": {"type": "String", "value": "{id}"},
                "Confirmation/Tenant": {"type": "String", "value": "{tenant}"},
                "Confirmation/WorkOrder": {"type": "String", "value": "{order}"},
                "Confirmation/GoodQty": {"type": "UInt32", "value": "{good}"},
                "Confirmation/ScrapQty": {"type": "UInt32", "value": "{scrap}"},
                "Confirmation/Lot": {"type": "String", "value": "{lot}"},
                "Confirmation/SentAt": {"type": "DateTime", "value": "{now}"}}}},
        "ack": {"mode": "none"}}


def _send(rt, mes, order: str, key: str, good: int | None = None) -> None:
    values = {"order": order} if good is None else {"order": order, "good": good}
    rt.call(mes.send("acme", values, key=key, wait=False))


def _mes(broker, group: str, rules=(), **settings):
    spec = TwinSpec(kind="mes-line", settings={"http": False, **settings},
                    contract=contract(group), faults={"seed": 3, "rules": list(rules)})
    log = FaultLog()
    rt = TwinRuntime()
    twin = MesLineTwin("mes-line", spec, TwinEnv(broker_url=broker.url, log=log))
    rt.start(twin)
    return rt, twin, log


def _group(tag: str) -> str:
    return f"ps{os.getpid()}{tag}{int(time.time() * 1000) % 100000}"


def test_birth_data_death_seq_wrap_and_aliases(broker):
    group = _group("a")
    host = Host(broker, group)
    rt, mes, _ = _mes(broker, group)
    try:
        host.wait(_count("DBIRTH"))
        n = 300  # more than 256 messages: seq must wrap 255 -> 0
        for i in range(n):
            _send(rt, mes, f"WO-{i % 7}", str(i), good=3)
        host.wait(_count("DDATA", n))
    finally:
        rt.stop()
    msgs = host.wait(_count("NDEATH"))
    host.close()
    kinds = [k for k, _, _ in msgs]
    assert kinds[:2] == ["NBIRTH", "DBIRTH"]
    assert kinds[-2:] == ["DDEATH", "NDEATH"]  # clean stop: device then node death
    assert kinds[2:-2] == ["DDATA"] * n
    # seq: NBIRTH is 0, then +1 per message, wrapping at 256; NDEATH carries none
    seqs = [p.seq for k, _, p in msgs if k != "NDEATH"]
    assert seqs == [i % 256 for i in range(len(seqs))]
    assert 255 in seqs and seqs.count(0) == 2
    assert not msgs[-1][2].HasField("seq")
    # bdSeq: the NBIRTH's equals the NDEATH's
    nbirth, ndeath = msgs[0][2], msgs[-1][2]
    assert _metrics(nbirth)["bdSeq"] == _metrics(ndeath)["bdSeq"] == 0
    assert _metrics(nbirth)[spb.REBIRTH] is False
    # DBIRTH declares name, alias and datatype; DDATA carries aliases only
    dbirth = msgs[1][2]
    aliases = {m.alias: m.name for m in dbirth.metrics}
    assert all(m.name and m.datatype for m in dbirth.metrics)
    assert len(aliases) == len(dbirth.metrics)
    first = msgs[2][2]
    assert all(not m.name and m.alias in aliases for m in first.metrics)
    by_name = {aliases[m.alias]: spb.metric_value(m) for m in first.metrics}
    assert by_name["Confirmation/MessageId"] == "0"
    assert by_name["Confirmation/WorkOrder"] == "WO-0"
    assert by_name["Confirmation/GoodQty"] == 3
    assert by_name["Confirmation/Lot"] is None  # is_null
    last = {aliases[m.alias]: spb.metric_value(m) for m in msgs[-3][2].metrics}
    assert last["Production/GoodCount"] == 3 * n


def test_will_fires_when_the_connection_is_killed_then_a_new_session_is_born(broker):
    group = _group("b")
    host = Host(broker, group)
    rt, mes, log = _mes(broker, group)
    try:
        host.wait(_count("DBIRTH"))
        _send(rt, mes, "WO-1", "a")
        host.wait(_count("DDATA"))
        rt.loop.call_soon_threadsafe(mes.edge.kill_connection)
        # the broker publishes the Will (NDEATH, bdSeq 0); the twin opens session 1 and is born
        host.wait(lambda m: _count("NDEATH")(m) and _count("NBIRTH", 2)(m))
        host.wait(_count("DBIRTH", 2))
        _send(rt, mes, "WO-1", "b")
        host.wait(_count("DDATA", 2))
    finally:
        rt.stop()
    msgs = host.wait(_count("NDEATH", 2))
    host.close()
    kinds = [k for k, _, _ in msgs]
    assert kinds == ["NBIRTH", "DBIRTH", "DDATA", "NDEATH", "NBIRTH", "DBIRTH", "DDATA",
                     "DDEATH", "NDEATH"]
    bd = [_metrics(p)["bdSeq"] for k, _, p in msgs if k in ("NBIRTH", "NDEATH")]
    assert bd == [0, 0, 1, 1]  # each session's death matches its birth
    assert [p.seq for k, _, p in msgs[4:8]] == [0, 1, 2, 3]  # the new NBIRTH resets seq
    assert "sparkplug-broker-disconnect" in {e.kind for e in log.events()}


def test_rebirth_command(broker):
    group = _group("c")
    host = Host(broker, group)
    rt, mes, _ = _mes(broker, group)
    try:
        host.wait(_count("DBIRTH"))
        _send(rt, mes, "WO-1", "a", good=2)
        host.wait(_count("DDATA"))
        cmd = spb.encode([(spb.MetricDef(spb.REBIRTH, -1, spb.DataType.Boolean), True)],
                         seq=None, ts=spb.now_ms(), birth=True)
        host.c.publish(f"spBv1.0/{group}/NCMD/MES1", cmd, qos=1)
        msgs = host.wait(_count("DBIRTH", 2))
    finally:
        rt.stop()
        host.close()
    births = [(k, p) for k, _, p in msgs if k.endswith("BIRTH")]
    assert [k for k, _ in births] == ["NBIRTH", "DBIRTH", "NBIRTH", "DBIRTH"]
    assert births[2][1].seq == 0 and _metrics(births[2][1])["bdSeq"] == 0  # same session
    values = {m.name: spb.metric_value(m) for m in births[3][1].metrics}
    assert values["Production/GoodCount"] == 2 and values["Confirmation/WorkOrder"] == "WO-1"


def test_duplicate_fault_repeats_a_seq_and_drop_leaves_a_gap(broker):
    group = _group("d")
    host = Host(broker, group)
    rt, mes, log = _mes(broker, group, [{"kind": "duplicate", "p": 1.0, "start": 0,
                                         "duration": 600}])
    try:
        host.wait(_count("DBIRTH"))
        _send(rt, mes, "WO-1", "a")
        msgs = host.wait(_count("DDATA", 2))
    finally:
        rt.stop()
        host.close()
    a, b = [p for k, _, p in msgs if k == "DDATA"][:2]
    assert a.SerializeToString() == b.SerializeToString() and a.seq == 2
    assert [e.kind for e in log.events() if e.kind == "duplicate"] == ["duplicate"]


def test_twin_crash_fires_the_will(broker, tmp_path):
    """A real crash: the twin's process is killed; the broker sends the registered NDEATH."""
    group = _group("e")
    host = Host(broker, group)
    script = tmp_path / "twin.py"
    script.write_text(
        "import sys, time\n"
        "from plantstage.spec.twins import TwinSpec\n"
        "from plantstage.twins.base import TwinEnv, TwinRuntime\n"
        "from plantstage.twins.mes import MesLineTwin\n"
        f"spec = TwinSpec(kind='mes-line', settings={{'http': False}},"
        f" contract={contract(group, 'MES9')!r})\n"
        f"t = MesLineTwin('mes', spec, TwinEnv(broker_url='{broker.url}'))\n"
        "TwinRuntime().start(t)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        host.wait(_count("DBIRTH"))
        os.kill(proc.pid, signal.SIGKILL)
        msgs = host.wait(_count("NDEATH"))
    finally:
        proc.kill()
        proc.wait(10)
        host.close()
    assert [k for k, _, _ in msgs] == ["NBIRTH", "DBIRTH", "NDEATH"]
    assert _metrics(msgs[0][2])["bdSeq"] == _metrics(msgs[2][2])["bdSeq"]


def test_payload_field_numbers_are_the_specifications():
    """Decode the wire format by hand: Payload.timestamp=1, metrics=2, seq=3; Metric name=1,
    alias=2, timestamp=3, datatype=4, long_value=11, string_value=15."""
    data = spb.encode([(spb.MetricDef("A/B", 5, spb.DataType.UInt64), 300),
                       (spb.MetricDef("S", 6, spb.DataType.String), "x")],
                      seq=7, ts=1000, birth=True)

    def fields(buf: bytes) -> list[tuple[int, object]]:
        out, i = [], 0
        while i < len(buf):
            key, i = _varint(buf, i)
            num, wire = key >> 3, key & 7
            if wire == 0:
                v, i = _varint(buf, i)
            elif wire == 2:
                n, i = _varint(buf, i)
                v, i = buf[i:i + n], i + n
            else:
                raise AssertionError(f"unexpected wire type {wire}")
            out.append((num, v))
        return out

    top = fields(data)
    assert (1, 1000) in top and (3, 7) in top
    metrics = [fields(v) for n, v in top if n == 2]
    assert metrics[0] == [(1, b"A/B"), (2, 5), (3, 1000), (4, 8), (11, 300)]
    assert metrics[1] == [(1, b"S"), (2, 6), (3, 1000), (4, 12), (15, b"x")]


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def test_compiled_schema_matches_the_proto_file(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools not installed "
                                 "(only needed to recompile sparkplug_b.proto)")
    from google.protobuf import descriptor_pb2

    src = spb._SCHEMA.with_suffix(".proto")
    out = tmp_path / "s.desc"
    assert protoc.main(["protoc", f"-I{src.parent}", f"--descriptor_set_out={out}",
                        src.name]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    kept = descriptor_pb2.FileDescriptorSet.FromString(spb._SCHEMA.read_bytes())
    assert fresh == kept


def test_bad_sparkplug_contracts_fail_clearly():
    from pydantic import ValidationError

    def with_spb(**change):
        c = contract("g")
        c["publish"]["sparkplug"].update(change)
        return c

    with pytest.raises(ValidationError, match="sparkplug.edge"):
        TwinSpec(kind="mes-line", contract=with_spb(edge="x"))
    with pytest.raises(ValidationError, match="single topic levels"):
        TwinSpec(kind="mes-line", contract=with_spb(group="a/b"))
    with pytest.raises(ValidationError, match="either 'value'"):
        TwinSpec(kind="mes-line", contract=with_spb(metrics={"A": {"type": "String"}}))
    c = contract("g")
    c["publish"]["format"] = "json"
    with pytest.raises(ValidationError, match="needs 'topic'|needs format: sparkplug"):
        TwinSpec(kind="mes-line", contract=c)


def test_decimal_metrics_are_exact_or_refused(broker):
    group = _group("f")
    host = Host(broker, group)
    c = contract(group)
    c["quantities"]["good"] = {"unit": "kg", "decimals": 3}
    metrics = c["publish"]["sparkplug"]["metrics"]
    metrics["Production/GoodCount"]["type"] = "Double"
    metrics["Confirmation/GoodKg"] = {"type": "String", "value": "{good}"}
    spec = TwinSpec(kind="mes-line", settings={"http": False}, contract=c)
    rt = TwinRuntime()
    mes = MesLineTwin("mes-line", spec, TwinEnv(broker_url=broker.url, log=FaultLog()))
    rt.start(mes)
    try:
        host.wait(_count("DBIRTH"))
        # Confirmation/GoodQty is UInt32: 2.75 kg would lose its decimals, so it is refused
        with pytest.raises(Exception, match="UInt32 but the value 2.750 has decimals"):
            _send(rt, mes, "WO-1", "a", good="2.75")
        _send(rt, mes, "WO-1", "b", good="3")
        msgs = host.wait(_count("DDATA"))
    finally:
        rt.stop()
        host.close()
    aliases = {m.alias: m.name for m in msgs[1][2].metrics}
    ddata = [p for k, _, p in msgs if k == "DDATA"]
    assert len(ddata) == 1
    got = {aliases[m.alias]: spb.metric_value(m) for m in ddata[0].metrics}
    assert got["Confirmation/GoodKg"] == "3.000"
    assert got["Production/GoodCount"] == 3.0  # the refused message counted for nothing
