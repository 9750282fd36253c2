"""Collectors: each reads one layer of one environment, read-only, into facts.

One module per layer, registered by name in :data:`COLLECTORS` (the order is the report's).
A collector never raises for something it cannot read: it records the scope as unknown with
the reason, so that a layer nobody could read is never reported as ``same``.
"""

from __future__ import annotations

from collections.abc import Callable

from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors import access, config, schema, topology, versions

Collector = Callable[[EnvView], LayerFacts]

COLLECTORS: dict[str, Collector] = {
    "topology": topology.collect,
    "versions": versions.collect,
    "schema": schema.collect,
    "config": config.collect,
    "access": access.collect,
}

__all__ = ["COLLECTORS", "Collector"]
