"""What flows may reach besides the HTTP client: the staging database, an MQTT broker, twins."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RunResources:
    """The run's shared resources, opened lazily by the first flow that needs them.

    ``database_url`` is the app's (staging) database, opened read-only; ``mqtt_url`` the run's
    broker; ``twin_set`` the rehearsal's running twins (a :class:`plantstage.twins.TwinSet`).
    :meth:`aclose` closes what was opened; the object can be used again afterwards.
    """

    database_url: str | None = None
    mqtt_url: str | None = None
    twin_set: Any = None
    _engine: Any = None
    _mqtt: Any = None
    _mqtt_lock: asyncio.Lock | None = field(default=None, repr=False)

    def engine(self) -> Any:
        """The read-only SQLAlchemy engine on ``database_url`` (None without one)."""
        if self.database_url is None:
            return None
        if self._engine is None:
            from plantstage.engines import adapter_for

            # Read-only: a flow observes the app's database, it never changes it behind the
            # app's back (that would make the rehearsal measure something production never sees).
            self._engine = adapter_for(self.database_url).readonly_engine()
        return self._engine

    async def mqtt(self) -> Any:
        """A connected aiomqtt client on ``mqtt_url`` (shared by every flow of the run)."""
        if self._mqtt_lock is None:
            self._mqtt_lock = asyncio.Lock()
        async with self._mqtt_lock:
            if self._mqtt is None:
                import aiomqtt

                u = urlsplit(self.mqtt_url or "mqtt://127.0.0.1:1883")
                client = aiomqtt.Client(u.hostname or "127.0.0.1", u.port or 1883,
                                        identifier=f"plantstage-workload-{id(self):x}")
                await client.__aenter__()
                self._mqtt = client
            return self._mqtt

    def twins(self) -> dict[str, Any]:
        """Component name → running twin (empty without a twin set)."""
        return dict(getattr(self.twin_set, "twins", None) or {})

    async def aclose(self) -> None:
        if self._mqtt is not None:
            try:
                await self._mqtt.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001 - the broker may be gone already; nothing to keep
                pass
            self._mqtt = None
        self._mqtt_lock = None  # bound to the loop that is ending
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


__all__ = ["RunResources"]
