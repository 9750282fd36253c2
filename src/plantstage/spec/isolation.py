"""Spec models for tenant isolation probes (``isolation:``) and release rings (``rings:``).

Isolation: the spec names the app's tenant-scoped requests (``{tenant}`` in the path), what
each tenant owns (marker values: codes, numbers, names — read from the staging database) and,
for direct object references, a path with ``{id}`` and a query giving each tenant's ids. The
probe step asks every request as each tenant and fails on another tenant's code, key or marker
value anywhere in the JSON answer; it asks as tenant A for tenant B's ids and fails unless the
app refuses (403/404 by default) or answers empty. plantstage knows no endpoint, table or field
of the app: all of it comes from here (docs/isolation.md).

Rings: ordered groups of tenants a release enters one after the other (internal → pilot →
general); each ring after the first may say what the previous ring's evidence must show
(``entry``, CEL). docs/rings.md.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
_PH = re.compile(r"\{([a-z_]+)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _placeholders(text: str, allowed: tuple[str, ...], where: str) -> set[str]:
    found = set(_PH.findall(text))
    unknown = found - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown placeholder '{{{sorted(unknown)[0]}}}' (known: "
                         + ", ".join("{" + a + "}" for a in allowed) + ")")
    return found


class IsolationRequest(_Model):
    """One tenant-scoped request, asked as each tenant in turn.

    ``path`` names the tenant with ``{tenant}`` (its code) or ``{tenant_key}`` (its key from
    ``tenant_keys``); headers may too (an app that takes the tenant from a header). With
    ``object_path`` (``{id}`` plus the tenant), the request also probes direct object
    references: as tenant A it asks for ids ``object_ids`` returns for every other tenant.
    """

    name: str | None = Field(None, pattern=_NAME, description="Its name in the evidence "
                             "(default: the path).")
    method: str = Field("GET", description="HTTP method (the probe reads; use GET or a "
                        "read-only POST).")
    path: str = Field(description="Path with {tenant} (or {tenant_key}), e.g. "
                      "`/v1/{tenant}/orders?limit=500`.")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="Request headers ({tenant} allowed).")
    object_path: str | None = Field(
        None, description="Direct object references: a path with {tenant} and {id}; tenant A "
        "asks for tenant B's ids here and must be refused or get an empty answer.")
    object_ids: str | None = Field(
        None, description="With object_path: a read-only query on staging returning one "
        "tenant's ids in its first column; binds :tenant (the code) and :tenant_key.")

    @field_validator("method")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @model_validator(mode="after")
    def _shape(self) -> IsolationRequest:
        names = ("tenant", "tenant_key")
        found = _placeholders(self.path, names, "path")
        for k, v in self.headers.items():
            found |= _placeholders(f"{k}{v}", names, "headers")
        if not found:
            raise ValueError("path (or a header) must name the tenant with {tenant} or "
                             "{tenant_key}: the probe asks as each tenant in turn")
        if (self.object_path is None) != (self.object_ids is None):
            raise ValueError("give 'object_path' and 'object_ids' together")
        if self.object_path is not None:
            used = _placeholders(self.object_path, (*names, "id"), "object_path")
            if "id" not in used:
                raise ValueError("object_path must contain {id}")
            if not (used & set(names)) and not found - _placeholders(self.path, names, "path"):
                raise ValueError("object_path (or a header) must name the tenant")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.path}"


class Marker(_Model):
    """Values one tenant owns; any of them in another tenant's answer is a leak.

    Either ``sql`` (a read-only query returning ``(tenant, value)`` rows: the tenant's code or
    key, then the value), or ``table`` + ``column`` (+ ``tenant_column``, default
    ``tenant_id``): plantstage reads ``SELECT tenant_column, column FROM table``. Values are
    compared as text with JSON strings, whole (not substrings); numbers count only if
    ``numbers: true`` (small numbers are everywhere).
    """

    name: str | None = Field(None, pattern=_NAME, description="Its name in the evidence.")
    sql: str | None = Field(None, description="Query returning (tenant code or key, value).")
    table: str | None = Field(None, pattern=_IDENT, description="Table holding the values.")
    column: str | None = Field(None, pattern=_IDENT, description="Column of the values.")
    tenant_column: str = Field("tenant_id", pattern=_IDENT,
                               description="With table: the column naming the owning tenant.")
    numbers: bool = Field(False, description="Also match JSON numbers equal to a value.")
    min_length: int = Field(3, ge=1, description="Values shorter than this are ignored "
                            "(too common to prove a leak).")

    @model_validator(mode="after")
    def _one(self) -> Marker:
        if (self.sql is None) == (self.table is None):
            raise ValueError("give 'sql', or 'table' with 'column'")
        if self.table is not None and self.column is None:
            raise ValueError("'table' needs 'column'")
        if self.sql is not None and self.column is not None:
            raise ValueError("'column' goes with 'table', not with 'sql'")
        return self

    @property
    def label(self) -> str:
        return self.name or (f"{self.table}.{self.column}" if self.table else "sql")

    def query(self) -> str:
        if self.sql is not None:
            return self.sql
        return f"SELECT {self.tenant_column}, {self.column} FROM {self.table}"


class IsolationSpec(_Model):
    """Tenant isolation probes, run on the new version after the smoke checks.

    For each probed tenant A, every request is asked as A; the answer (JSON) must not hold
    another tenant's code anywhere, another tenant's code or key in a ``tenant_field``, nor a
    marker value another tenant owns. Each request with ``object_path`` then asks, as A, for
    up to ``per_tenant`` ids of each other tenant; the app must refuse (``refused``) or answer
    empty. Signals: ``isolation.leaks`` (answers holding another tenant's data),
    ``isolation.object_leaks`` (foreign ids served), ``isolation.requests``; a key gate
    ``tenant-isolation`` wants both leaks at 0 (unless a gate of the spec judges them).
    """

    tenants: list[str] | None = Field(
        None, description="Tenant codes to probe as (default: the workload's tenants, else "
        "every estate tenant; a ring rehearsal probes the ring's). Every estate tenant is "
        "'another tenant'.")
    tenant_field: list[str] = Field(
        default_factory=lambda: ["tenant", "tenant_id", "tenant_code"],
        description="JSON field names that name a record's tenant: a value there equal to "
        "another tenant's code or key is a leak (numbers included).")
    tenant_keys: str | None = Field(
        None, description="Query returning (code, key) per tenant — the key the data holds "
        "(e.g. a numeric tenant id); {tenant_key} and marker tenants may use it.")
    markers: list[Marker] = Field(
        default_factory=list, description="Values each tenant owns (its customers' codes, "
        "order numbers …), read from staging before the probe.")
    requests: list[IsolationRequest] = Field(
        min_length=1, description="Tenant-scoped requests (and object references) to probe.")
    refused: list[int] = Field([403, 404], description="Statuses that mean 'refused' for an "
                               "object reference.")
    per_tenant: int = Field(3, ge=1, le=100, description="Foreign ids asked per other tenant "
                            "and object request.")
    listed: int = Field(20, ge=1, le=500, description="Leaks listed in the evidence.")
    timeout: float = Field(15.0, gt=0, description="Seconds per request or query.")
    key: bool = Field(True, description="The built-in gate is a key gate (it vetoes).")

    @model_validator(mode="after")
    def _unique(self) -> IsolationSpec:
        seen: set[str] = set()
        for i, r in enumerate(self.requests):
            if r.label in seen:
                raise ValueError(f"requests[{i}]: '{r.label}' is declared twice")
            seen.add(r.label)
        return self


class Ring(_Model):
    """One release ring: the tenants it holds and what it takes to enter it."""

    name: str = Field(pattern=_NAME, description="Ring name (`rehearse --ring NAME`).")
    tenants: list[str] | Literal["*"] = Field(
        description="Estate tenant codes, or \"*\" for every estate tenant. A ring's "
        "rehearsal drives its tenants and every earlier ring's.")
    entry: str | None = Field(
        None, description="CEL over the previous ring's GO run: signal(\"name\"), verdict, "
        "release, gates.outcomes, gates.score, ring. Must be true to enter (the first ring "
        "has none).")
    description: str = ""


def check_rings(spec) -> None:
    """Cross-references (ValueError from the Spec's validator): known tenants, unique names,
    ``*`` only on the last ring, no ``entry`` on the first, entries that compile."""
    rings = getattr(spec, "rings", None) or []
    iso = getattr(spec, "isolation", None)
    codes = [t.code for t in spec.estate.tenants]
    if iso is not None:
        for t in iso.tenants or []:
            if t not in codes:
                raise ValueError(f"isolation.tenants: '{t}' is not an estate tenant")
    names: set[str] = set()
    held: dict[str, str] = {}
    for i, r in enumerate(rings):
        if r.name in names:
            raise ValueError(f"rings[{i}].name: '{r.name}' is used twice")
        names.add(r.name)
        if r.tenants == "*":
            if i != len(rings) - 1:
                raise ValueError(f"rings[{i}].tenants: \"*\" (every other tenant) only on the "
                                 "last ring")
        else:
            if not r.tenants:
                raise ValueError(f"rings[{i}].tenants: empty")
            for t in r.tenants:
                if t not in codes:
                    raise ValueError(f"rings[{i}].tenants: '{t}' is not an estate tenant")
                if t in held:
                    raise ValueError(f"rings[{i}].tenants: '{t}' is already in ring "
                                     f"'{held[t]}'")
                held[t] = r.name
        if i == 0 and r.entry:
            raise ValueError("rings[0].entry: the first ring has no previous ring to judge")
        if r.entry:
            from plantstage.spec.gates import _parse_or_raise

            try:
                _parse_or_raise(r.name, "entry", r.entry)
            except ValueError as exc:
                raise ValueError(f"rings[{i}].entry: {exc}") from None


def isolation_gates(spec, covered: set[str]) -> list:
    """The key gate ``tenant-isolation`` when ``isolation:`` is declared and no gate of the
    spec judges its signals already: no answer held another tenant's data, no foreign object
    was served."""
    from plantstage.spec.gates import Gate

    iso = getattr(spec, "isolation", None)
    leaks, objs = "isolation.leaks", "isolation.object_leaks"
    if iso is None or leaks in covered or objs in covered:
        return []
    return [Gate(name="tenant-isolation", key=iso.key,
                 value=f'signal("{leaks}") + signal("{objs}")',
                 pass_=f'signal("{leaks}") == 0.0 && signal("{objs}") == 0.0',
                 threshold="0 leaking answers, 0 foreign objects served",
                 cause="tenant isolation broken: an answer held another tenant's data, or "
                 "a tenant was served another tenant's object")]
