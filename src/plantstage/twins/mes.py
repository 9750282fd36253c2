"""MES line twin: publishes the messages a line controller sends the app — built from the
contract the spec declares (topic, payload fields, decimal quantities with units) as JSON,
ISA-95 / B2MML ``ProductionPerformance`` XML or Sparkplug B — and awaits the app's
acknowledgement the way the contract says:

* ``ack: {mode: topic, …}`` — an ack message on the app's ack topic names the message id and a
  status; without one within ``ack_timeout`` the identical message is delivered again
  (at-least-once, the way real MES integrations behave), up to ``max_redeliveries`` times;
* ``ack: {mode: qos}`` — the broker's PUBACK (QoS 1) is the only acknowledgement;
* ``ack: {mode: none}`` — fire and forget.

Flows call :meth:`MesLineTwin.publish` (from any event loop); its :class:`Delivery` tells
the app's status, every ack seen and how many deliveries it took.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

import paho.mqtt.client as mqtt

from plantstage.brokers import parse_mqtt_url
from plantstage.spec.twins import MOVED_SETTINGS, AckMode, SparkplugType, TwinContract
from plantstage.spec.twins import SETTINGS as KIND_SETTINGS
from plantstage.twins.base import Twin, TwinError, serve_http, stop_http
from plantstage.twins.contract import (
    ContractError,
    JsonTemplate,
    Quantity,
    TextTemplate,
    get_path,
    parse_json,
    quantity,
    render_value,
    template_names,
)
from plantstage.twins.faults import corrupt_payload
from plantstage.twins.mqttio import LoopAdapter
from plantstage.twins.sparkplug import DataType, EdgeNode, MetricDef

__all__ = ["BUILTINS", "Delivery", "MesLineTwin", "TwinUnavailable", "b2mml"]

SETTINGS = KIND_SETTINGS["mes-line"]
#: Placeholders every message has; a flow's values cannot replace them.
BUILTINS = ("tenant", "key", "id", "seq", "now", "line", "twin")
_BUILTIN_SET = frozenset(BUILTINS)


class TwinUnavailable(TwinError, RuntimeError):
    """The twin is stopped or has failed: a twin failure, not the app's (a RuntimeError, so
    flows may catch it as one)."""


@dataclass
class Delivery:
    """The outcome of one :meth:`MesLineTwin.publish`."""

    id: str
    tenant: str
    topic: str
    #: The app's ack status (topic mode), "sent" (none; qos once PUBACKed), None = no ack.
    status: str | None
    #: The status is one the contract counts as accepted (always True for "sent").
    accepted: bool
    #: Copies that reached the broker (faults may add or lose some; redeliveries add).
    deliveries: int
    #: Every ack status seen, in order (a consumer that posts a redelivery twice shows here).
    acks: list[str] = field(default_factory=list)
    payload: bytes = b""
    seconds: float = 0.0
    mode: str = "topic"
    fields: dict[str, Any] | None = None
    #: When the publish began (wall clock, time.time(): the rehearsal's one clock), so a
    #: recovery can replay what the line sent after a backup.
    at: float = field(default_factory=time.time)

    @property
    def message(self) -> Any:
        """The message as sent: the JSON object (exact decimals), or the B2MML / Sparkplug
        fields."""
        if self.fields is not None:
            return self.fields
        return parse_json(self.payload)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant, "topic": self.topic,
                "status": self.status, "accepted": self.accepted,
                "deliveries": self.deliveries, "acks": list(self.acks),
                "seconds": round(self.seconds, 6), "mode": self.mode}


@dataclass
class Pending:
    """One message waiting for its acknowledgements."""

    id: str
    first_ack: asyncio.Future
    acks: list[str] = field(default_factory=list)
    expected: int = 0
    all_acked: asyncio.Event = field(default_factory=asyncio.Event)


_SPB_TYPES = {t.value: DataType[t.value] for t in SparkplugType}


class MesLineTwin(Twin):
    kind = "mes-line"
    links = ("confirmations", "http")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.check_settings(SETTINGS, MOVED_SETTINGS["mes-line"])
        c: TwinContract | None = self.spec.contract
        if c is None or c.publish is None or c.ack is None:
            raise TwinError("an mes-line twin needs contract.publish and contract.ack",
                            where=f"{self.where}.contract", hint="see docs/twins.md")
        self.contract = c
        self.pub = c.publish
        self.ack = c.ack
        self.format = self.pub.format.value
        self.qos = self.setting("qos", 1, int)
        if self.ack.mode == AckMode.qos and self.qos < 1:
            raise TwinError("ack mode qos needs QoS 1 (the PUBACK is the acknowledgement)",
                            where=f"{self.where}.settings.qos", hint="set qos: 1")
        self.ack_timeout = float(self.setting("ack_timeout", 2.0, float))
        self.max_redeliveries = self.setting("max_redeliveries", 3, int)
        self.line = self.setting("line", self.name, str)
        self.rate = float(self.setting("rate", 0.0, float))
        self.auto_tenant = self.setting("tenant", None, str)
        if self.rate > 0 and not self.auto_tenant:
            raise TwinError("rate (standalone publishing) needs the tenant to publish for",
                            where=f"{self.where}.settings.tenant",
                            hint="add tenant: CODE; values come from contract.defaults")
        self.http_enabled = self.setting("http", True, bool)
        self.max_inflight = self.setting("max_inflight", 128, int)
        where = f"{self.where}.contract.publish"
        self.topic_t = TextTemplate(self.pub.topic) if self.pub.topic else None
        self.id_t = TextTemplate(self.pub.id)
        self.payload_t = JsonTemplate(self.pub.payload, f"{where}.payload") \
            if self.format == "json" else None
        self.ack_topic_t = TextTemplate(self.ack.topic) if self.ack.topic else None
        self.accepted = set(self.ack.accepted)
        self._uses = self._names_used()
        self._needed = frozenset(self._uses)
        #: Values summed over every message (quantities; Sparkplug ``total`` metrics).
        self._total_names = {n for n in self.contract.quantities if n in self._uses}
        if self.pub.sparkplug is not None:
            self._total_names |= {m.total for m in self.pub.sparkplug.metrics.values()
                                  if m.total}
        spb = self.pub.sparkplug
        self.spb_group = spb.group if spb else "plantstage"
        self.spb_node = (spb.node if spb else None) or self.name
        self.spb_device = (spb.device if spb else None) or self.line
        self.spb_defs: list[MetricDef] = []
        if spb is not None:
            self.spb_defs = [MetricDef(n, i, _SPB_TYPES[m.type.value])
                             for i, (n, m) in enumerate(spb.metrics.items(), 1)]
        self.edge: EdgeNode | None = None
        self._last: dict[str, Any] = {}
        self.totals: dict[str, Decimal] = {}
        self.pending: dict[str, Pending] = {}
        self.seq = 0
        self.stats.update({"published": 0, "deliveries": 0, "redeliveries": 0, "acks": 0,
                           "accepted": 0, "rejected": 0, "unacked": 0})
        self.listeners: list[Any] = []  # callables(tenant, values) — e.g. a PLC twin
        #: Every finished publish, in order (what effect checks reconcile: see outcomes()).
        self._outcomes: list[Delivery] = []
        self.client: mqtt.Client | None = None
        self.io: LoopAdapter | None = None
        self._held: list[tuple[str, bytes]] = []
        self._pubacks: dict[tuple[int, int], asyncio.Future] = {}
        self._http = self._http_task = None
        self.http_port = 0
        self._auto: asyncio.Task | None = None

    def _names_used(self) -> set[str]:
        p = self.pub
        out = template_names(p.topic or "") | template_names(p.payload) | \
            self.id_t.names
        if p.b2mml is not None:
            b = p.b2mml
            out |= template_names([b.id, b.published, b.request, b.segment, b.material or "",
                                   b.lot or ""]) | set(b.quantities.values())
        if p.sparkplug is not None:
            for m in p.sparkplug.metrics.values():
                out |= template_names(m.value) | ({m.total} if m.total else set())
        return out

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.env.broker_url or ""

    async def _start(self) -> None:
        if not self.env.broker_url:
            raise TwinError("no MQTT broker for the MES twin", where=self.where,
                            hint="the rehearsal starts one; standalone, pass --broker")
        host, port = parse_mqtt_url(self.env.broker_url)
        self.loop = asyncio.get_running_loop()
        connected = asyncio.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"plantstage-twin-{self.name}-{id(self):x}")
        # A moderate window: QoS 1 messages stream while PUBACKs come back, but paho
        # rescans its in-flight messages on every PUBACK, so a huge window costs O(n) per ack
        # (profiled: 10,000 made QoS 1 several times slower than 128).
        c.max_inflight_messages_set(self.max_inflight)
        c.max_queued_messages_set(0)

        def on_connect(cl, _u, _f, rc, _p=None):  # noqa: ANN001
            if not rc.is_failure:
                if self.ack_topic_t is not None:
                    cl.subscribe(self.ack_topic_t.mqtt_filter(), 1)
                connected.set()

        def on_message(_cl, _u, msg):  # noqa: ANN001
            self._on_ack(msg.topic, msg.payload)

        c.on_connect, c.on_message = on_connect, on_message
        if self.ack.mode == AckMode.qos:
            c.on_publish = lambda cl, _u, mid, _rc=None, _p=None: self._puback(cl, mid)

        def on_lost(why: str) -> None:
            if self.client is not None:
                self.env.log.record(self.name, "confirmations", "broker-disconnect", "-", why)

        # paho runs in this loop (see mqttio): no hand-off to a network thread per message.
        self.io = LoopAdapter(c, self.loop, on_lost=on_lost)
        try:
            self.io.connect(host, port, keepalive=30)
        except OSError as exc:
            raise TwinError(f"MQTT broker not reachable: {exc.strerror or exc}",
                            where=self.env.broker_url, hint="is the broker running?") from None
        self.client = c
        try:
            await asyncio.wait_for(connected.wait(), 10)
        except TimeoutError:
            raise TwinError("the MQTT broker did not accept the MES twin", where=self.env
                            .broker_url, hint="check the broker's log") from None
        if self.format == "sparkplug":
            self.edge = EdgeNode(
                host=host, port=port, group=self.spb_group, node=self.spb_node,
                device=self.spb_device, device_metrics=self.spb_defs,
                device_values=self._spb_values, qos=self.qos, loop=self.loop,
                client_id=f"plantstage-spb-{self.name}-{id(self):x}",
                on_event=lambda kind, detail: self.env.log.record(
                    self.name, "confirmations", f"sparkplug-{kind}", self.spb_node, detail),
                max_inflight=self.max_inflight,
                on_publish=self._puback if self.ack.mode == AckMode.qos else None)
            try:
                await self.edge.connect()
            except (OSError, TimeoutError):
                raise TwinError("the MQTT broker did not accept the Sparkplug edge node",
                                where=self.env.broker_url, hint="check the broker's log") \
                    from None
        if self.http_enabled:
            self._http, self._http_task, self.http_port = await serve_http(
                self._asgi(), self.spec.port, self.name)
        if self.rate > 0:
            self._auto = self.spawn(self._autorun(), "production")

    async def _stop(self) -> None:
        if self._auto is not None:
            self._auto.cancel()
        await stop_http(self._http, self._http_task)
        if self.edge is not None:
            await self.edge.stop()  # DDEATH + NDEATH, then DISCONNECT
        if self.client is not None and self.io is not None:
            self.client = None
            await self.io.flush()
            self.io.close()

    def endpoints(self) -> dict[str, str]:
        acks = f"; acks on {self.ack.topic}" if self.ack.topic else f"; ack {self.ack.mode}"
        if self.edge is not None:
            out = {"mqtt": f"{self.env.broker_url} spBv1.0/{self.spb_group}/+/{self.spb_node}/#"
                           f" (Sparkplug B{acks})"}
        else:
            out = {"mqtt": f"{self.env.broker_url} {self.pub.topic}{acks}"}
        if self.http_port:
            out["http"] = f"http://127.0.0.1:{self.http_port}"
        return out

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.stats, "in_flight": len(self.pending),
                               "totals": {k: format(v, "f") for k, v in self.totals.items()}}
        if self.edge is not None:
            out["sparkplug"] = {"group": self.spb_group, "node": self.spb_node,
                                "device": self.spb_device, "bdSeq": self.edge.bd_seq,
                                "sessions": self.edge.sessions}
        return out

    # -- acknowledgements -----------------------------------------------------------------------
    def _on_ack(self, topic: str, payload: bytes) -> None:
        try:
            body = parse_json(payload)
            mid = str(get_path(body, self.ack.id or ""))
            status = str(get_path(body, self.ack.status or ""))
        except (ValueError, KeyError):
            self.env.log.record(self.name, "confirmations", "bad-ack", topic,
                                f"not JSON with {self.ack.id} and {self.ack.status}")
            return
        p = self.pending.get(mid)
        if p is None:
            return  # a late ack of a finished message
        self.stats["acks"] += 1
        key = f"acked_{status}"
        self.stats[key] = self.stats.get(key, 0) + 1
        p.acks.append(status)
        if not p.first_ack.done():
            p.first_ack.set_result(status)
        if len(p.acks) >= p.expected:
            p.all_acked.set()

    def _puback(self, client: mqtt.Client, mid: int) -> None:
        fut = self._pubacks.pop((id(client), mid), None)
        if fut is not None and not fut.done():
            fut.set_result(True)

    # -- building messages ------------------------------------------------------------------
    def _env(self, tenant: str, values: dict[str, Any], key: str | None) -> dict[str, Any]:
        """Every value a message's templates may use: builtins, defaults, the flow's values."""
        if not _BUILTIN_SET.isdisjoint(values):
            clash = [n for n in BUILTINS if n in values]
            raise ContractError(f"value name '{clash[0]}' is reserved", where=clash[0],
                                hint=f"reserved: {', '.join(BUILTINS)}")
        self.seq += 1
        env = {**self.contract.defaults, **values, "tenant": tenant, "seq": self.seq,
               "line": self.line, "twin": self.name}
        env["key"] = key if key is not None else f"{self.seq:06d}"
        if "now" in self._uses:
            env["now"] = datetime.now(UTC).isoformat()
        for name, q in self.contract.quantities.items():
            if name in env and env[name] is not None:
                env[name] = quantity(env[name], q, name)
        for name in self._needed - env.keys():
            if name != "id":
                raise ContractError(
                    f"value '{name}' is missing: the contract's message uses {{{name}}}",
                    where=f"{self.where}.contract.publish",
                    hint=f"give it in the flow's values or in contract.defaults "
                         f"(given: {', '.join(sorted(values)) or 'none'})")
        env["id"] = self.id_t.render(env)
        return env

    def build(self, tenant: str, values: dict[str, Any], key: str | None = None
              ) -> tuple[dict[str, Any], str, bytes, dict[str, Any] | None]:
        """(env, topic, payload, fields) of one message; Sparkplug payloads are encoded per
        delivery (each has its own seq), so theirs is empty here."""
        env = self._env(tenant, values, key)
        before = dict(self.totals)
        for name in self._total_names:
            v = env.get(name)
            if v is not None:
                self.totals[name] = self.totals.get(name, Decimal(0)) + _number(v)
        fields = None
        if self.edge is not None or self.format == "sparkplug":
            try:
                fields = self.spb_metrics(env)
            except ContractError:
                self.totals = before  # a refused message counts for nothing
                raise
            topic, payload = "", b""
        elif self.format == "b2mml":
            fields = self._b2mml_fields(env)
            topic, payload = self.topic_t.render(env), b2mml(fields)  # type: ignore[union-attr]
        else:
            topic = self.topic_t.render(env)  # type: ignore[union-attr]
            payload = self.payload_t.render(env)  # type: ignore[union-attr]
        for fn in self.listeners:
            fn(tenant, env)
        return env, topic, payload, fields

    def _b2mml_fields(self, env: dict[str, Any]) -> dict[str, Any]:
        b = self.pub.b2mml
        assert b is not None
        return {"id": render_value(b.id, env), "published": render_value(b.published, env),
                "request": render_value(b.request, env),
                "segment": render_value(b.segment, env),
                "material": render_value(b.material, env) if b.material else None,
                "lot": render_value(b.lot, env) if b.lot else None,
                "quantities": {k: env.get(v) for k, v in b.quantities.items()}}

    def _spb_values(self) -> dict[str, Any]:
        """Current device metric values (for DBIRTH): running totals and the last message."""
        spb = self.pub.sparkplug
        out = dict(self._last)
        if spb is not None:
            for name, m in spb.metrics.items():
                if m.total:
                    out[name] = _spb_value(self.totals.get(m.total, Decimal(0)), m.type.value,
                                           name)
        return out

    def spb_metrics(self, env: dict[str, Any]) -> dict[str, Any]:
        """The DDATA metrics of one message (identical on every redelivery)."""
        spb = self.pub.sparkplug
        assert spb is not None
        values: dict[str, Any] = {}
        for name, m in spb.metrics.items():
            if m.total:
                raw: Any = self.totals.get(m.total, Decimal(0))
            else:
                raw = render_value(m.value, env)
            values[name] = _spb_value(raw, m.type.value, name)
        self._last = {n: v for n, v in values.items() if not spb.metrics[n].total}
        return values

    # -- publishing ------------------------------------------------------------------------------
    async def publish(self, tenant: str, values: dict[str, Any], *,
                      key: str | None = None) -> Delivery:
        """Publish one message built from the contract with ``values`` filled in and await its
        acknowledgement as the contract's ack mode says. Callable from any event loop.

        Raises :class:`~plantstage.twins.contract.ContractError` when ``values`` do not fit
        the contract (a value missing, a quantity with more decimals than declared) and
        :class:`TwinUnavailable` when the twin is stopped or failed.
        """
        rt = self.runtime
        if self.failure or rt is None or not rt.loop.is_running() or self.client is None:
            raise TwinUnavailable(f"the {self.name} twin is not running"
                                  + (f": {self.failure}" if self.failure else ""),
                                  where=self.where, hint="see the twins step")
        coro = self.send(tenant, dict(values), key=key)
        try:
            if asyncio.get_running_loop() is rt.loop:
                return await coro
            return await asyncio.wrap_future(rt.submit(coro))
        except (RuntimeError, OSError) as exc:
            self.fail(f"publish failed: {type(exc).__name__}: {exc}")
            raise TwinUnavailable(f"the {self.name} twin failed: {exc}", where=self.where,
                                  hint="see the twins step") from None

    async def send(self, tenant: str, values: dict[str, Any], *, key: str | None = None,
                   wait: bool = True) -> Delivery:
        """:meth:`publish` inside the twin's loop (``wait=False``: do not await acks)."""
        _env, topic, payload, fields = self.build(tenant, values, key)
        mid = _env["id"]
        if self.edge is not None:
            topic = self.edge.topics["DDATA"]
        mode = self.ack.mode
        p = Pending(mid, self.loop.create_future())
        self.stats["published"] += 1
        t0 = time.perf_counter()
        d = Delivery(mid, tenant, topic, None, False, 0, [], payload, 0.0, mode.value, fields)
        if mode != AckMode.topic or not wait:
            infos: list[Any] | None = [] if mode == AckMode.qos and wait else None
            d.deliveries = await self._deliver(topic, payload, mid, 0, fields, infos)
            if infos is not None:
                d.status = "sent" if await self._await_pubacks(infos) else None
            elif mode != AckMode.topic:
                d.status = "sent"
            d.accepted = d.status == "sent"
            if wait:
                self.stats["accepted" if d.accepted else "unacked"] += 1
                self._outcomes.append(d)
            d.seconds = time.perf_counter() - t0
            return d
        self.pending[mid] = p
        try:
            for attempt in range(self.max_redeliveries + 1):
                if attempt:
                    self.stats["redeliveries"] += 1
                    self.env.log.record(self.name, "confirmations", "redelivery", mid,
                                        f"no ack within {self.ack_timeout} s")
                p.expected += await self._deliver(topic, payload, mid, attempt, fields)
                try:
                    await asyncio.wait_for(asyncio.shield(p.first_ack), self.ack_timeout)
                    break
                except TimeoutError:
                    continue
            if p.first_ack.done():
                # Give the app a moment to acknowledge the extra copies too.
                try:
                    await asyncio.wait_for(p.all_acked.wait(), self.ack_timeout)
                except TimeoutError:
                    pass
            else:
                self.stats["unacked"] += 1
        finally:
            self.pending.pop(mid, None)
        d.acks = list(p.acks)
        d.status = p.acks[0] if p.acks else None
        d.accepted = d.status is not None and (not self.accepted or d.status in self.accepted)
        if d.status is not None:
            self.stats["accepted" if d.accepted else "rejected"] += 1
        d.deliveries = p.expected
        d.seconds = time.perf_counter() - t0
        self._outcomes.append(d)
        return d

    def outcomes(self, tenant: str | None = None) -> list[Delivery]:
        """Every publish that finished (flows' and standalone ones), in order: its id,
        tenant, status, whether it was accepted, copies delivered and the message; only
        ``tenant``'s when given."""
        return [d for d in list(self._outcomes) if tenant in (None, d.tenant)]

    async def _await_pubacks(self, infos: list[Any]) -> bool:
        if not infos:
            return False
        if any(info.is_published() for _c, info in infos):
            return True
        futs = []
        for client, info in infos:
            fut = self.loop.create_future()
            self._pubacks[(id(client), info.mid)] = fut
            futs.append(fut)
        done, _ = await asyncio.wait(futs, timeout=self.ack_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        for client, info in infos:
            self._pubacks.pop((id(client), info.mid), None)
        return bool(done)

    async def _deliver(self, topic: str, payload: bytes, key: str, attempt: int,
                       values: dict[str, Any] | None = None,
                       infos: list[Any] | None = None) -> int:
        """One delivery through the fault plan; returns copies that reached the broker."""
        d = self.faults.decide("confirmations", key, attempt)
        if d.outage:
            # The line's link is down: the message waits in the MES outbox (a backlog).
            await asyncio.sleep(d.outage)
        if d.delay:
            await asyncio.sleep(d.delay)
        if values is not None and self.edge is not None:
            # Sparkplug: every delivery is a new DDATA with the next seq, sent only while the
            # node is born (after a lost session, the new NBIRTH/DBIRTH come first).
            if not self.edge.online.is_set():
                await asyncio.wait_for(self.edge.online.wait(), 30)
            topic, payload = self.edge.ddata(values)
        if d.drop:
            return 0  # lost on the way (for Sparkplug: a gap in seq, as a host would see)
        data = corrupt_payload(payload, f"{key}#{attempt}", self.faults.plan.seed) \
            if d.corrupt else payload
        if d.reorder:
            self._held.append((topic, data))
            return 0 if d.copies == 1 else self._publish_copies(topic, data, d.copies - 1,
                                                                infos)
        n = self._publish_copies(topic, data, d.copies, infos)
        while self._held:  # what was held back goes out behind this one
            t, h = self._held.pop(0)
            self._publish(t, h)
            n += 1
        return n

    def _publish_copies(self, topic: str, data: bytes, copies: int,
                        infos: list[Any] | None = None) -> int:
        for _ in range(copies):
            info = self._publish(topic, data)
            if infos is not None:
                infos.append(info)
        return copies

    def _publish(self, topic: str, data: bytes) -> tuple[mqtt.Client, Any]:
        client = self.client if self.edge is None else self.edge.client
        if client is None or self.client is None:
            raise RuntimeError("the MES twin is stopped")
        info = client.publish(topic, data, qos=self.qos)
        self.stats["deliveries"] += 1
        self.messages += 1
        return client, info

    async def _autorun(self) -> None:
        """Standalone mode: publish ``contract.defaults`` at ``rate`` per second."""
        while True:
            await asyncio.sleep(1.0 / self.rate)
            self.spawn(self.send(self.auto_tenant or "", {}), "publish")

    # -- HTTP: publish on demand, state out ----------------------------------------------------
    def _asgi(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from plantstage.twins.http import FaultMiddleware

        async def health(_r: Request) -> JSONResponse:
            ok, why = self.healthy()
            return JSONResponse({"status": "ok" if ok else why, "twin": self.kind},
                                status_code=200 if ok else 503)

        async def state(_r: Request) -> JSONResponse:
            return JSONResponse(self.state())

        async def publish(r: Request) -> JSONResponse:
            try:
                body = parse_json(await r.body())
                tenant, values = str(body["tenant"]), dict(body.get("values") or {})
                key = body.get("key")
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": "need {tenant, values, key?}"}, status_code=422)
            try:
                d = await self.send(tenant, values, key=None if key is None else str(key))
            except ContractError as exc:
                return JSONResponse({"error": exc.message}, status_code=422)
            return JSONResponse(d.as_dict(), status_code=200)

        app = Starlette(routes=[Route("/health", health), Route("/state", state),
                                Route("/publish", publish, methods=["POST"])])
        return FaultMiddleware(app, self.faults, "http")


def _number(v: Any) -> Decimal:
    if isinstance(v, Quantity):
        return v.value
    if isinstance(v, Decimal):
        return v
    if isinstance(v, bool):
        return Decimal(int(v))
    if isinstance(v, int | float | str):
        return Decimal(str(v))
    raise ContractError(f"not a number: {v!r}", where="total", hint="total sums numbers")


def _spb_value(v: Any, datatype: str, name: str) -> Any:
    """A rendered value as the declared Sparkplug type (exact: never silently rounded)."""
    if v is None:
        return None
    if datatype == "String":
        return v.text if isinstance(v, Quantity) else format(v, "f") \
            if isinstance(v, Decimal) else str(v)
    if datatype == "Boolean":
        return bool(v)
    if datatype == "DateTime":
        if isinstance(v, str):
            return int(datetime.fromisoformat(v).timestamp() * 1000)
        return int(v)
    n = _number(v)
    if datatype in ("Float", "Double"):
        return float(n)
    if n != n.to_integral_value():
        raise ContractError(f"metric {name} is {datatype} but the value {n} has decimals",
                            where=name, hint="declare it Double or String, or send whole "
                                             "numbers")
    return int(n)


def b2mml(f: dict[str, Any]) -> bytes:
    """An ISA-95 / B2MML ``ProductionPerformance`` document from the contract's fields
    (``id, published, request, segment, material, lot, quantities: {Key: Quantity}``)."""
    def e(v: Any) -> str:
        return escape(v.text if isinstance(v, Quantity) else str(v))

    lot = f"<LotID>{e(f['lot'])}</LotID>" if f.get("lot") else ""
    item = f"<MaterialDefinitionID>{e(f['material'])}</MaterialDefinitionID>" \
        if f.get("material") else ""
    qty = "".join(
        f"<Quantity><QuantityString>{e(q)}</QuantityString>"
        f"<UnitOfMeasure>{escape(q.unit if isinstance(q, Quantity) else '')}</UnitOfMeasure>"
        f"<Key>{escape(k)}</Key></Quantity>"
        for k, q in f["quantities"].items() if q is not None)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ProductionPerformance xmlns="http://www.mesa.org/xml/B2MML">'
        f"<ID>{e(f['id'])}</ID><PublishedDate>{e(f['published'])}</PublishedDate>"
        f"<ProductionResponse><ID>{e(f['id'])}</ID>"
        f"<ProductionRequestID>{e(f['request'])}</ProductionRequestID>"
        f"<SegmentResponse><ID>{e(f['segment'])}</ID>"
        f"<MaterialProducedActual>{item}{lot}{qty}"
        "</MaterialProducedActual></SegmentResponse></ProductionResponse>"
        "</ProductionPerformance>"
    ).encode()
