"""Plant integrations: production confirmations consumed from MQTT, goods movements to the WMS.

Both start only when configured:

* ``MQTT_URL`` (``mqtt://host:port``) — a background subscriber takes confirmations from
  ``{MQTT_TOPIC_PREFIX}/{tenant}/confirmations`` (JSON or B2MML ProductionPerformance XML) as a
  shared subscription, so several app instances consume as one group. Each message goes
  through the same idempotent code path as ``POST /api/{tenant}/confirmations`` and is
  acknowledged on ``.../confirmations/ack`` with ``{message_id, status}``.
* ``WMS_URL`` — each posted confirmation is sent to the WMS as a goods receipt
  (``POST {WMS_URL}/movements``) from an outbox thread, with retries, never in the request.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("sampleplant.integrations")
B2MML = "{http://www.mesa.org/xml/B2MML}"


def parse_confirmation(payload: bytes) -> dict[str, Any]:
    """A confirmation message as a dict (JSON, or B2MML ProductionPerformance XML)."""
    if payload.lstrip().startswith(b"<"):
        root = ET.fromstring(payload)

        def text(path: str) -> str | None:
            node = root.find(path)
            return node.text if node is not None else None

        resp = f"{B2MML}ProductionResponse"
        mat = f"{resp}/{B2MML}SegmentResponse/{B2MML}MaterialProducedActual"
        qty = {q.findtext(f"{B2MML}Key"): q.findtext(f"{B2MML}QuantityString")
               for q in root.findall(f"{mat}/{B2MML}Quantity")}
        return {"message_id": text(f"{B2MML}ID"),
                "work_order": text(f"{resp}/{B2MML}ProductionRequestID"),
                "good_qty": int(qty.get("good") or 0), "scrap_qty": int(qty.get("scrap") or 0),
                "lot": text(f"{mat}/{B2MML}LotID"), "sent_at": text(f"{B2MML}PublishedDate")}
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("a confirmation must be a JSON object")
    return body


class ConfirmationConsumer:
    """Consumes confirmations from MQTT; ``handle(tenant, message) -> status``."""

    def __init__(self, url: str, handle: Callable[[str, dict[str, Any]], str],
                 prefix: str = "plant", group: str = "sampleplant"):
        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.handle = handle
        self.prefix = prefix
        self.topic = f"$share/{group}/{prefix}/+/confirmations"
        self.stats: Counter = Counter()
        self.work: queue.Queue = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"sampleplant-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.work.put((msg.topic, msg.payload))
        self._worker = threading.Thread(target=self._run, name="mqtt-confirmations", daemon=True)

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)
            self.stats["connects"] += 1

    def start(self) -> None:
        self._worker.start()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()  # reconnects on its own when the broker goes away

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.work.put(None)
        self._worker.join(5)

    def _run(self) -> None:
        while (item := self.work.get()) is not None:
            topic, payload = item
            self.stats["received"] += 1
            tenant = topic.split("/")[-2]
            message_id = None
            try:
                msg = parse_confirmation(payload)
                message_id = msg.get("message_id")
                status = self.handle(tenant, msg)
            except Exception as exc:  # a bad message must not stop the consumer
                log.warning("confirmation on %s rejected: %s: %s", topic, type(exc).__name__,
                            exc)
                status = "rejected"
            self.stats[status] += 1
            if message_id:
                self.client.publish(f"{self.prefix}/{tenant}/confirmations/ack",
                                    json.dumps({"message_id": message_id, "status": status}),
                                    qos=1)


class WmsOutbox:
    """Sends goods movements to the WMS from a background thread, with retries."""

    def __init__(self, url: str, attempts: int = 4, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.attempts = attempts
        self.timeout = timeout
        self.stats: Counter = Counter()
        self.queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="wms-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.queue.put(None)
        self._thread.join(5)

    def send(self, movement: dict[str, Any]) -> None:
        self.queue.put(movement)

    def _run(self) -> None:
        while (m := self.queue.get()) is not None:
            data = json.dumps(m).encode()
            for attempt in range(self.attempts):
                req = urllib.request.Request(f"{self.url}/movements", data=data, method="POST",
                                             headers={"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=self.timeout) as r:
                        if r.status < 300:
                            self.stats["sent"] += 1
                            break
                except (urllib.error.URLError, OSError) as exc:
                    if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                        self.stats["refused"] += 1
                        break
                self.stats["retries"] += 1
                time.sleep(0.2 * 2 ** attempt)
            else:
                self.stats["failed"] += 1


def from_environment(handle: Callable[[str, dict[str, Any]], str]
                     ) -> tuple[ConfirmationConsumer | None, WmsOutbox | None]:
    """The integrations the environment asks for (not started)."""
    consumer = wms = None
    if url := os.environ.get("MQTT_URL", "").strip():
        consumer = ConfirmationConsumer(url, handle,
                                        prefix=os.environ.get("MQTT_TOPIC_PREFIX", "plant"))
    if url := os.environ.get("WMS_URL", "").strip():
        wms = WmsOutbox(url)
    return consumer, wms
