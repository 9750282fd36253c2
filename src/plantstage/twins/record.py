"""Record real traffic to a capture file, and read captures back.

A capture is JSON lines. The first line is a header, every other line one message::

    {"capture": 1, "protocol": "mqtt", "source": "mqtt://…", "started": 1712345678.9}
    {"t": 0.012, "topic": "line/t1/output", "qos": 1, "retain": false,
     "payload_b64": "eyJtZXNzYWdlX2lk…"}

    {"capture": 1, "protocol": "http", "source": "http://wms…", "started": …}
    {"t": 0.2, "method": "POST", "path": "/v1/moves", "query": "", "status": 201,
     "content_type": "application/json", "request_b64": "…", "body_b64": "…"}

MQTT is recorded by subscribing; HTTP through a recording reverse proxy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantstage.brokers import parse_mqtt_url
from plantstage.twins.base import TwinError


@dataclass
class Capture:
    protocol: str
    source: str
    records: list[dict[str, Any]]

    @property
    def duration(self) -> float:
        return self.records[-1]["t"] if self.records else 0.0


_REQUIRED = {"mqtt": ("t", "topic", "payload_b64"), "http": ("t", "method", "path", "status")}


def load_capture(path: Path) -> Capture:
    """Read and check a capture; a malformed one fails with file:line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise TwinError(f"cannot read capture: {exc.strerror}", where=str(path),
                        hint="record one with `plantstage record`") from None
    if not lines:
        raise TwinError("empty capture", where=f"{path}:1", hint="record one first")
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("capture") != 1 or \
            header.get("protocol") not in _REQUIRED:
        raise TwinError("not a plantstage capture (bad header)", where=f"{path}:1",
                        hint='the first line must be {"capture": 1, "protocol": "mqtt"|"http"}')
    proto = header["protocol"]
    records, last_t = [], 0.0
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError
            missing = [k for k in _REQUIRED[proto] if k not in rec]
            if missing:
                raise TwinError(f"record lacks '{missing[0]}'", where=f"{path}:{n}",
                                hint="re-record the capture")
            t = float(rec["t"])
            for k in ("payload_b64", "body_b64", "request_b64"):
                if k in rec:
                    base64.b64decode(rec[k], validate=True)
        except TwinError:
            raise
        except (ValueError, TypeError):
            raise TwinError("malformed record", where=f"{path}:{n}",
                            hint="each line must be one JSON object of the capture") from None
        if t < last_t:
            raise TwinError(f"time goes backwards ({t} < {last_t})", where=f"{path}:{n}",
                            hint="records must be in the order they were seen")
        last_t = t
        records.append(rec)
    return Capture(proto, str(header.get("source", "")), records)


@dataclass
class Exchange:
    """One HTTP call the app under test answered, as the client sent it."""

    at: float  # wall clock (time.time()) when it was answered
    method: str
    target: str  # path and query
    headers: dict[str, str]
    body: bytes
    status: int
    #: The app's answer (JSON answers only, at most ANSWER_LIMIT bytes): the recovery replay
    #: learns from it which ids the app generated, to carry them into later calls.
    answer: bytes = b""


#: Largest answer kept per call (bytes); larger or non-JSON answers are not kept.
ANSWER_LIMIT = 16_384


class AppTraffic:
    """The state-changing HTTP calls (not GET/HEAD/OPTIONS) made to the app during a run.

    The workload's HTTP client calls it after each answer; a recovery replays the calls the
    app acknowledged (2xx) after a backup, in the order they were answered. Bounded: past
    ``limit`` calls, the oldest half is dropped and counted (``dropped``), so a replay can say
    it is incomplete instead of silently replaying less.
    """

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, limit: int = 200_000):
        self.limit = limit
        self.calls: list[Exchange] = []
        self.dropped_before: float | None = None  # calls answered before this were dropped
        self._lock = threading.Lock()

    def __call__(self, method: str, target: str, headers: dict[str, str] | None,
                 body: bytes | None, status: int, answer: bytes | None = None) -> None:
        if method.upper() in self.SAFE:
            return
        kept = answer if answer and len(answer) <= ANSWER_LIMIT and answer[:1] in (b"{", b"[") \
            else b""
        ex = Exchange(time.time(), method.upper(), target, dict(headers or {}), body or b"",
                      int(status), kept)
        with self._lock:
            self.calls.append(ex)
            if len(self.calls) > self.limit:
                half = len(self.calls) // 2
                self.dropped_before = self.calls[half - 1].at
                del self.calls[:half]

    def since(self, t: float) -> list[Exchange]:
        """The calls answered at or after ``t`` (wall clock), in order."""
        with self._lock:
            return [c for c in self.calls if c.at >= t]

    def complete_since(self, t: float) -> bool:
        """Whether every call answered since ``t`` is still held."""
        return self.dropped_before is None or self.dropped_before < t


class _Writer:
    def __init__(self, out: Path, protocol: str, source: str):
        out.parent.mkdir(parents=True, exist_ok=True)
        self.f = out.open("w")
        self.t0 = time.monotonic()
        self.count = 0
        self.lock = threading.Lock()
        self.f.write(json.dumps({"capture": 1, "protocol": protocol, "source": source,
                                 "started": time.time()}) + "\n")

    def write(self, rec: dict[str, Any]) -> None:
        with self.lock:
            rec = {"t": round(time.monotonic() - self.t0, 6), **rec}
            self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self.count += 1

    def close(self) -> None:
        self.f.close()


def record_mqtt(url: str, topics: list[str], out: Path, *, duration: float | None = None,
                count: int | None = None, ready: threading.Event | None = None) -> int:
    """Subscribe to ``topics`` on the broker at ``url`` and write what arrives; return count."""
    import paho.mqtt.client as mqtt

    host, port = parse_mqtt_url(url)
    w = _Writer(out, "mqtt", url)
    done = threading.Event()
    subscribed = threading.Event()

    def on_connect(cl, _u, _f, rc, _p=None):  # noqa: ANN001
        cl.subscribe([(t, 1) for t in topics])

    def on_subscribe(*_a):  # noqa: ANN002
        subscribed.set()

    def on_message(_cl, _u, msg):  # noqa: ANN001
        w.write({"topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain),
                 "payload_b64": base64.b64encode(msg.payload).decode()})
        if count is not None and w.count >= count:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plantstage-rec-{id(w):x}")
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    try:
        c.connect(host, port)
    except OSError as exc:
        w.close()
        raise TwinError(f"MQTT broker not reachable: {exc.strerror or exc}", where=url,
                        hint="is the broker running?") from None
    c.loop_start()
    try:
        subscribed.wait(10)
        if ready is not None:
            ready.set()
        done.wait(duration)
    finally:
        c.disconnect()
        c.loop_stop()
        w.close()
    return w.count


def recording_proxy(target: str, out: Path) -> tuple[Any, _Writer]:
    """An ASGI reverse proxy to ``target`` that records each exchange; (app, writer)."""
    import httpx

    w = _Writer(out, "http", target)
    client = httpx.AsyncClient(base_url=target, timeout=30)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]
                   if k.lower() not in (b"host", b"content-length")]
        try:
            r = await client.request(scope["method"], scope["path"],
                                     params=scope["query_string"].decode(), content=body,
                                     headers=headers)
            status, content, ctype = r.status_code, r.content, r.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            status, content, ctype = 502, f"proxy: {exc}".encode(), "text/plain"
        w.write({"method": scope["method"], "path": scope["path"],
                 "query": scope["query_string"].decode(), "status": status,
                 "content_type": ctype, "request_b64": base64.b64encode(body).decode(),
                 "body_b64": base64.b64encode(content).decode()})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    return app, w


def record_http(target: str, out: Path, port: int, *, duration: float | None = None,
                on_ready: Any = None) -> int:
    """Run a recording proxy on ``127.0.0.1:port`` in front of ``target``; return count."""
    from plantstage.twins.base import serve_http, stop_http

    app, w = recording_proxy(target, out)

    async def main() -> None:
        server, task, bound = await serve_http(app, port, "record")
        if on_ready is not None:
            on_ready(bound)
        try:
            if duration is None:
                await task
            else:
                await asyncio.sleep(duration)
        finally:
            await stop_http(server, task)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise TwinError(f"cannot listen on port {port}: {exc.strerror or exc}",
                        where=f"127.0.0.1:{port}", hint="choose another --listen port") from None
    finally:
        w.close()
    return w.count
