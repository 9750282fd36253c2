"""Spec models for twins (simulated external systems), their contracts and their faults.

A twin is declared on the staging binding of an ``external`` component whose fidelity is
``simulated``. Its ``contract`` says how the app under test talks to that system — topics,
payload fields, decimal quantities with units, acknowledgements, HTTP routes, callbacks, tag
names — so no app's names are built into plantstage (docs/twins.md)::

    mes-line:
      fidelity: simulated
      twin:
        kind: mes-line
        settings: {ack_timeout: 2.0}
        contract:
          quantities: {qty: {unit: kg, decimals: 3}}
          publish:
            topic: "lines/{tenant}/output"
            payload: {id: "{id}", order: "{order}", qty: "{qty}", unit: "{qty.unit}"}
          ack: {mode: topic, topic: "lines/{tenant}/output/ack", id: id, status: result}
        faults:
          seed: 11
          rules:
            - {kind: duplicate, p: 0.2}
            - {kind: outage, start: 2.0, duration: 1.0}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: ``{name}`` or ``{name.unit}`` / ``{name.value}`` (a quantity's unit or number); ``{{`` and
#: ``}}`` are literal braces (matched too, so that ``{{x}}`` is no placeholder).
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:\.(unit|value))?\}")


def placeholder_names(text: str) -> set[str]:
    """The placeholder names in one template string (escaped braces left out)."""
    return {m.group(1) for m in PLACEHOLDER.finditer(text) if m.group(1)}


def template_problem(value: Any) -> str | None:
    """The first syntax problem of a template (string, mapping or list), or None."""
    if isinstance(value, str):
        rest = PLACEHOLDER.sub("", value)
        if "{" in rest or "}" in rest:
            return (f"bad placeholder in {value!r}: use {{name}} or {{name.unit}} "
                    "({{ and }} for literal braces)")
        return None
    items = value.values() if isinstance(value, Mapping) else value \
        if isinstance(value, list) else ()
    for v in items:
        if (why := template_problem(v)) is not None:
            return why
    return None


def _template(v: Any) -> Any:
    if (why := template_problem(v)) is not None:
        raise ValueError(why)
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TwinKind(StrEnum):
    """The built-in twins (one module each in ``plantstage.twins``)."""

    mes_line = "mes-line"
    wms = "wms"
    supplier_portal = "supplier-portal"
    plc_line = "plc-line"
    replay = "replay"


class FaultKind(StrEnum):
    latency = "latency"
    drop = "drop"
    duplicate = "duplicate"
    reorder = "reorder"
    corrupt = "corrupt"
    outage = "outage"
    slow_consumer = "slow-consumer"


class LatencyDistribution(StrEnum):
    fixed = "fixed"
    jitter = "jitter"
    lognormal = "lognormal"


class FaultRule(_Model):
    """One disturbance. Without ``start``/``duration`` it applies for the whole run."""

    kind: FaultKind
    link: str | None = Field(
        None, description="Only this link of the twin (e.g. confirmations, http); "
        "default: every link.")
    p: float = Field(1.0, ge=0, le=1, description="Share of messages it hits (per message).")
    ms: float = Field(0.0, ge=0, description="latency: fixed part / median in milliseconds.")
    jitter_ms: float = Field(0.0, ge=0, description="latency jitter: ± uniform milliseconds.")
    sigma: float = Field(0.5, gt=0, description="latency lognormal: shape (spread).")
    distribution: LatencyDistribution = LatencyDistribution.fixed
    start: float | None = Field(
        None, ge=0, description="Seconds after the twins started when it begins.")
    duration: float | None = Field(None, gt=0, description="How long it lasts, in seconds.")
    during: Literal["baseline", "paired", "candidate", "all"] | None = Field(
        None, description="Only during this workload phase ('all': every load phase), with "
        "'start' counted from the phase's start; default: one timeline from twins-ready.")
    every: float | None = Field(
        None, gt=0, description="Repeat the window (start, duration) every this many seconds.")
    rate: float | None = Field(
        None, gt=0, description="slow-consumer: messages per second the twin takes at most.")
    window: int = Field(3, ge=2, le=100, description="reorder: messages shuffled together.")

    @field_validator("during", mode="before")
    @classmethod
    def _n_minus_1(cls, v: Any) -> Any:
        return "paired" if v == "n-1" else v  # the old version on the new schema

    @model_validator(mode="after")
    def _fields_fit(self) -> FaultRule:
        if self.kind == FaultKind.outage and (self.start is None or self.duration is None):
            raise ValueError("an outage needs 'start' and 'duration' (seconds)")
        if self.kind == FaultKind.slow_consumer and self.rate is None:
            raise ValueError("slow-consumer needs 'rate' (messages per second)")
        if self.kind == FaultKind.latency and not (self.ms or self.jitter_ms):
            raise ValueError("latency needs 'ms' (and/or 'jitter_ms')")
        if self.every is not None and (self.duration is None or self.duration >= self.every):
            raise ValueError("'every' repeats a window: give a 'duration' shorter than 'every'")
        return self


class FaultPlanSpec(_Model):
    """Faults of one twin, on one seeded timeline (same seed → same fault timeline)."""

    seed: int = 0
    rules: list[FaultRule] = Field(default_factory=list)


class ReplaySpec(_Model):
    """Replay a recorded capture (``plantstage record``) instead of simulating."""

    file: str = Field(description="Capture file (JSON lines), relative to the spec.")
    speed: float = Field(1.0, gt=0, le=1000, description="Time scaling: 1 = as recorded, 10 = 10x.")
    loop: bool = Field(False, description="Start again at the end of the capture.")


# -- contracts --------------------------------------------------------------------------------

class QuantityEncoding(StrEnum):
    string = "string"
    number = "number"


class QuantitySpec(_Model):
    """A decimal quantity: its unit and exact number of decimals (never rounded)."""

    unit: str = Field(min_length=1, description="Unit, e.g. kg, EA, l. Not converted.")
    decimals: int = Field(ge=0, le=12, description="Decimals written (2.75 with 3 → 2.750); "
                          "a value with more is refused.")
    encoding: QuantityEncoding = Field(
        QuantityEncoding.string, description="In JSON: a decimal string (\"2.750\") or a "
        "number written exactly (2.750).")


class MqttFormat(StrEnum):
    json = "json"
    b2mml = "b2mml"
    sparkplug = "sparkplug"


class SparkplugType(StrEnum):
    Int32 = "Int32"
    Int64 = "Int64"
    UInt32 = "UInt32"
    UInt64 = "UInt64"
    Float = "Float"
    Double = "Double"
    Boolean = "Boolean"
    String = "String"
    DateTime = "DateTime"


class SparkplugMetric(_Model):
    """One device metric: a value template per message, or the running total of a value."""

    type: SparkplugType = Field(description="Sparkplug B data type.")
    value: Any = Field(None, description="Template of the metric's value per message.")
    total: str | None = Field(None, description="Name of a value summed over every message "
                              "(a cumulative counter).")

    @model_validator(mode="after")
    def _one(self) -> SparkplugMetric:
        if (self.value is None) == (self.total is None):
            raise ValueError("a metric has either 'value' (a template) or 'total' (a value "
                             "name)")
        _template(self.value)
        return self


class SparkplugSpec(_Model):
    """Sparkplug B ids and the device's metrics (name → how it is filled)."""

    group: str = Field("plantstage", description="Group id.")
    node: str | None = Field(None, description="Edge node id (default: the component).")
    device: str | None = Field(None, description="Device id (default: setting line).")
    metrics: dict[str, SparkplugMetric] = Field(min_length=1, description="Device metrics, "
                                                "declared in DBIRTH in this order (aliases 1…).")

    @field_validator("group", "node", "device")
    @classmethod
    def _level(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(ch in v for ch in "/+#")):
            raise ValueError("Sparkplug B ids are single topic levels: no / + #")
        return v


class B2mmlSpec(_Model):
    """An ISA-95 / B2MML ``ProductionPerformance`` document: which value fills which element."""

    id: str = Field("{id}", description="ID (template).")
    published: str = Field("{now}", description="PublishedDate (template).")
    request: str = Field(description="ProductionRequestID (template).")
    segment: str = Field("{line}", description="SegmentResponse ID (template).")
    material: str | None = Field(None, description="MaterialDefinitionID (template).")
    lot: str | None = Field(None, description="LotID (template; left out when empty).")
    quantities: dict[str, str] = Field(min_length=1, description="Quantity Key → name of a "
                                       "declared quantity (its unit is the UnitOfMeasure).")

    @model_validator(mode="after")
    def _templates(self) -> B2mmlSpec:
        for v in (self.id, self.published, self.request, self.segment, self.material, self.lot):
            _template(v)
        return self


class PublishSpec(_Model):
    """What an MQTT twin publishes: topic, message id, and the payload in its format."""

    format: MqttFormat = Field(MqttFormat.json, description="json, b2mml or sparkplug.")
    topic: str | None = Field(None, description="Topic template, e.g. \"lines/{tenant}/out\" "
                              "(not for sparkplug: spBv1.0/<group>/DDATA/<node>/<device>).")
    id: str = Field("{key}", description="Template of the message id (what acks name and "
                    "redeliveries repeat); {key} is the key the flow gives, else a sequence.")
    payload: Any = Field(None, description="json: the payload template (nested mappings and "
                         "lists; \"{name}\" keeps the value's type).")
    b2mml: B2mmlSpec | None = None
    sparkplug: SparkplugSpec | None = None

    @model_validator(mode="after")
    def _fits_format(self) -> PublishSpec:
        _template(self.topic)
        _template(self.id)
        _template(self.payload)
        if self.format != MqttFormat.sparkplug and not self.topic:
            raise ValueError(f"format {self.format.value} needs 'topic' (a template)")
        if self.format == MqttFormat.json and not isinstance(self.payload, dict):
            raise ValueError("format json needs 'payload': a mapping of field → template")
        if self.format == MqttFormat.b2mml and self.b2mml is None:
            raise ValueError("format b2mml needs 'b2mml' (which value fills which element)")
        if self.format == MqttFormat.sparkplug and self.sparkplug is None:
            raise ValueError("format sparkplug needs 'sparkplug' (ids and metrics)")
        if self.sparkplug is not None and self.format != MqttFormat.sparkplug:
            raise ValueError("'sparkplug' needs format: sparkplug")
        if self.b2mml is not None and self.format != MqttFormat.b2mml:
            raise ValueError("'b2mml' needs format: b2mml")
        return self


class AckMode(StrEnum):
    topic = "topic"
    none = "none"
    qos = "qos"


class AckSpec(_Model):
    """How the app acknowledges a message: on a topic of its own, by MQTT PUBACK, or not."""

    mode: AckMode = Field(description="topic: an ack message (no ack → redelivery); qos: the "
                          "broker's PUBACK (QoS 1) only; none: fire and forget.")
    topic: str | None = Field(None, description="topic: the ack topic template.")
    id: str | None = Field(None, description="topic: field (a.b for nested) holding the "
                           "message id in the ack.")
    status: str | None = Field(None, description="topic: field holding the app's status.")
    accepted: list[str] = Field(default_factory=list, description="topic: statuses that mean "
                                "accepted (others are rejections); empty = any.")

    @model_validator(mode="after")
    def _fits_mode(self) -> AckSpec:
        if self.mode == AckMode.topic:
            missing = [k for k in ("topic", "id", "status") if not getattr(self, k)]
            if missing:
                raise ValueError(f"ack mode topic needs '{missing[0]}'")
            _template(self.topic)
        elif self.topic or self.id or self.status or self.accepted:
            raise ValueError(f"ack mode {self.mode.value} takes no topic/id/status/accepted")
        return self


class RouteSpec(_Model):
    """One HTTP route the twin serves."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(description="Path template, e.g. /v1/{tenant}/moves.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("a route path starts with /")
        return _template(v)


class CallbackSpec(_Model):
    """A call the twin makes to the app under test."""

    url: str = Field(description="URL template; {app} is where the app answers.")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    body: Any = Field(None, description="Body template (default: the record in the "
                      "contract's field names).")

    @model_validator(mode="after")
    def _templates(self) -> CallbackSpec:
        _template(self.url)
        _template(self.body)
        return self


class TwinContract(_Model):
    """The app's side of a twin. Which sections a kind takes: docs/twins.md."""

    quantities: dict[str, QuantitySpec] = Field(
        default_factory=dict, description="Decimal quantities by value name.")
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Values used when a flow gives none.")
    publish: PublishSpec | None = Field(None, description="mes-line: what it publishes.")
    ack: AckSpec | None = Field(None, description="mes-line: how the app acknowledges.")
    routes: dict[str, RouteSpec] = Field(
        default_factory=dict, description="HTTP twins: route role → method and path.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="HTTP twins: role → field name (a.b for nested).")
    callback: CallbackSpec | None = Field(None, description="HTTP twins: calls to the app.")
    tags: dict[str, str] = Field(default_factory=dict,
                                 description="plc-line: tag role → OPC UA tag name.")
    follows: dict[str, str] = Field(
        default_factory=dict, description="plc-line: counter (good, scrap) → MES value name.")


#: What each kind takes from a contract: required sections, and the roles it knows.
CONTRACT_RULES: dict[str, dict[str, Any]] = {
    "mes-line": {"required": ("publish", "ack"), "allowed": ("quantities", "defaults",
                                                             "publish", "ack")},
    "wms": {"required": ("routes",), "allowed": ("quantities", "routes", "fields", "callback"),
            "routes": ("book", "list", "stock"), "route_required": ("book",),
            "fields": ("tenant", "ref", "item", "qty", "unit", "kind", "location"),
            "quantity": "qty"},
    "supplier-portal": {"required": ("routes",),
                        "allowed": ("quantities", "routes", "fields", "callback"),
                        "routes": ("order", "order_status", "asns"),
                        "route_required": ("order",),
                        "fields": ("tenant", "order", "lines", "item", "qty", "unit", "asn",
                                   "status"),
                        "quantity": "qty"},
    "plc-line": {"required": (), "allowed": ("tags", "follows"),
                 "tags": ("good", "scrap", "state", "temperature", "speed"),
                 "follows": ("good", "scrap")},
    "replay": {"required": (), "allowed": ()},
}

#: Settings each kind knows (the twin modules use these sets), checked by ``plantstage check``.
SETTINGS: dict[str, frozenset[str]] = {
    "mes-line": frozenset({"qos", "ack_timeout", "max_redeliveries", "line", "rate", "tenant",
                           "http", "max_inflight"}),
    "wms": frozenset({"locations", "putaway_s", "callbacks", "callback_timeout"}),
    "supplier-portal": frozenset({"lead_time_s", "lead_time_sigma", "fill_rate", "callbacks"}),
    "plc-line": frozenset({"line", "mes", "tick_s", "rate", "temperature", "namespace"}),
    "replay": frozenset(),
}
#: Former settings that became part of the contract, and where they went.
MOVED_SETTINGS: dict[str, dict[str, str]] = {
    "mes-line": {"format": "contract.publish.format",
                 "sparkplug": "contract.publish.sparkplug",
                 "topic_prefix": "part of contract.publish.topic and contract.ack.topic",
                 "lots": "a field of contract.publish.payload (a template, or null)",
                 "scrap_rate": "a value the flow gives to publish()",
                 "max_good": "a value the flow gives to publish()"},
}


def settings_problem(kind: str, settings: Mapping[str, Any]) -> str | None:
    """An unknown setting of a kind (one line, with where it went if it moved), or None."""
    known = SETTINGS.get(kind, frozenset())
    for key in sorted(settings):
        if key not in known:
            now = MOVED_SETTINGS.get(kind, {}).get(key)
            if now:
                return f"settings.{key}: not a {kind} setting any more; it is now {now}"
            return (f"settings.{key}: unknown setting for a {kind} twin (known: "
                    f"{', '.join(sorted(known)) or 'none'})")
    return None


_SECTION_EMPTY = {"quantities": {}, "defaults": {}, "routes": {}, "fields": {}, "tags": {},
                  "follows": {}}


def contract_problem(kind: str, c: TwinContract | None) -> str | None:
    """What a kind's contract lacks or has too much of (one line), or None."""
    rules = CONTRACT_RULES.get(kind, {"required": (), "allowed": ()})
    if c is None:
        if rules["required"]:
            return (f"a {kind} twin needs a contract (contract.{rules['required'][0]} …): "
                    "see docs/twins.md")
        return None
    for section in rules["required"]:
        if getattr(c, section) in (None, {}):
            return f"a {kind} twin needs contract.{section}"
    for section in ("quantities", "defaults", "publish", "ack", "routes", "fields",
                    "callback", "tags", "follows"):
        if section not in rules["allowed"] and \
                getattr(c, section) not in (None, _SECTION_EMPTY.get(section)):
            return f"a {kind} twin takes no contract.{section}"
    for section in ("routes", "fields", "tags", "follows"):
        known = rules.get(section)
        if known is None:
            continue
        for role in getattr(c, section):
            if role not in known:
                return (f"contract.{section}.{role}: unknown role for a {kind} twin "
                        f"(known: {', '.join(known)})")
    for role in rules.get("route_required", ()):
        if role not in c.routes:
            return f"a {kind} twin needs contract.routes.{role}"
    if (q := rules.get("quantity")) and q not in c.quantities:
        return f"a {kind} twin needs contract.quantities.{q} (its unit and decimals)"
    if c.publish is not None:
        p = c.publish
        if p.b2mml is not None:
            for key, name in p.b2mml.quantities.items():
                if name not in c.quantities:
                    return (f"contract.publish.b2mml.quantities.{key}: '{name}' is not in "
                            "contract.quantities")
        if c.ack is not None and c.ack.mode == AckMode.topic and p.format == MqttFormat.json \
                and not ({"id", "key"} & _names(p.payload)):
            return "contract.publish.payload must carry the message id ({id}) for ack mode topic"
    return None


def _names(v: Any) -> set[str]:
    if isinstance(v, str):
        return placeholder_names(v)
    items = v.values() if isinstance(v, Mapping) else v if isinstance(v, list) else ()
    out: set[str] = set()
    for x in items:
        out |= _names(x)
    return out


class TwinSpec(_Model):
    """Which twin simulates a component in staging, its settings and its faults."""

    kind: TwinKind = Field(description="mes-line, wms, supplier-portal, plc-line or replay.")
    port: int = Field(0, ge=0, le=65535, description="Where an HTTP/OPC UA twin listens "
                      "(0 = a free port).")
    seed: int = Field(1, description="Seed of the twin's own simulation (scrap, lead times).")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific settings; see docs/twins.md.")
    faults: FaultPlanSpec = Field(default_factory=FaultPlanSpec)
    replay: ReplaySpec | None = Field(None, description="For kind replay: the capture to play.")
    contract: TwinContract | None = Field(
        None, description="The app's side: topics, payload fields, quantities, acks, routes, "
        "callbacks, tags (docs/twins.md).")

    @model_validator(mode="after")
    def _replay_has_file(self) -> TwinSpec:
        if self.kind == TwinKind.replay and self.replay is None:
            raise ValueError("a replay twin needs 'replay: {file: CAPTURE}'")
        if (why := contract_problem(self.kind.value, self.contract)) is not None:
            raise ValueError(why)
        if (why := settings_problem(self.kind.value, self.settings)) is not None:
            raise ValueError(why)
        return self


__all__ = ["AckMode", "AckSpec", "B2mmlSpec", "CallbackSpec", "FaultKind", "FaultPlanSpec",
           "FaultRule", "LatencyDistribution", "MqttFormat", "PublishSpec", "QuantityEncoding",
           "QuantitySpec", "ReplaySpec", "RouteSpec", "SparkplugMetric", "SparkplugSpec",
           "SparkplugType", "TwinContract", "TwinKind", "TwinSpec", "contract_problem",
           "placeholder_names", "settings_problem", "template_problem"]
