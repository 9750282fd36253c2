"""Topology: which components an environment binds, how (fidelity, scale), and the edges.

Edges come from two places: the estate declares them (shared by every environment, present
where both ends are bound), and each component's configuration shows where it actually
connects (the ``integrations`` key of a :class:`ConfigSource`). An observed edge the estate
does not declare is drift in its own right — staging would be rehearsing an integration path
nobody reviewed — and so is an observed protocol that is not the declared one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors.config import ConfigUnreadable, load_source


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
        path = view.file(getattr(src, view.name))
        try:
            data = load_source(path, src.format)
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
    return out


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
