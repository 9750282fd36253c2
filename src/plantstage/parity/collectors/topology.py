"""Topology: which components an environment binds, how (fidelity, scale), and the edges.

Edges come from two places: the estate declares them (shared by every environment, present
where both ends are bound), and each component's configuration shows where it actually
connects (the ``integrations`` key of a :class:`ConfigSource`). An observed edge the estate
does not declare is drift in its own right — staging would be rehearsing an integration path
nobody reviewed — and so is an observed protocol that is not the declared one.

The broker is observed too (``parity.broker``): parity listens on each environment's MQTT broker
for a short window and maps every topic in use to the declared edge whose filters match it
(``mqtt.FROM->TO``). A topic no filter maps is drift (``mqtt.topic:TOPIC``, with the broker's
tier); a declared edge nobody published on during the window is ``unknown`` — silence in a
second and a half proves nothing either way.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from plantstage.brokers.embedded import topic_matches
from plantstage.parity._broker import broker_component, broker_config, observe_env
from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors.config import ConfigUnreadable, read_named

#: Undeclared topics listed one by one per environment; the rest are summed up in a note.
MAX_UNDECLARED = 50


def collect(view: EnvView) -> LayerFacts:
    out = LayerFacts("topology")
    spec = view.spec
    for name, comp in spec.estate.components.items():
        b = view.binding(name)
        if b is None:
            continue
        out.add(f"{name}.bound", comp.kind.value, name, f"environments.{view.name}.bindings")
        out.add(f"{name}.fidelity", b.fidelity.value, name)
        out.add(f"{name}.scale", b.scale, name)
    declared: dict[tuple[str, str], str] = {}
    for e in spec.estate.edges:
        declared[(e.from_, e.to)] = e.protocol
        if view.binding(e.from_) is not None and view.binding(e.to) is not None:
            out.add(f"edge.{e.from_}->{e.to}", e.protocol, e.from_, "estate.edges")
    for src in spec.parity.config:
        if not src.integrations:
            continue
        try:
            path, data = read_named(view, getattr(src, view.name), src.format)
        except ConfigUnreadable as exc:
            out.fail(f"edge.{src.component}->", src.component,
                     f"cannot read observed edges: {exc}")
            continue
        node = data
        for part in src.integrations.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            out.notes.append(f"{path.name}: no '{src.integrations}' mapping; "
                             f"no observed edges of {src.component}")
            continue
        for target, conf in node.items():
            protocol = _protocol(conf)
            key = f"edge.{src.component}->{target}"
            where = f"{path.name}: {src.integrations}.{target}"
            want = declared.get((src.component, str(target)))
            if want is None:
                out.add(key, protocol, src.component, where,
                        problem=f"undeclared edge: {where} connects {src.component} to "
                                f"'{target}', which estate.edges does not declare")
            elif protocol not in (want, "?"):
                out.add(key, protocol, src.component, where,
                        problem=f"estate.edges declares {want}, {where} uses {protocol}")
            else:
                out.add(key, want, src.component, f"estate.edges + {where}")
    _broker_topics(view, out)
    return out


def _broker_topics(view: EnvView, out: LayerFacts) -> None:
    cfg = broker_config(view)
    if cfg is None:
        out.notes.append("broker topics not observed (no parity.broker in the spec)")
        return
    obs = observe_env(view, cfg)
    routes = cfg.topics
    if obs.error:
        # Every declared edge is unknown here, never "missing": the broker was not heard.
        for r in routes:
            out.fail(f"mqtt.{r.from_}->{r.to}", r.from_, obs.error)
        if not routes:
            out.fail("mqtt.broker", broker_component(view, cfg), obs.error)
        return
    seen: dict[tuple[str, str], list[str]] = {}
    undeclared: list[str] = []
    for topic in sorted(obs.topics):
        hit = [r for r in routes if any(topic_matches(f, topic) for f in r.topics)]
        for r in hit:
            seen.setdefault((r.from_, r.to), []).append(topic)
        if not hit and not any(topic_matches(f, topic) for f in cfg.ignore):
            undeclared.append(topic)
    where = f"{obs.url}, {obs.window:g} s"
    for r in routes:
        topics = seen.get((r.from_, r.to))
        if topics:
            shown = ", ".join(topics[:3]) + (f" (+{len(topics) - 3})" if len(topics) > 3 else "")
            out.add(f"mqtt.{r.from_}->{r.to}", "mqtt", r.from_, f"observed on {where}: {shown}")
        else:
            out.fail(f"mqtt.{r.from_}->{r.to}", r.from_,
                     f"declared, not observed: no message on {', '.join(r.topics)} "
                     f"during {obs.window:g} s on {obs.url}")
    comp = broker_component(view, cfg)
    for topic in undeclared[:MAX_UNDECLARED]:
        n = obs.topics[topic]
        kept = ", retained" if topic in obs.retained else ""
        out.add(f"mqtt.topic:{topic}", "in use", comp, f"observed on {where}",
                problem=f"undeclared topic: '{topic}' is in use on {view.name}'s broker "
                        f"({n} message{'s' if n != 1 else ''} in {obs.window:g} s{kept}) and "
                        f"no parity.broker.topics filter maps it to a declared edge")
    if len(undeclared) > MAX_UNDECLARED:
        out.notes.append(f"{len(undeclared) - MAX_UNDECLARED} more undeclared topics on "
                         f"{obs.url} not listed")
    if obs.dropped:
        out.notes.append(f"{obs.url}: more than {len(obs.topics)} topics in use; "
                         f"{obs.dropped} messages on further topics not classified")


#: Transport variants that are the same integration path (TLS or not is a config key).
_SAME_PROTOCOL = {"https": "http", "mqtts": "mqtt", "amqps": "amqp", "opc.tcp": "opcua",
                  "postgresql": "sql", "postgres": "sql", "mysql": "sql", "mariadb": "sql",
                  "sqlite": "sql"}


def _protocol(conf: object) -> str:
    scheme = _scheme(conf)
    return _SAME_PROTOCOL.get(scheme, scheme)


def _scheme(conf: object) -> str:
    if isinstance(conf, dict):
        if conf.get("protocol"):
            return str(conf["protocol"])
        url = conf.get("url")
        if isinstance(url, str) and "://" in url:
            return urlsplit(url).scheme.split("+")[0]
    if isinstance(conf, str) and "://" in conf:
        return urlsplit(conf).scheme.split("+")[0]
    return "?"
