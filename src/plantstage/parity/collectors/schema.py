"""Schema: tables, columns (type, nullability), keys, indexes and constraints, reflected.

Reflection is SQLAlchemy's inspector in its bulk form (``get_multi_*``: one catalogue query per
kind of object on PostgreSQL, instead of one per table), so 500 tables stay fast.

Types are compared by their generic SQLAlchemy type (``VARCHAR(64)`` on SQLite and
``character varying(64)`` on PostgreSQL are both ``string(64)``), so a PostgreSQL production
and a SQLite staging compare column by column; what still differs can be declared the same in
``parity.types``. Indexes and unique constraints are keyed by their columns, not their names:
engines name them differently, and a missing index is what matters, not its name.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.errors import PlantstageError
from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.spec.models import ComponentKind


def type_name(t: sa.types.TypeEngine, equivalent: dict[str, str] | None = None) -> str:
    """An engine-independent name of a column type, e.g. ``string(64)``, ``numeric(12,2)``."""
    try:
        g = t.as_generic()
    except NotImplementedError:  # an engine-only type (jsonb, inet …): keep its own name
        g = t
    name = type(g).__name__.lower()
    if name in ("nulltype",):
        name = str(t).lower()
    if name == "biginteger":
        name = "bigint"
    elif name == "smallinteger":
        name = "smallint"
    args = []
    if getattr(g, "length", None):
        args.append(str(g.length))
    if getattr(g, "precision", None) is not None and name in ("numeric", "decimal"):
        args.append(str(g.precision))
        if getattr(g, "scale", None) is not None:
            args.append(str(g.scale))
    full = f"{name}({','.join(args)})" if args else name
    if equivalent:
        full = equivalent.get(full, equivalent.get(name, full))
    return full


def equivalences(groups: list[list[str]]) -> dict[str, str]:
    """``[[jsonb, json, text]]`` → every name maps to the group's first name."""
    out = {}
    for group in groups:
        for n in group:
            out[n.lower()] = group[0].lower()
    return out


def _cols(names: list[str | None]) -> str:
    return "(" + ", ".join(str(n) for n in names) + ")"


def _norm_sql(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("()")).lower()


def collect(view: EnvView) -> LayerFacts:
    out = LayerFacts("schema")
    eq = equivalences(view.spec.parity.types)
    for name in view.spec.components_of(ComponentKind.database):
        if view.binding(name) is None:
            continue
        url, how = view.database_url(name)
        if url is None:
            out.fail("", name, how)
            continue
        try:
            engine = engines.connect_production(url)
        except PlantstageError as exc:
            out.fail("", name, exc.one_line())
            continue
        try:
            part = LayerFacts("schema")
            with engine.connect() as conn:
                reflect(conn, part, name, eq)
            out.facts.update(part.facts)
            out.notes.extend(part.notes)
            out.meta.setdefault("dialect", {})[name] = engine.dialect.name
            out.meta.setdefault("source", {})[name] = how
        except Exception as exc:  # noqa: BLE001 - one reason per database
            out.fail("", name, f"cannot reflect {engines.adapter_for(url).label}: "
                               f"{str(exc).splitlines()[0][:160]}")
        finally:
            engine.dispose()
    return out


def reflect(conn: sa.Connection, out: LayerFacts, component: str,
            eq: dict[str, str] | None = None) -> None:
    """Reflect every table of the connection's default schema into facts."""
    insp = sa.inspect(conn)
    tables = [t for t in insp.get_table_names() if t not in engines.MIGRATION_BOOKKEEPING]
    if not tables:
        out.notes.append(f"{component}: the database has no tables")
        return
    names = tables
    columns = insp.get_multi_columns(filter_names=names)
    pks = insp.get_multi_pk_constraint(filter_names=names)
    fks = insp.get_multi_foreign_keys(filter_names=names)
    indexes = insp.get_multi_indexes(filter_names=names)
    uniques = insp.get_multi_unique_constraints(filter_names=names)
    try:
        checks = insp.get_multi_check_constraints(filter_names=names)
    except NotImplementedError:
        checks = {}
    add = out.add
    for (_schema, t), cols in sorted(columns.items(), key=lambda kv: kv[0][1]):
        add(f"table.{t}", "present", component)
        for c in cols:
            null = "null" if c.get("nullable", True) else "not null"
            add(f"column.{t}.{c['name']}", f"{type_name(c['type'], eq)} {null}", component)
    for (_schema, t), pk in pks.items():
        if pk and pk.get("constrained_columns"):
            add(f"pk.{t}", _cols(pk["constrained_columns"]), component)
    for (_schema, t), items in fks.items():
        for fk in items:
            ref = f"{fk['referred_table']}{_cols(fk['referred_columns'])}"
            add(f"fk.{t}{_cols(fk['constrained_columns'])}", ref, component)
    for (_schema, t), items in uniques.items():
        for u in items:
            add(f"unique.{t}{_cols(u['column_names'])}", "unique", component)
    for (_schema, t), items in indexes.items():
        for ix in items:
            if ix.get("duplicates_constraint"):
                continue  # the index behind a unique constraint, already a unique fact
            cols: list[Any] = list(ix.get("column_names") or [])
            exprs = ix.get("expressions")
            if exprs:
                cols = [c if c is not None else e for c, e in zip(cols, exprs, strict=False)]
            kind = "unique" if ix.get("unique") else "index"
            add(f"{kind}.{t}{_cols(cols)}", kind, component, source=ix.get("name") or "")
    for (_schema, t), items in checks.items():
        for ck in items:
            label = ck.get("name") or _norm_sql(ck["sqltext"])[:60]
            add(f"check.{t}.{label}", _norm_sql(ck["sqltext"]), component)
