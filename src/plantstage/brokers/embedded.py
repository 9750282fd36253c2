"""An in-process MQTT 3.1.1 broker for the embedded default (no service to install).

Why hand-written: amqtt (the maintained asyncio broker) works on Python 3.11 but does not
implement shared subscriptions (``$share/GROUP/FILTER``). The sample plant runs blue and green
app versions side by side and both consume production confirmations as one consumer group —
exactly what Mosquitto's shared subscriptions do in production. A twin rehearsal on the embedded
default must behave like the real broker there, so we keep a small broker that speaks the
subset of MQTT 3.1.1 a rehearsal needs: QoS 0/1 (QoS 2 accepted from publishers and delivered
at QoS 1), retained messages, wills, ``+``/``#`` wildcards, ``$share`` groups (round-robin),
client-id takeover, keep-alive. Sessions are clean (no persistence): a rehearsal never needs to
resume yesterday's session. Real clients (paho-mqtt) talk to it over real TCP.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import threading
from dataclasses import dataclass, field

log = logging.getLogger("plantstage.broker")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


class ProtocolError(Exception):
    """The peer sent something that is not MQTT 3.1.1; the connection is closed."""


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest; ``$`` topics are private)."""
    if topic.startswith("$") and not filter_.startswith("$"):
        return False
    f_parts = filter_.split("/")
    t_parts = topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts):
            return False
        if f != "+" and f != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)


def valid_filter(filter_: str) -> bool:
    if not filter_:
        return False
    parts = filter_.split("/")
    for i, p in enumerate(parts):
        if "#" in p and (p != "#" or i != len(parts) - 1):
            return False
        if "+" in p and p != "+":
            return False
    return True


def _encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, pid: int | None,
                   dup: bool = False) -> bytes:
    header = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    body = _utf8(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return bytes([header]) + _encode_length(len(body)) + body


@dataclass
class _Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(eq=False)
class _Client:
    client_id: str
    writer: asyncio.StreamWriter
    subs: dict[str, int] = field(default_factory=dict)  # plain filter -> granted qos
    pid: itertools.count = field(default_factory=lambda: itertools.count(1))
    will: _Will | None = None
    closed: bool = False
    #: QoS 1 deliveries sent to this client and not yet acknowledged (PUBACK), by packet id.
    inflight: set[int] = field(default_factory=set)

    def next_pid(self) -> int:
        return (next(self.pid) - 1) % 65535 + 1

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)


@dataclass
class _Group:
    members: list[tuple[_Client, int]] = field(default_factory=list)
    turn: int = 0


class EmbeddedBroker:
    """An MQTT broker on ``127.0.0.1:port`` running in its own thread and event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._clients: dict[str, _Client] = {}
        self._groups: dict[tuple[str, str], _Group] = {}  # (group, filter) -> members
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.messages_in = 0
        self.messages_out = 0

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> EmbeddedBroker:
        self._thread = threading.Thread(target=self._run, name="plantstage-mqtt", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            return

        async def _close() -> None:
            if self._server is not None:
                self._server.close()
            for c in list(self._clients.values()):
                c.closed = True
                c.writer.close()
            for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                t.cancel()

        asyncio.run_coroutine_threadsafe(_close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    def stats(self) -> dict[str, int]:
        """Read-only queue counters (the workload's queue-depth signal); any thread may call.

        ``inflight``: QoS 1 messages delivered and not yet acknowledged by their subscriber;
        ``queued_bytes``: bytes waiting in the clients' socket buffers.
        """
        def read() -> dict[str, int]:
            clients = [c for c in self._clients.values() if not c.closed]
            return {"clients": len(clients), "inflight": sum(len(c.inflight) for c in clients),
                    "queued_bytes": sum(c.writer.transport.get_write_buffer_size()
                                        for c in clients),
                    "retained": len(self._retained), "messages_in": self.messages_in,
                    "messages_out": self.messages_out}

        loop = self._loop
        if loop is None or not loop.is_running():
            return read()

        async def on_loop() -> dict[str, int]:  # the broker's state is owned by its loop
            return read()

        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result(2)

    # -- routing --------------------------------------------------------------------------
    def _route(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
        self.messages_in += 1
        if retain:
            if payload:
                self._retained[topic] = (payload, qos)
            else:
                self._retained.pop(topic, None)
        for c in list(self._clients.values()):
            best = -1
            for f, q in c.subs.items():
                if q > best and topic_matches(f, topic):
                    best = q
            if best >= 0:
                self._deliver(c, topic, payload, min(qos, best), False)
        for (_, f), g in self._groups.items():
            if g.members and topic_matches(f, topic):
                client, q = g.members[g.turn % len(g.members)]
                g.turn += 1
                self._deliver(client, topic, payload, min(qos, q), False)

    def _deliver(self, c: _Client, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.messages_out += 1
        pid = c.next_pid() if qos else None
        if pid is not None:
            c.inflight.add(pid)
        c.send(publish_packet(topic, payload, qos, retain, pid))

    def _drop_client(self, c: _Client) -> None:
        c.closed = True
        if self._clients.get(c.client_id) is c:
            del self._clients[c.client_id]
        for g in self._groups.values():
            g.members = [(m, q) for m, q in g.members if m is not c]

    # -- one connection ---------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client: _Client | None = None
        clean = False
        try:
            ptype, flags, body = await asyncio.wait_for(self._read_packet(reader), 10)
            if ptype != CONNECT:
                raise ProtocolError("first packet is not CONNECT")
            client, keepalive = self._connect(body, writer)
            if client is None:
                return
            timeout = keepalive * 1.5 if keepalive else None
            while True:
                ptype, flags, body = await asyncio.wait_for(self._read_packet(reader), timeout)
                if ptype == DISCONNECT:
                    clean = True
                    break
                self._packet(client, ptype, flags, body)
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ProtocolError,
                asyncio.CancelledError) as exc:
            if isinstance(exc, ProtocolError):
                log.debug("closing client: %s", exc)
        finally:
            if client is not None:
                self._drop_client(client)
                if not clean and client.will is not None:
                    w = client.will
                    self._route(w.topic, w.payload, w.qos, w.retain)
            writer.close()

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, mult = 0, 1
        for _ in range(4):
            b = (await reader.readexactly(1))[0]
            length += (b & 0x7F) * mult
            if not b & 0x80:
                break
            mult *= 128
        else:
            raise ProtocolError("malformed remaining length")
        body = await reader.readexactly(length) if length else b""
        return first >> 4, first & 0x0F, body

    @staticmethod
    def _str(body: bytes, pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("!H", body, pos)
        return body[pos + 2:pos + 2 + n].decode(), pos + 2 + n

    @staticmethod
    def _bin(body: bytes, pos: int) -> tuple[bytes, int]:
        (n,) = struct.unpack_from("!H", body, pos)
        return body[pos + 2:pos + 2 + n], pos + 2 + n

    def _connect(self, body: bytes, writer: asyncio.StreamWriter) -> tuple[_Client | None, int]:
        name, pos = self._str(body, 0)
        level, cflags = body[pos], body[pos + 1]
        (keepalive,) = struct.unpack_from("!H", body, pos + 2)
        pos += 4
        if name not in ("MQTT", "MQIsdp") or level not in (3, 4):
            writer.write(bytes([CONNACK << 4, 2, 0, 1]))  # unacceptable protocol version
            return None, 0
        client_id, pos = self._str(body, pos)
        if not client_id:
            client_id = f"auto-{id(writer):x}"
        will = None
        if cflags & 0x04:
            wt, pos = self._str(body, pos)
            wp, pos = self._bin(body, pos)
            will = _Will(wt, wp, min((cflags >> 3) & 3, 1), bool(cflags & 0x20))
        old = self._clients.get(client_id)
        if old is not None:  # client-id takeover, as the spec requires
            self._drop_client(old)
            old.writer.close()
        client = _Client(client_id, writer, will=will)
        self._clients[client_id] = client
        writer.write(bytes([CONNACK << 4, 2, 0, 0]))
        return client, keepalive

    def _packet(self, c: _Client, ptype: int, flags: int, body: bytes) -> None:
        if ptype == PUBLISH:
            qos = (flags >> 1) & 3
            topic, pos = self._str(body, 0)
            if qos:
                (pid,) = struct.unpack_from("!H", body, pos)
                pos += 2
                c.send(bytes([(PUBACK if qos == 1 else PUBREC) << 4, 2]) + struct.pack("!H", pid))
            if "+" in topic or "#" in topic:
                raise ProtocolError("wildcard in a PUBLISH topic")
            self._route(topic, body[pos:], min(qos, 1), bool(flags & 1))
        elif ptype == PUBREL:
            c.send(bytes([PUBCOMP << 4, 2]) + body[:2])
        elif ptype in (PUBACK, PUBCOMP, PUBREC):
            if ptype == PUBACK and len(body) >= 2:
                c.inflight.discard(struct.unpack_from("!H", body, 0)[0])
            if ptype == PUBREC:
                c.send(bytes([(PUBREL << 4) | 2, 2]) + body[:2])
        elif ptype == SUBSCRIBE:
            (pid,) = struct.unpack_from("!H", body, 0)
            pos, granted = 2, []
            while pos < len(body):
                f, pos = self._str(body, pos)
                q = min(body[pos] & 3, 1)
                pos += 1
                granted.append(self._subscribe(c, f, q))
            payload = struct.pack("!H", pid) + bytes(granted)
            c.send(bytes([SUBACK << 4]) + _encode_length(len(payload)) + payload)
        elif ptype == UNSUBSCRIBE:
            (pid,) = struct.unpack_from("!H", body, 0)
            pos = 2
            while pos < len(body):
                f, pos = self._str(body, pos)
                self._unsubscribe(c, f)
            c.send(bytes([UNSUBACK << 4, 2]) + struct.pack("!H", pid))
        elif ptype == PINGREQ:
            c.send(bytes([PINGRESP << 4, 0]))
        else:
            raise ProtocolError(f"unexpected packet type {ptype}")

    def _subscribe(self, c: _Client, f: str, q: int) -> int:
        if f.startswith("$share/"):
            parts = f.split("/", 2)
            if len(parts) < 3 or not parts[1] or not valid_filter(parts[2]):
                return 0x80
            g = self._groups.setdefault((parts[1], parts[2]), _Group())
            g.members = [(m, mq) for m, mq in g.members if m is not c] + [(c, q)]
            return q  # retained messages are not sent to shared subscriptions
        if not valid_filter(f):
            return 0x80
        c.subs[f] = q
        for topic, (payload, rq) in self._retained.items():
            if topic_matches(f, topic):
                self._deliver(c, topic, payload, min(q, rq), True)
        return q

    def _unsubscribe(self, c: _Client, f: str) -> None:
        if f.startswith("$share/"):
            parts = f.split("/", 2)
            g = self._groups.get((parts[1], parts[2])) if len(parts) == 3 else None
            if g is not None:
                g.members = [(m, q) for m, q in g.members if m is not c]
        else:
            c.subs.pop(f, None)
