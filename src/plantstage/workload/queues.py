"""Queue depth while the workload runs: the broker's backlog and the MES twin's unacked outbox.

A release can keep up with its HTTP calls and still fall behind on its message consumers: the
broker then holds more and more messages, and the MES line twin waits for more and more
acknowledgements. The engine samples this probe every second into the signal store
(``broker.queue_depth``, ``twins.mes.backlog``) and summarises every phase
(``workload.<phase>.queue_depth.{before,max,end,drain_s}``), so a gate can check that the queues
came back to where they were before the load.

Sources:

* the embedded broker: QoS 1 messages delivered and not yet acknowledged by their subscriber
  (:meth:`plantstage.brokers.embedded.EmbeddedBroker.stats`);
* Mosquitto (or any broker publishing Mosquitto's ``$SYS`` tree): ``$SYS/broker/store/messages/
  count`` (``$SYS/broker/messages/stored`` on older versions) — every message the broker holds,
  retained ones included, hence the comparison with the level *before* the phase. Mosquitto
  refreshes ``$SYS`` every ``sys_interval`` seconds (default 10): set ``sys_interval 1`` on a
  staging broker for a per-second series;
* MES line twins: confirmations published and not yet acknowledged by the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("plantstage.workload")

#: Mosquitto's ``$SYS`` topics → our series; the first one a broker publishes wins.
SYS_TOPICS = {
    "$SYS/broker/store/messages/count": "broker.queue_depth",
    "$SYS/broker/messages/stored": "broker.queue_depth",
    "$SYS/broker/messages/inflight": "broker.inflight",
}

#: Series name → the short name of its per-phase summary (``workload.<phase>.<short>.<stat>``).
SUMMARY_NAMES = {
    "broker.queue_depth": "queue_depth",
    "broker.queued_bytes": "broker_queued_bytes",
    "broker.inflight": "broker_inflight",
    "twins.mes.backlog": "mes_backlog",
}


class QueueProbe:
    """Reads queue depths from whichever sources the run has; ``sample()`` → series values.

    A source that cannot be read is left out of the sample (logged once), never fails the run:
    the queue-depth signal is evidence, and its absence is visible to the gates.
    """

    def __init__(self, *, embedded: Any = None, mqtt_url: str | None = None,
                 mes_twins: Iterable[Any] = ()):
        self.embedded = embedded  # an EmbeddedBroker (has .stats())
        self.mqtt_url = mqtt_url  # a real broker whose $SYS tree is read
        self.mes_twins = list(mes_twins)
        self._sys: dict[str, float] = {}
        self._sys_source: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        self._warned: set[str] = set()

    @classmethod
    def for_twins(cls, twinset: Any) -> QueueProbe | None:
        """The probe for a rehearsal's twins (its broker and MES line twins), or None."""
        if twinset is None:
            return None
        broker = getattr(twinset, "broker", None)
        embedded = getattr(broker, "broker", None) if getattr(broker, "kind", "") == "embedded" \
            else None
        mqtt_url = broker.url if broker is not None and embedded is None else None
        mes = list(twinset.get("mes-line") or []) if hasattr(twinset, "get") else []
        if embedded is None and mqtt_url is None and not mes:
            return None
        return cls(embedded=embedded, mqtt_url=mqtt_url, mes_twins=mes)

    @property
    def empty(self) -> bool:
        return self.embedded is None and self.mqtt_url is None and not self.mes_twins

    async def start(self, wait: float = 5.0) -> None:
        """Subscribe to the broker's ``$SYS`` tree (if any); wait briefly for its first values.

        Mosquitto's ``$SYS`` messages are retained, so the current level arrives on subscribe.
        """
        if self.mqtt_url is None or self._task is not None:
            return
        first = asyncio.Event()
        self._task = asyncio.create_task(self._listen(first))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), wait)

    async def _listen(self, first: asyncio.Event) -> None:
        from urllib.parse import urlsplit

        import aiomqtt

        u = urlsplit(self.mqtt_url or "")
        try:
            async with aiomqtt.Client(u.hostname or "127.0.0.1", u.port or 1883,
                                      identifier=f"plantstage-queues-{id(self):x}") as client:
                for topic in SYS_TOPICS:
                    await client.subscribe(topic)
                async for msg in client.messages:
                    topic = str(msg.topic)
                    name = SYS_TOPICS.get(topic)
                    if name is None:
                        continue
                    # store/messages/count replaces the deprecated messages/stored when both
                    # are published; keep whichever came first for the whole run.
                    if self._sys_source.setdefault(name, topic) != topic:
                        continue
                    try:
                        self._sys[name] = float(bytes(msg.payload).decode())  # type: ignore[arg-type]
                    except (TypeError, ValueError):
                        continue
                    first.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker's $SYS tree is optional evidence
            self._warn("mqtt", f"cannot read $SYS from {self.mqtt_url}: {exc}")

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    async def sample(self) -> dict[str, float]:
        """Current depths, by series name (only the sources this run has)."""
        out: dict[str, float] = dict(self._sys)
        if self.embedded is not None:
            try:
                st = await asyncio.to_thread(self.embedded.stats)
            except Exception as exc:  # noqa: BLE001 - a stopped broker has no depth to report
                self._warn("embedded", f"cannot read the embedded broker's queues: {exc}")
            else:
                out["broker.queue_depth"] = float(st["inflight"])
                out["broker.queued_bytes"] = float(st["queued_bytes"])
        if self.mes_twins:
            # len() of a dict owned by the twin's thread: an atomic read in CPython.
            out["twins.mes.backlog"] = float(sum(len(getattr(t, "pending", ()))
                                                 for t in self.mes_twins))
        return out

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class QueueTrack:
    """One phase's queue depths: the level before, the maximum, the end and the drain time."""

    def __init__(self, before: dict[str, float]):
        self.before = dict(before)
        self.max = dict(before)
        self.end: dict[str, float] = {}
        self.drain_s: float | None = None
        self.drained_ok: bool | None = None

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            if v > self.max.get(k, float("-inf")):
                self.max[k] = v

    def drained(self, values: dict[str, float]) -> bool:
        """Every depth back to (or below) its level before the phase."""
        return all(v <= self.before.get(k, 0.0) for k, v in values.items())

    def signals(self, phase: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in sorted(set(self.before) | set(self.max) | set(self.end)):
            short = SUMMARY_NAMES.get(name, name.replace(".", "_"))
            p = f"workload.{phase}.{short}"
            for stat, src in (("before", self.before), ("max", self.max), ("end", self.end)):
                if name in src:
                    out[f"{p}.{stat}"] = src[name]
        if self.drain_s is not None and (self.before or self.end):
            out[f"workload.{phase}.queue_drain_s"] = self.drain_s
            out[f"workload.{phase}.queue_drained"] = 1.0 if self.drained_ok else 0.0
        return out
