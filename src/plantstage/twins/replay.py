"""Replay twin: plays a recorded capture back with time scaling and the same faults on top.

MQTT captures are republished on their topics at ``t / speed``; HTTP captures are served:
each request gets the next recorded response for its method and path (the last one repeats).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from plantstage.brokers import parse_mqtt_url
from plantstage.twins.base import Twin, TwinError, serve_http, stop_http
from plantstage.twins.faults import corrupt_payload
from plantstage.twins.record import Capture, load_capture


class ReplayTwin(Twin):
    kind = "replay"
    links = ("mqtt", "http")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(set())
        rs = self.spec.replay
        self.speed = rs.speed
        self.loop_capture = rs.loop
        path = self.env.base_dir / rs.file
        self.capture: Capture = load_capture(path)
        self.sent: list[tuple[float, str, bytes]] = []
        self.client: mqtt.Client | None = None
        self._player: asyncio.Task | None = None
        self._server = self._task = None
        self.port = 0
        self.finished = False

    async def _start(self) -> None:
        if self.capture.protocol == "mqtt":
            if not self.env.broker_url:
                raise TwinError("no MQTT broker to replay into", where=self.where,
                                hint="the rehearsal starts one; standalone, pass --broker")
            host, port = parse_mqtt_url(self.env.broker_url)
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                            client_id=f"plantstage-replay-{self.name}-{id(self):x}")
            c.max_inflight_messages_set(1000)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, lambda: c.connect(host, port))
            except OSError as exc:
                raise TwinError(f"MQTT broker not reachable: {exc.strerror or exc}",
                                where=self.env.broker_url, hint="is it running?") from None
            c.loop_start()
            self.client = c
            self._player = self.spawn(self._play(), "replay")
        else:
            self._responses: dict[tuple[str, str], list[dict]] = defaultdict(list)
            for rec in self.capture.records:
                self._responses[(rec["method"], rec["path"])].append(rec)
            self._served: dict[tuple[str, str], int] = defaultdict(int)
            self._server, self._task, self.port = await serve_http(self._asgi(), self.spec.port,
                                                                   self.name)

    async def _stop(self) -> None:
        if self._player is not None:
            self._player.cancel()
        await stop_http(self._server, self._task)
        if self.client is not None:
            c, self.client = self.client, None
            c.disconnect()
            c.loop_stop()

    def endpoints(self) -> dict[str, str]:
        if self.capture.protocol == "mqtt":
            return {"mqtt": f"{self.env.broker_url} (replaying {len(self.capture.records)} "
                            f"messages at {self.speed:g}x)"}
        return {"http": f"http://127.0.0.1:{self.port}"}

    def state(self) -> dict[str, Any]:
        return {"protocol": self.capture.protocol, "records": len(self.capture.records),
                "replayed": self.messages, "speed": self.speed, "finished": self.finished}

    async def _play(self) -> None:
        rnd = 0
        while True:
            t0 = time.monotonic()
            for i, rec in enumerate(self.capture.records):
                due = t0 + rec["t"] / self.speed
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                payload = base64.b64decode(rec["payload_b64"])
                key = f"{rnd}:{i}"
                d = self.faults.decide("mqtt", key)
                if d.outage:
                    await asyncio.sleep(d.outage)
                if d.delay:
                    await asyncio.sleep(d.delay)
                if d.drop:
                    continue
                if d.corrupt:
                    payload = corrupt_payload(payload, key, self.faults.plan.seed)
                for _ in range(d.copies):
                    assert self.client is not None
                    self.client.publish(rec["topic"], payload, qos=int(rec.get("qos", 1)),
                                        retain=bool(rec.get("retain", False)))
                    self.sent.append((time.monotonic() - t0, rec["topic"], payload))
                    self.messages += 1
            rnd += 1
            if not self.loop_capture:
                self.finished = True
                return

    def _asgi(self) -> Any:
        from plantstage.twins.http import FaultMiddleware

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            key = (scope["method"], scope["path"])
            if scope["path"] == "/health" and key not in self._responses:
                body, status, ctype = b'{"status":"ok","twin":"replay"}', 200, "application/json"
            elif key not in self._responses:
                body, status, ctype = b"not in the capture", 404, "text/plain"
            else:
                recs = self._responses[key]
                rec = recs[min(self._served[key], len(recs) - 1)]
                self._served[key] += 1
                self.messages += 1
                body = base64.b64decode(rec.get("body_b64", ""))
                status, ctype = int(rec["status"]), rec.get("content_type", "")
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", ctype.encode()),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        return FaultMiddleware(app, self.faults, "http")


# -- recovery: what production received since a backup, sent again -----------------------------
@dataclass
class Replayed:
    """What a recovery replay sent and how it was taken."""

    sent: int = 0
    refused: int = 0  # HTTP calls answered other than 2xx on replay
    failed: int = 0  # not delivered at all (broker or connection errors)
    ids_carried: int = 0  # ids the app generated afresh, carried into later calls
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "refused": self.refused, "failed": self.failed,
                "ids_carried": self.ids_carried, "seconds": round(self.seconds, 3),
                "notes": self.notes[:20]}


def republish(broker_url: str, messages: list[tuple[str, bytes, int]], *,
              timeout: float = 30.0) -> Replayed:
    """Publish ``(topic, payload, qos)`` messages again, in order, on the broker at
    ``broker_url`` and wait for each QoS ≥ 1 message's PUBACK (the broker holds it)."""
    out = Replayed()
    t0 = time.perf_counter()
    if not messages:
        return out
    host, port = parse_mqtt_url(broker_url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plantstage-recovery-{id(out):x}")
    c.max_inflight_messages_set(100)
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    try:
        c.connect(host, port)
    except OSError as exc:
        out.failed = len(messages)
        out.notes.append(f"broker not reachable: {exc.strerror or exc}")
        return out
    c.loop_start()
    try:
        if not connected.wait(10):
            out.notes.append("the broker did not accept the connection within 10 s")
        infos = [c.publish(topic, payload, qos=qos) for topic, payload, qos in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                out.notes.append(f"publish failed: {exc}")
            if info.is_published():
                out.sent += 1
            else:
                out.failed += 1
    finally:
        c.disconnect()
        c.loop_stop()
    out.seconds = time.perf_counter() - t0
    return out


# Hand-written: a replay after a restore must carry the ids the app generates afresh (a work
# order's number the first time is not its number on replay) into the calls that name them.
# Load tools call this "correlation" and leave it to scripts; here it is learnt from the
# recording itself, so any app's replay works without one.
_ID_KEYS = ("id", "number", "no", "ref", "uuid", "key", "code")


def _is_id_key(key: str) -> bool:
    """A JSON member that names an identity: ``id``, ``number``, ``ref`` … or ends with one
    (``order_id``, ``workOrderNumber``); statuses and quantities are never learnt."""
    k = key.lower().replace("-", "_")
    return k in _ID_KEYS or any(k.endswith("_" + i) or key.endswith(i.capitalize())
                                for i in _ID_KEYS)


def learn_ids(old: Any, new: Any, mapping: dict[Any, Any], key: str = "") -> None:
    """Walk the recorded answer ``old`` and the replayed answer ``new`` side by side; where an
    identity member differs, remember old → new in ``mapping``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old.keys() & new.keys():
            learn_ids(old[k], new[k], mapping, k)
    elif isinstance(old, list) and isinstance(new, list):
        for o, n in zip(old, new, strict=False):
            learn_ids(o, n, mapping, key)
    elif (key and _is_id_key(key) and type(old) is type(new) and isinstance(old, (str, int))
          and not isinstance(old, bool) and old != new):
        mapping[old] = new


def carry_ids(value: Any, mapping: dict[Any, Any]) -> Any:
    """``value`` (parsed JSON) with every scalar equal to a learnt old id replaced by its new
    one (same type only: the string "12" is not the number 12)."""
    if isinstance(value, dict):
        return {k: carry_ids(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [carry_ids(v, mapping) for v in value]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        new = mapping.get(value)
        return new if type(new) is type(value) else value
    return value


def _carry_target(target: str, mapping: dict[Any, Any]) -> str:
    """Path segments and query values equal to a learnt id, replaced whole."""
    from urllib.parse import quote, unquote

    by_text = {str(k): str(v) for k, v in mapping.items()}
    path, sep, query = target.partition("?")
    path = "/".join(quote(by_text[unquote(seg)], safe="") if unquote(seg) in by_text else seg
                    for seg in path.split("/"))
    if query:
        parts = []
        for pair in query.split("&"):
            name, eq, val = pair.partition("=")
            if eq and unquote(val) in by_text:
                val = quote(by_text[unquote(val)], safe="")
            parts.append(name + eq + val)
        query = "&".join(parts)
    return path + sep + query


def replay_calls(base_url: str, calls: list[Any], *, timeout: float = 30.0) -> Replayed:
    """Send recorded HTTP calls (:class:`plantstage.twins.record.Exchange`) again to the app at
    ``base_url``, one after another in their recorded order (a later call may depend on an
    earlier one's effect)."""
    import httpx

    out = Replayed()
    t0 = time.perf_counter()
    if not calls:
        return out
    mapping: dict[Any, Any] = {}  # ids the app generated first → on replay
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout) as client:
        for ex in calls:
            target, body = ex.target, ex.body
            if mapping:
                target = _carry_target(target, mapping)
                if body[:1] in (b"{", b"["):
                    try:
                        body = json.dumps(carry_ids(json.loads(body), mapping)).encode()
                    except ValueError:
                        pass  # not JSON after all: sent as recorded
            try:
                r = client.request(ex.method, target, content=body or None,
                                   headers={**({"Content-Type": "application/json"}
                                               if ex.body[:1] in (b"{", b"[") else {}),
                                            **ex.headers})
            except httpx.HTTPError as exc:
                out.failed += 1
                if len(out.notes) < 20:
                    out.notes.append(f"{ex.method} {ex.target}: {type(exc).__name__}")
                continue
            out.sent += 1
            if 200 <= r.status_code < 300 and getattr(ex, "answer", b""):
                try:
                    before = len(mapping)
                    learn_ids(json.loads(ex.answer), r.json(), mapping)
                    out.ids_carried += len(mapping) - before
                except ValueError:
                    pass  # an answer that is not JSON teaches nothing
            if not 200 <= r.status_code < 300:
                out.refused += 1
                if len(out.notes) < 20:
                    out.notes.append(f"{ex.method} {ex.target}: {r.status_code} "
                                     f"{r.text[:80]!r}")
    out.seconds = time.perf_counter() - t0
    return out
