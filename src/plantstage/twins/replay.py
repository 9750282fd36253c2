"""Replay twin: plays a recorded capture back with time scaling and the same faults on top.

MQTT captures are republished on their topics at ``t / speed``; HTTP captures are served:
each request gets the next recorded response for its method and path (the last one repeats).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import defaultdict
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
