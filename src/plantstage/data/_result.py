"""What a refresh did and what its verification found: the evidence a run records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[str, int, int], None]


@dataclass
class RefreshResult:
    """What a refresh did and what its verification found (the evidence)."""

    source: str
    target: str
    key_source: str
    coverage: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    leaks: dict[str, int] = field(default_factory=dict)
    #: table.column → keys of the first rows that leaked (``id=17``), never the values
    leak_rows: dict[str, list[str]] = field(default_factory=dict)
    leak_values: int = 0
    fk_violations: dict[str, int] = field(default_factory=dict)
    subset: bool = False
    seconds: float = 0.0
    schema: str = "source"
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t["written"] for t in self.tables)

    @property
    def unclassified(self) -> int:
        return sum(1 for c in self.coverage if c["status"] in ("unclassified", "drift"))

    @property
    def count_mismatches(self) -> int:
        # rows the migrations seeded and the refresh kept are in the target too
        return sum(1 for t in self.tables if t["written"] != t["planned"]
                   or t["in_target"] != t["written"] + t.get("seeded", 0))

    @property
    def ok(self) -> bool:
        return not self.leaks and not self.fk_violations and not self.count_mismatches

    def signals(self) -> dict[str, float]:
        masked = sum(1 for c in self.coverage if c["status"] == "masked")
        return {"refresh.leaks": sum(self.leaks.values()),
                "refresh.unclassified": self.unclassified,
                "refresh.fk_violations": sum(self.fk_violations.values()),
                "refresh.count_mismatches": self.count_mismatches,
                "refresh.rows": self.rows, "refresh.masked_columns": masked,
                "refresh.seconds": round(self.seconds, 3)}

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "key": self.key_source,
                "schema": self.schema, "subset": self.subset, "rows": self.rows,
                "seconds": round(self.seconds, 2),
                "rows_per_s": round(self.rows / self.seconds) if self.seconds else None,
                "coverage": self.coverage, "tables": self.tables,
                "leak_values_checked": self.leak_values, "leaks": self.leaks,
                "leak_rows": self.leak_rows,
                "fk_violations": self.fk_violations, "notes": self.notes,
                "signals": self.signals(), "ok": self.ok}
