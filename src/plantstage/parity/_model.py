"""Parity data: facts an environment shows, findings of a comparison, the report.

A collector turns one layer of one environment into *facts*: a flat map from a key
(``erp.scale``, ``column.items.code``, ``erp-settings:server.workers``) to a JSON-able value and
the component it belongs to. Flat keys make every layer comparable by the same code, keep the
comparison linear in the number of facts, and give each finding a name a user can put into an
``allowed`` rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LAYERS = ("topology", "versions", "schema", "config", "access")
STATUSES = ("same", "allowed", "drift", "unknown")


@dataclass
class Fact:
    """One thing an environment shows: its value, its component, where it was seen."""

    value: Any
    component: str | None = None
    source: str = ""
    #: A fact that is drift on its own, whatever the other side shows (an undeclared edge).
    problem: str | None = None


@dataclass
class LayerFacts:
    """What a collector saw of one layer of one environment."""

    layer: str
    facts: dict[str, Fact] = field(default_factory=dict)
    #: Scopes (key prefixes) that could not be read → (component, reason). A whole-layer
    #: failure is the scope ``""``.
    unknown: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, value: Any, component: str | None, source: str = "",
            problem: str | None = None) -> None:
        self.facts[key] = Fact(value, component, source, problem)

    def fail(self, scope: str, component: str | None, reason: str) -> None:
        self.unknown[scope] = (component, reason)


@dataclass
class Finding:
    layer: str
    key: str
    status: str  # same | allowed | drift | unknown
    component: str | None = None
    severity: str | None = None  # for drift
    production: Any = None
    staging: Any = None
    reason: str = ""
    blocking: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ParityReport:
    """The result of comparing two environments, layer by layer."""

    spec: str
    between: tuple[str, str]
    findings: list[Finding]
    layers: dict[str, dict[str, Any]]
    seconds: float = 0.0
    sources: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- judgement ----------------------------------------------------------------------
    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    @property
    def compared(self) -> int:
        """Findings read from the environments and compared (not ``unknown``).

        Topology is left out: it is mostly the spec's own declaration, so a comparison in
        which no environment could be read would otherwise still look like one.
        """
        return sum(1 for f in self.findings if f.status != "unknown" and f.layer != "topology")

    @property
    def exit_code(self) -> int:
        """0 nothing blocks, 1 blocking drift or unknown, 2 nothing could be compared."""
        if self.compared == 0:
            return 2
        if self.blocking:
            return 1
        return 0

    @property
    def outcome(self) -> str:
        if self.exit_code == 1:
            kinds = {f.status for f in self.blocking}
            return "blocking drift" if kinds == {"drift"} else \
                "blocking unknown" if kinds == {"unknown"} else "blocking drift and unknown"
        return {0: "pass", 2: "nothing compared"}[self.exit_code]

    def counts(self, layer: str | None = None) -> dict[str, int]:
        c = dict.fromkeys(STATUSES, 0)
        for f in self.findings:
            if layer is None or f.layer == layer:
                c[f.status] += 1
        return c

    def signals(self) -> dict[str, float]:
        """Signals for the run's store: what blocks (``parity.drift.blocking``,
        ``parity.unknown.blocking``) and counts per layer."""
        total = self.counts()
        out = {
            "parity.drift.blocking": sum(1 for f in self.blocking if f.status == "drift"),
            "parity.unknown.blocking": sum(1 for f in self.blocking if f.status == "unknown"),
            "parity.drift.total": total["drift"],
            "parity.allowed": total["allowed"],
            "parity.same": total["same"],
            "parity.unknown": total["unknown"],
        }
        for layer in LAYERS:
            c = self.counts(layer)
            out[f"parity.{layer}.drift"] = c["drift"]
            out[f"parity.{layer}.unknown"] = c["unknown"]
        return out

    def section(self, *, same_rows: bool = False) -> dict[str, Any]:
        """The report section: counts per layer and every row that is not ``same``."""
        layers = []
        for layer in LAYERS:
            rows = [f.as_dict() for f in self.findings
                    if f.layer == layer and (same_rows or f.status != "same")]
            layers.append({"name": layer, "status": self.layers[layer]["status"],
                           "counts": self.counts(layer), "notes": self.layers[layer]["notes"],
                           "rows": rows})
        return {"between": list(self.between), "outcome": self.outcome,
                "exit_code": self.exit_code, "blocking": len(self.blocking),
                "counts": self.counts(), "layers": layers, "sources": self.sources,
                "seconds": self.seconds}

    def as_dict(self) -> dict[str, Any]:
        d = self.section(same_rows=True)
        d["spec"] = self.spec
        return d
