"""Spec model of business transaction monitors (``monitors:``).

A monitor is a read-only SQL query on the staging database that returns one number — the
age of the oldest unprocessed item, how many postings failed, the lag from a confirmation to
its stock movement. plantstage samples it in the background during every load phase and
records ``monitor.<phase>.<name>.<stat>`` signals that gates can name (docs/monitors.md).
The core knows no app: what a monitor measures lives entirely in the spec's SQL.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
#: Dialect keys a query mapping may use (SQLAlchemy backend names), and ``default``.
DIALECTS = ("sqlite", "postgresql", "mysql", "default")
_READ = re.compile(r"^\s*(select|with)\b", re.I)
#: What every monitor records per phase, and what it means.
STATS = {
    "last": "the last value sampled in the phase",
    "max": "the highest value sampled",
    "min": "the lowest value sampled",
    "mean": "the mean of the values sampled",
    "samples": "samples that returned a value (NULL answers are not samples)",
    "errors": "samples whose query failed (never fatal once the phase runs)",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Combine(StrEnum):
    """How a per-tenant monitor's values at one instant become the monitor's value."""

    max = "max"
    sum = "sum"


class Monitor(_Model):
    """A number the staging database holds about the business, sampled during every load
    phase: ``monitor.<phase>.<name>.{last,max,min,mean,samples,errors}`` (docs/monitors.md)."""

    name: Annotated[str, Field(pattern=_NAME, description="Identifier: letters, digits, _ -")]
    query: str | dict[str, str] = Field(
        description="A SELECT (or WITH … SELECT) on the staging database returning one row of "
        "one number; NULL means no value at that instant (write COALESCE(…, 0) where no rows "
        "means zero). Or a mapping of dialect (sqlite, postgresql, mysql, default) to query, "
        "for SQL that differs per database (clock arithmetic). With `:tenant` in it, it runs "
        "once per tenant the phase drives.")
    unit: str = Field("", description="Unit of the value (s, ms, count, kg …), shown live and "
                      "on the Prometheus gauge's `unit` label.")
    every: float = Field(1.0, ge=0.2, le=600, description="Seconds between two samples.")
    combine: Combine = Field(
        Combine.max, description="Per-tenant monitors: the monitor's value at one instant is "
        "the max (worst tenant) or the sum over the tenants; each tenant also gets its own "
        "signals (monitor.<phase>.<name>.tenant.<tenant>.<stat>).")
    description: str = ""

    @field_validator("query")
    @classmethod
    def _read_only(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        queries = {"default": v} if isinstance(v, str) else v
        if not queries:
            raise ValueError("give a query, or a mapping of dialect to query")
        for dialect, sql in queries.items():
            if dialect not in DIALECTS:
                raise ValueError(f"'{dialect}' is not a dialect ({', '.join(DIALECTS)})")
            if not _READ.match(sql):
                raise ValueError("must be a SELECT (or WITH … SELECT) returning one number: "
                                 "monitors only read")
            if ";" in sql.strip().rstrip(";"):
                raise ValueError("must be one statement (no ';' between statements)")
        return v

    def query_for(self, dialect: str) -> str | None:
        """The query for a SQLAlchemy backend name (``mariadb`` reads ``mysql``), else the
        ``default`` one, else None."""
        if isinstance(self.query, str):
            return self.query
        key = "mysql" if dialect == "mariadb" else dialect
        return self.query.get(key, self.query.get("default"))

    @property
    def per_tenant(self) -> bool:
        queries = [self.query] if isinstance(self.query, str) else list(self.query.values())
        return any(re.search(r":tenant\b", q) for q in queries)


def _unique(monitors: list[Monitor]) -> list[Monitor]:
    seen: dict[str, int] = {}
    for i, m in enumerate(monitors):
        if m.name in seen:
            raise ValueError(f"name '{m.name}' is used twice (monitors[{seen[m.name]}] and "
                             f"monitors[{i}])")
        seen[m.name] = i
    return monitors


#: The spec's ``monitors:`` field type (names unique).
Monitors = Annotated[list[Monitor], AfterValidator(_unique)]
