"""A real MQTT broker (Mosquitto or any MQTT 3.1.1 broker) reached over TCP."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from plantstage.errors import PlantstageError


class BrokerError(PlantstageError):
    """The MQTT broker could not be reached or its URL is wrong."""


def parse_mqtt_url(url: str, *, where: str | None = None) -> tuple[str, int]:
    """``mqtt://host[:port]`` → (host, port); port 1883 by default."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise BrokerError(f"not an MQTT URL: {url!r}", where=where or url,
                          hint="use mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883")
    if parts.username or parts.password:
        raise BrokerError("the MQTT URL carries credentials", where=where or url,
                          hint="plantstage connects anonymously to staging brokers")
    try:
        port = parts.port or 1883
    except ValueError:
        raise BrokerError(f"bad port in {url!r}", where=where or url,
                          hint="use mqtt://HOST:PORT") from None
    return parts.hostname, port


class MqttBroker:
    """A broker you run; plantstage connects to it and never stops it."""

    kind = "mqtt"

    def __init__(self, url: str, *, where: str | None = None):
        self._url = url
        self._where = where or url
        self._host, self._port = parse_mqtt_url(url, where=where)

    @property
    def url(self) -> str:
        return f"mqtt://{self._host}:{self._port}"

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    def check(self, timeout: float = 2.0) -> None:
        """Fail with one line if nothing listens there."""
        try:
            with socket.create_connection((self._host, self._port), timeout=timeout):
                pass
        except OSError as exc:
            raise BrokerError(f"MQTT broker not reachable ({exc.strerror or exc})",
                              where=self._where,
                              hint="start it (mosquitto -d -c /etc/mosquitto/mosquitto.conf) "
                                   "or unset it to use the embedded broker") from None

    def stop(self) -> None:
        """Nothing to stop: the broker is not ours."""
