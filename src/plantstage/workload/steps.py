"""Step kinds for business flows: timed steps, MQTT publish, wait-until-visible, database reads.

A flow is ``async def flow(client, tenant, wf, rng, ref) -> dict | None``. Inside it:

* ``async with step("post-order"):`` times one step (signals ``…<flow>.step.post-order.p95_ms``);
* ``await wait_until(probe, name=…, timeout=…)`` polls ``probe()`` until it returns a truthy value
  and records how long the effect took to become visible; on timeout it raises
  ``FlowError("timeout_<name>")``;
* ``record_e2e(seconds)`` records an asynchronous effect's end-to-end latency (event time →
  visible in the app), e.g. from a confirmation's ``sent_at`` to its stock update;
* ``await query(sql, **params)`` reads the app's database (the rehearsal's staging database);
* ``await mqtt_publish(topic, payload)`` publishes to the run's MQTT broker.

Everything a step records lands in the run's signal store; a flow raises ``FlowError(kind)`` to
count a failure by kind.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from plantstage.workload import flows as _flows


@dataclass
class RunResources:
    """What flows may reach besides the HTTP client: the database and an MQTT broker."""

    database_url: str | None = None
    mqtt_url: str | None = None
    #: Twin kind → base URL of the running twin (e.g. ``supplier-portal``), from the rehearsal.
    twins: dict[str, str] = field(default_factory=dict)
    _engine: Any = None
    _mqtt: Any = None
    _mqtt_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def engine(self):
        if self.database_url is None:
            return None
        if self._engine is None:
            from plantstage.engines import adapter_for

            # Read-only: a flow observes the app's database, it never changes it behind the
            # app's back (that would make the rehearsal measure something production never sees).
            self._engine = adapter_for(self.database_url).readonly_engine()
        return self._engine

    async def mqtt(self):
        async with self._mqtt_lock:
            if self._mqtt is None:
                import aiomqtt

                u = urlsplit(self.mqtt_url or "mqtt://127.0.0.1:1883")
                client = aiomqtt.Client(u.hostname or "127.0.0.1", u.port or 1883,
                                        identifier=f"plantstage-workload-{id(self):x}")
                await client.__aenter__()
                self._mqtt = client
            return self._mqtt

    async def aclose(self) -> None:
        if self._mqtt is not None:
            try:
                await self._mqtt.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001 - the broker may be gone already; nothing to keep
                pass
            self._mqtt = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@dataclass
class Iteration:
    """The running iteration, visible to step helpers through a context variable."""

    phase: str
    flow: str
    tenant: str
    archetype: str
    resources: RunResources
    record_step: Callable[[str, float], None]
    record_e2e: Callable[[float], None]


_current: contextvars.ContextVar[Iteration] = contextvars.ContextVar("plantstage_iteration")


def current() -> Iteration:
    """The iteration this flow call belongs to (phase, tenant, archetype, resources)."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("workload step helpers work inside a flow run by the engine") from None


def _set(it: Iteration) -> contextvars.Token:
    return _current.set(it)


@asynccontextmanager
async def step(name: str) -> AsyncIterator[None]:
    """Time the enclosed block as step ``name`` of the current flow."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        current().record_step(name, time.perf_counter() - t0)


def record_e2e(seconds: float) -> None:
    """Record an asynchronous effect's end-to-end latency (event time → visible)."""
    current().record_e2e(max(0.0, seconds))


async def wait_until(probe: Callable[[], Awaitable[Any]], *, name: str = "visible",
                     timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``probe()`` until it returns something truthy; return it. Recorded as a step.

    The poll interval doubles up to 0.25 s so a slow effect does not flood the app; a probe that
    raises ``FlowError`` fails the iteration at once (the app answered wrongly, not slowly).
    """
    t0 = time.perf_counter()
    deadline = t0 + timeout
    try:
        while True:
            value = await probe()
            if value:
                return value
            if time.perf_counter() >= deadline:
                raise _flows.FlowError(f"timeout_{name}")
            await asyncio.sleep(min(interval, max(0.0, deadline - time.perf_counter())))
            interval = min(interval * 2, 0.25)
    finally:
        current().record_step(f"wait-{name}", time.perf_counter() - t0)


async def query(sql: str, **params: Any) -> list[tuple]:
    """Rows of a read query on the app's database (raises FlowError if none is bound)."""
    engine = current().resources.engine()
    if engine is None:
        raise _flows.FlowError("no_database")

    def run() -> list[tuple]:
        import sqlalchemy as sa

        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    return await asyncio.to_thread(run)


async def mqtt_publish(topic: str, payload: Any, *, qos: int = 1) -> None:
    """Publish ``payload`` (dict → JSON) on the run's MQTT broker (``--mqtt`` / rehearsal)."""
    it = current()
    if it.resources.mqtt_url is None:
        raise _flows.FlowError("no_mqtt_broker")
    client = await it.resources.mqtt()
    data = json.dumps(payload) if not isinstance(payload, str | bytes) else payload
    await client.publish(topic, data, qos=qos)


__all__ = ["Iteration", "RunResources", "current", "mqtt_publish", "query", "record_e2e",
           "step", "wait_until"]
