"""Message brokers a rehearsal runs its twins through, behind one interface.

* ``mqtt`` — a real broker you run (Mosquitto at ``mqtt://127.0.0.1:1883``); plantstage only
  checks it is reachable and connects to it.
* ``embedded`` — an in-process MQTT broker started for the run when none is configured, so the
  demo needs no service.

:func:`open_broker` picks one: an explicit URL wins, else ``PLANTSTAGE_MQTT_URL``, else the
embedded broker.
"""

from __future__ import annotations

import os
from typing import Protocol

from plantstage.brokers.embedded import EmbeddedBroker
from plantstage.brokers.mqtt import MqttBroker, parse_mqtt_url

__all__ = ["Broker", "EmbeddedBroker", "MqttBroker", "open_broker", "parse_mqtt_url"]

ENV_URL = "PLANTSTAGE_MQTT_URL"


class Broker(Protocol):
    """What the twins need from a broker: where it is, and a way to let go of it."""

    kind: str

    @property
    def url(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    def stop(self) -> None: ...


def open_broker(url: str | None = None, *, where: str | None = None) -> Broker:
    """Connect to the broker at ``url`` (or ``$PLANTSTAGE_MQTT_URL``) or start an embedded one.

    ``embedded`` or ``embedded://PORT`` asks for the in-process broker explicitly.
    """
    url = url or os.environ.get(ENV_URL) or "embedded"
    if url == "embedded" or url.startswith("embedded://"):
        port = int(url.split("://", 1)[1] or 0) if "://" in url else 0
        b = EmbeddedBroker(port=port)
        try:
            b.start()
        except OSError as exc:
            from plantstage.errors import PlantstageError

            raise PlantstageError(f"cannot start the embedded MQTT broker: {exc.strerror}",
                                  where=where or url,
                                  hint="the port is in use; choose another or use 0") from None
        return _Embedded(b)
    b2 = MqttBroker(url, where=where)
    b2.check()
    return b2


class _Embedded:
    kind = "embedded"

    def __init__(self, broker: EmbeddedBroker):
        self.broker = broker

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def host(self) -> str:
        return self.broker.host

    @property
    def port(self) -> int:
        return self.broker.port

    def stop(self) -> None:
        self.broker.stop()
