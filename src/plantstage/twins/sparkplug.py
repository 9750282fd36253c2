"""Sparkplug B for the MES twin: the edge-node session, its topics and its protobuf payloads.

The MES twin with ``format: sparkplug`` is a Sparkplug B *edge node* (``node``) with one
*device* (the line). It publishes on ``spBv1.0/<group>/<TYPE>/<node>[/<device>]``:

* at every (re)connect: ``NBIRTH`` (seq 0, the session's ``bdSeq``, ``Node Control/Rebirth``)
  then ``DBIRTH`` (every device metric with name, alias, datatype and current value);
* per confirmation: ``DDATA`` — metrics by **alias only**, as the birth declared them;
* on a clean stop: ``DDEATH`` then ``NDEATH`` (with the session's ``bdSeq``), then DISCONNECT;
* on a crash or a lost connection the broker publishes the ``NDEATH`` that was registered as
  the MQTT Will in CONNECT, carrying the same ``bdSeq`` as that session's NBIRTH.

``seq`` runs 0–255 and wraps; NBIRTH resets it to 0; NDEATH carries none. ``bdSeq`` runs
0–255, one per MQTT session. A host's ``NCMD`` with ``Node Control/Rebirth = true`` makes the
node publish its births again.

Payloads use the schema in ``sparkplug_b.proto`` (written from the specification), loaded
from its compiled descriptor with the protobuf runtime. Why not a Sparkplug library:
pysparkplug (the maintained one) pins ``paho-mqtt<2`` and this project is on paho-mqtt 2
(aiomqtt needs it), so the two cannot be installed together.

Each session uses a fresh MQTT client without paho's automatic reconnect: a new session must
get a new Will (the next ``bdSeq``), and messages still queued from the dead session must not
be sent after the new NBIRTH (they would carry stale ``seq`` numbers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from plantstage.twins.mqttio import LoopAdapter

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
_SCHEMA = Path(__file__).with_name("sparkplug_b.desc")


class DataType(IntEnum):
    """Sparkplug B data types used by plantstage (numbers fixed by the specification)."""

    Int32 = 3
    Int64 = 4
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13


#: Which oneof field of ``Metric`` carries a value of each data type.
_VALUE_FIELD = {
    DataType.Int32: "int_value", DataType.UInt32: "int_value",
    DataType.Int64: "long_value", DataType.UInt64: "long_value",
    DataType.DateTime: "long_value", DataType.Float: "float_value",
    DataType.Double: "double_value", DataType.Boolean: "boolean_value",
    DataType.String: "string_value",
}


@cache
def payload_class() -> type:
    """The ``org.eclipse.tahu.protobuf.Payload`` message class, built from the schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fds = descriptor_pb2.FileDescriptorSet.FromString(_SCHEMA.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload"))


def now_ms() -> int:
    return int(time.time() * 1000)


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    """``spBv1.0/<group>/<kind>/<node>[/<device>]``."""
    return f"{NAMESPACE}/{group}/{kind}/{node}" + (f"/{device}" if device else "")


def parse_topic(t: str) -> tuple[str, str, str, str | None]:
    """(group, message type, edge node, device or None) of a Sparkplug B topic."""
    parts = t.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        raise ValueError(f"not a Sparkplug B topic: {t!r}")
    return parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None


def _set_value(m: Any, datatype: DataType, value: Any) -> None:
    if value is None:
        m.is_null = True
        return
    setattr(m, _VALUE_FIELD[datatype], value)


def metric_value(m: Any) -> Any:
    """The Python value of a decoded metric (None when ``is_null``)."""
    if m.is_null:
        return None
    which = m.WhichOneof("value")
    return getattr(m, which) if which else None


@dataclass(frozen=True)
class MetricDef:
    """A metric declared in a BIRTH: its alias is what DATA messages carry."""

    name: str
    alias: int
    datatype: DataType


def encode(metrics: list[tuple[MetricDef, Any]], *, seq: int | None, ts: int,
           birth: bool) -> bytes:
    """A Sparkplug B payload. BIRTH metrics carry name, alias and datatype; DATA the alias."""
    p = payload_class()()
    p.timestamp = ts
    if seq is not None:
        p.seq = seq
    for d, value in metrics:
        m = p.metrics.add()
        if birth or d.alias < 0:
            m.name = d.name
            m.datatype = d.datatype
        if d.alias >= 0:
            m.alias = d.alias
        m.timestamp = ts
        _set_value(m, d.datatype, value)
    return p.SerializeToString()


def decode(data: bytes) -> Any:
    """Parse a Sparkplug B payload (raises ``google.protobuf.message.DecodeError``)."""
    return payload_class().FromString(data)


class EdgeNode:
    """One Sparkplug B edge node session manager, driven from an asyncio loop.

    ``publish``-type methods must be called in ``loop`` (the twin loop), which owns ``seq``.
    ``device_values`` returns the current value of every device metric (for DBIRTH).
    """

    def __init__(self, *, host: str, port: int, group: str, node: str, device: str,
                 device_metrics: list[MetricDef], device_values: Callable[[], dict[str, Any]],
                 qos: int, loop: asyncio.AbstractEventLoop, client_id: str,
                 on_event: Callable[[str, str], None] = lambda kind, detail: None,
                 max_inflight: int = 1000,
                 on_publish: Callable[[mqtt.Client, int], None] | None = None):
        self.host, self.port = host, port
        self.group, self.node, self.device = group, node, device
        self.metrics = device_metrics
        self.by_name = {m.name: m for m in device_metrics}
        self.device_values = device_values
        self.qos = qos
        self.loop = loop
        self.client_id = client_id
        self.on_event = on_event
        self.max_inflight = max_inflight
        self.on_publish = on_publish
        self.rebirth_def = MetricDef(REBIRTH, 0, DataType.Boolean)
        self.bd_seq_def = MetricDef(BD_SEQ, -1, DataType.Int64)  # by name: the Will has no alias
        self.bd_seq = -1  # the current session's; the first CONNECT carries 0
        self.seq = 0
        self.sessions = 0
        self.client: mqtt.Client | None = None
        self.online = asyncio.Event()
        self._stopping = False
        self.io: LoopAdapter | None = None
        self._reconnect_task: asyncio.Task | None = None
        self.topics = {k: topic(group, k, node) for k in ("NBIRTH", "NDEATH", "NCMD")}
        self.topics.update({k: topic(group, k, node, device)
                            for k in ("DBIRTH", "DDATA", "DDEATH")})

    # -- seq --------------------------------------------------------------------------------
    def next_seq(self) -> int:
        s = self.seq
        self.seq = (s + 1) % 256
        return s

    # -- session ------------------------------------------------------------------------------
    async def connect(self, timeout: float = 10) -> None:
        """Open a new MQTT session (next bdSeq, NDEATH as the Will) and publish the births."""
        bd = (self.bd_seq + 1) % 256
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"{self.client_id}-s{self.sessions}")
        self.sessions += 1
        c.max_inflight_messages_set(self.max_inflight)
        c.max_queued_messages_set(0)
        # The Will is the NDEATH of this very session: same bdSeq as the NBIRTH that follows.
        c.will_set(self.topics["NDEATH"], self.ndeath(bd), qos=1, retain=False)
        up = asyncio.Event()

        def on_connect(cl, _u, _f, rc, _p=None):  # noqa: ANN001
            if not rc.is_failure:
                cl.subscribe(self.topics["NCMD"], qos=1)
                self._born(cl, up)

        def on_message(_cl, _u, msg):  # noqa: ANN001
            self._command(msg.payload)

        c.on_connect, c.on_message = on_connect, on_message
        if self.on_publish is not None:
            hook = self.on_publish
            c.on_publish = lambda cl, _u, mid, _rc=None, _p=None: hook(cl, mid)
        io = LoopAdapter(c, self.loop, reconnect=False, on_lost=lambda why: self._lost(c, why))
        self.client, self.io = c, io
        io.connect(self.host, self.port)
        self.bd_seq = bd  # CONNECT (with this Will) is on its way: the bdSeq is spent
        try:
            await asyncio.wait_for(up.wait(), timeout)
        except TimeoutError:
            io.close()
            raise

    def _born(self, cl: mqtt.Client, up: asyncio.Event) -> None:
        if self.client is not cl:
            return
        self.birth()
        up.set()

    def birth(self) -> None:
        """NBIRTH (seq reset to 0, bdSeq of this session) then DBIRTH; the node is online."""
        assert self.client is not None
        ts = now_ms()
        self.seq = 0
        self.client.publish(self.topics["NBIRTH"], encode(
            [(self.bd_seq_def, self.bd_seq), (self.rebirth_def, False)],
            seq=self.next_seq(), ts=ts, birth=True), qos=self.qos)
        values = self.device_values()
        self.client.publish(self.topics["DBIRTH"], encode(
            [(d, values.get(d.name)) for d in self.metrics],
            seq=self.next_seq(), ts=ts, birth=True), qos=self.qos)
        self.online.set()
        self.on_event("birth", f"NBIRTH bdSeq={self.bd_seq}")

    def ndeath(self, bd_seq: int) -> bytes:
        return encode([(self.bd_seq_def, bd_seq)], seq=None, ts=now_ms(), birth=True)

    def _command(self, payload: bytes) -> None:
        try:
            p = decode(payload)
        except Exception:  # noqa: BLE001 - a bad command from a host is ignored, as nodes do
            self.on_event("bad-command", "NCMD payload is not Sparkplug B")
            return
        for m in p.metrics:
            if (m.name == REBIRTH or m.alias == self.rebirth_def.alias and not m.name) and \
                    metric_value(m) is True and self.online.is_set():
                self.birth()

    def _lost(self, cl: mqtt.Client, why: str) -> None:
        if self.client is not cl or self._stopping:
            return
        # The broker publishes our Will (NDEATH) now; a new session needs a new bdSeq.
        self.online.clear()
        self.on_event("broker-disconnect", why)
        self._reconnect_task = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await self.connect()
                return
            except (OSError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def stop(self) -> None:
        """Clean stop: DDEATH, NDEATH (this session's bdSeq), then DISCONNECT."""
        self._stopping = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        c, self.client = self.client, None
        if c is None:
            return
        if self.online.is_set():
            self.online.clear()
            ts = now_ms()
            infos = [c.publish(self.topics["DDEATH"], encode([], seq=self.next_seq(), ts=ts,
                                                             birth=False), qos=1),
                     c.publish(self.topics["NDEATH"], self.ndeath(self.bd_seq), qos=1)]
            end = self.loop.time() + 2.0
            while not all(i.is_published() for i in infos) and self.loop.time() < end:
                await asyncio.sleep(0.005)
            await self.io.flush()
        self.io.close()

    # -- data -------------------------------------------------------------------------------
    def ddata(self, values: dict[str, Any]) -> tuple[str, bytes]:
        """Topic and payload of one DDATA (metrics by alias; takes the next seq)."""
        return self.topics["DDATA"], encode(
            [(self.by_name[k], v) for k, v in values.items()],
            seq=self.next_seq(), ts=now_ms(), birth=False)

    def kill_connection(self) -> None:
        """Drop the TCP connection without DISCONNECT (tests: the broker must send the Will)."""
        import socket

        sock = self.client.socket() if self.client is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)  # the loop sees EOF: a lost session, then a new one
