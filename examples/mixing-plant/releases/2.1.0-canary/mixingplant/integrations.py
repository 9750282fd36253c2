"""Shop-floor and warehouse integrations, started when the environment configures them.

* ``MQTT_URL`` (``mqtt://host:port``): batch completions from the mixing lines arrive on
  ``mix/{site}/batches/done`` (QoS 1, at least once). The app consumes them as the shared
  subscription group ``mixingplant`` so that several instances split the stream. There is no
  application-level acknowledgement: the line only gets MQTT's PUBACK. A message that cannot
  be recorded is logged and counted as rejected.
* ``WMS_URL``: each recorded batch is announced to the warehouse system as a production
  receipt, ``POST {WMS_URL}/v2/goods-movements`` with the quantity in decimal kg, from an
  outbox thread with retries (never inside the message handling).
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
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from .db import connect, quantity
from .plant import BatchCompletion, Rejected, parse_completion, record_batch

log = logging.getLogger("mixingplant.integrations")
TOPIC = "mix/+/batches/done"
GROUP = "mixingplant"


class WmsOutbox:
    """Sends goods movements to the WMS from a background thread, with retries."""

    def __init__(self, url: str, attempts: int = 5, timeout: float = 5.0):
        self.url = url.rstrip("/") + "/v2/goods-movements"
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

    def production_receipt(self, batch: BatchCompletion) -> None:
        self.queue.put({"movementId": f"{batch.batch_id}:receipt", "type": "production-receipt",
                        "site": batch.site, "material": batch.material,
                        "quantity": quantity(batch.qty_g), "reference": batch.batch_id})

    def _run(self) -> None:
        while (movement := self.queue.get()) is not None:
            data = json.dumps(movement).encode()
            for attempt in range(self.attempts):
                req = urllib.request.Request(self.url, data=data, method="POST",
                                             headers={"content-type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=self.timeout) as r:
                        if r.status < 300:
                            self.stats["sent"] += 1
                            break
                except urllib.error.HTTPError as exc:
                    if exc.code < 500:
                        self.stats["refused"] += 1
                        log.warning("WMS refused %s: HTTP %s", movement["movementId"], exc.code)
                        break
                except (urllib.error.URLError, OSError):
                    pass
                self.stats["retries"] += 1
                time.sleep(0.2 * 2 ** attempt)
            else:
                self.stats["failed"] += 1


class BatchConsumer:
    """Consumes batch completions from MQTT and records them."""

    def __init__(self, mqtt_url: str, database_url: str, wms: WmsOutbox | None = None):
        import paho.mqtt.client as mqtt

        parts = urlsplit(mqtt_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.database_url = database_url
        self.wms = wms
        self.stats: Counter = Counter()
        self.work: queue.Queue = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"mixingplant-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.work.put((msg.topic, msg.payload))
        self._worker = threading.Thread(target=self._run, name="batch-consumer", daemon=True)

    def _on_connect(self, client: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            client.subscribe(f"$share/{GROUP}/{TOPIC}", qos=1)
            self.stats["connects"] += 1

    def start(self) -> None:
        self._worker.start()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()  # reconnects by itself when the broker goes away

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.work.put(None)
        self._worker.join(5)

    def _run(self) -> None:
        db = connect(self.database_url)
        try:
            while (item := self.work.get()) is not None:
                self.handle(db, *item)
        finally:
            db.close()

    def handle(self, db: Any, topic: str, payload: bytes) -> str:
        self.stats["received"] += 1
        try:
            batch = parse_completion(payload)
            if topic.split("/")[1] != batch.site:
                raise Rejected(f"site {batch.site!r} published on {topic}")
            status = record_batch(db, batch)
        except Rejected as exc:
            log.warning("batch completion on %s rejected: %s", topic, exc)
            status = "rejected"
        except Exception:  # one bad message must not stop the consumer
            log.exception("batch completion on %s failed", topic)
            status = "failed"
        else:
            if status == "recorded" and self.wms is not None:
                self.wms.production_receipt(batch)
        self.stats[status] += 1
        return status


class Integrations:
    def __init__(self, consumer: BatchConsumer | None, wms: WmsOutbox | None):
        self.consumer = consumer
        self.wms = wms

    def start(self) -> None:
        for part in (self.wms, self.consumer):
            if part is not None:
                part.start()

    def stop(self) -> None:
        for part in (self.consumer, self.wms):
            if part is not None:
                part.stop()

    def stats(self) -> dict[str, dict[str, int]]:
        return {"mqtt": dict(self.consumer.stats) if self.consumer else {},
                "wms": dict(self.wms.stats) if self.wms else {}}


def from_environment(database_url: str) -> Integrations:
    wms = WmsOutbox(url) if (url := os.environ.get("WMS_URL", "").strip()) else None
    consumer = None
    if url := os.environ.get("MQTT_URL", "").strip():
        consumer = BatchConsumer(url, database_url, wms)
    return Integrations(consumer, wms)
