"""Observe which MQTT topics an environment's broker carries — by listening, never publishing.

Parity connects as one more anonymous subscriber with a clean session, subscribes to ``#`` (and
``$SYS/#`` for the broker's version) at QoS 0 for a short window, and counts the topics that
messages arrive on (retained messages included: they show a topic in use). It publishes nothing
and sets no will, so observing a production broker changes nothing there; at QoS 0 the broker
keeps no state for it after it disconnects.

paho-mqtt does the protocol; what is ours is the bounded, read-only window and turning what was
heard into one :class:`Observation` per environment (cached on the view: the topology and
versions layers both use it).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from plantstage.brokers import parse_mqtt_url
from plantstage.errors import PlantstageError
from plantstage.parity._environment import EnvView, Unresolved
from plantstage.spec.models import ComponentKind, Fidelity
from plantstage.spec.parity import BrokerObservation

#: Distinct topics kept per observation; a busy broker may carry more (counted, not kept).
MAX_TOPICS = 10_000
VERSION_TOPIC = "$SYS/broker/version"


@dataclass
class Observation:
    """What one broker carried during the window (or why it could not be observed)."""

    url: str | None
    window: float
    #: topic → messages heard on it during the window
    topics: dict[str, int] = field(default_factory=dict)
    retained: set[str] = field(default_factory=set)
    sys: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    dropped: int = 0  # topics beyond MAX_TOPICS

    @property
    def version(self) -> str | None:
        return self.sys.get(VERSION_TOPIC)


def broker_config(view: EnvView) -> BrokerObservation | None:
    """The spec's ``parity.broker``, with a window given on the command line applied."""
    cfg = view.spec.parity.broker
    window = view.cache.get("broker-window")
    if cfg is not None and isinstance(window, (int, float)):
        cfg = cfg.model_copy(update={"window": float(window)})
    return cfg


def broker_component(view: EnvView, cfg: BrokerObservation) -> str | None:
    """Whose tier an undeclared topic takes (see ``BrokerObservation.component``)."""
    if cfg.component:
        return cfg.component
    spec = view.spec
    for comp in spec.components_of(ComponentKind.broker):
        if view.binding(comp) is not None:
            return comp
    ends = {n for e in spec.estate.edges if e.protocol == "mqtt" for n in (e.from_, e.to)}
    tiers = {n: spec.estate.components[n].tier for n in ends if n in spec.estate.components}
    return min(tiers, key=lambda n: (tiers[n], n)) if tiers else None


def broker_url(view: EnvView, cfg: BrokerObservation) -> tuple[str | None, str]:
    """(URL of this environment's broker, where it came from) — or (None, why not)."""
    given = getattr(cfg, view.name, None)
    where = f"parity.broker.{view.name}"
    if not given:
        for comp in view.spec.components_of(ComponentKind.broker):
            b = view.binding(comp)
            if b is not None and b.url and b.fidelity == Fidelity.real:
                given, where = b.url, f"environments.{view.name}.bindings.{comp}.url"
                break
    if not given:
        return None, f"{view.name} has no broker to observe (bind a broker component with " \
                     f"a url, or set parity.broker.{view.name})"
    try:
        return view.expand(given), where
    except Unresolved as exc:
        return None, f"{where} needs {exc} (a rehearsal's twins step fills it in)"


def observe_env(view: EnvView, cfg: BrokerObservation) -> Observation:
    """The environment's broker, observed once per parity run."""
    key = "broker-observation"
    if key not in view.cache:
        url, why = broker_url(view, cfg)
        if url is None:
            view.cache[key] = Observation(None, cfg.window, error=why)
        else:
            view.cache[key] = observe(url, window=cfg.window, sys=cfg.sys,
                                      connect_timeout=cfg.connect_timeout)
    return view.cache[key]


def observe(url: str, *, window: float = 1.5, sys: bool = True,
            connect_timeout: float = 3.0) -> Observation:
    """Listen on the broker at ``url`` for ``window`` seconds; never publish."""
    obs = Observation(url, window)
    try:
        host, port = parse_mqtt_url(url)
    except PlantstageError as exc:
        obs.error = exc.one_line()
        return obs
    subscribed = threading.Event()
    failed: list[str] = []
    lock = threading.Lock()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"plantstage-parity-{uuid.uuid4().hex[:10]}",
                         clean_session=True, protocol=mqtt.MQTTv311)

    def on_connect(c: mqtt.Client, _u, _f, rc, _p) -> None:
        if rc.is_failure:
            failed.append(f"the broker refused the connection: {rc}")
            subscribed.set()
            return
        filters = [("#", 0)] + ([("$SYS/#", 0)] if sys else [])
        c.subscribe(filters)

    def on_subscribe(_c, _u, _mid, codes, _p) -> None:
        if codes and codes[0].is_failure:
            failed.append(f"the broker refused a subscription to '#': {codes[0]}")
        subscribed.set()

    def on_message(_c, _u, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        with lock:
            if topic.startswith("$SYS/"):
                if topic == VERSION_TOPIC:
                    obs.sys[topic] = msg.payload.decode("utf-8", "replace").strip()
                return
            if topic in obs.topics:
                obs.topics[topic] += 1
            elif len(obs.topics) < MAX_TOPICS:
                obs.topics[topic] = 1
            else:
                obs.dropped += 1
            if msg.retain:
                obs.retained.add(topic)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=max(10, int(window) + 5))
    except (OSError, ValueError) as exc:
        obs.error = f"broker {url} unreachable: {getattr(exc, 'strerror', None) or exc}"
        return obs
    client.loop_start()
    try:
        if not subscribed.wait(connect_timeout):
            obs.error = f"broker {url} did not accept a subscription within {connect_timeout} s"
            return obs
        if failed:
            obs.error = f"broker {url}: {failed[0]}"
            return obs
        time.sleep(window)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:  # a copy the caller can read without racing a late callback
        obs.topics = dict(obs.topics)
    return obs
