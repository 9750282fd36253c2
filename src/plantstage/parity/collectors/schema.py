"""Schema: tables, columns (type, nullability), keys, indexes and constraints, reflected;
and the other objects the app needs: sequences, views, functions, triggers, enum types and
extensions (read from the engine's catalogue by :mod:`plantstage.engines.objects`).

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
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from plantstage import engines
from plantstage.engines.objects import ALL_KINDS, KINDS, read_objects
from plantstage.errors import PlantstageError
from plantstage.parity._environment import EnvView
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors.access import NOT_APPLICABLE
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


_CAST = re.compile(r"::[a-z_][\w .\"]*(\[\])?(\(\d+(,\s*\d+)?\))?$", re.I)
#: Spellings of "the current transaction's timestamp" (PostgreSQL now() is
#: transaction_timestamp(); SQLite's CURRENT_TIMESTAMP is datetime('now')). Local-time and
#: per-statement variants are other defaults and stay distinct.
_NOW = {"now()", "current_timestamp", "current_timestamp()", "transaction_timestamp()",
        "datetime('now')"}
_TODAY = {"current_date", "current_date()", "curdate()", "date('now')"}
_STRING = re.compile(r"^'(?:[^']|'')*'$")
_TRUE = {"true", "1", "'t'", "'true'", "b'1'", "'1'"}
_FALSE = {"false", "0", "'f'", "'false'", "b'0'", "'0'"}


def normalise_default(text: str | None, type_: str = "") -> str | None:
    """A column default as the engine reflects it → one spelling for every engine.

    Engines spell the same default differently: PostgreSQL casts literals
    (``'open'::character varying``), SQLite keeps the DDL's parentheses and quotes numbers
    (``'0'``), MariaDB writes ``current_timestamp()`` and ``NULL`` for "no default". Each of
    these becomes one form (``'open'``, ``0``, ``now``, none) so that only a changed default is
    drift. Sequence defaults (``nextval(…)``) are auto-increment, not defaults: none.
    ``type_`` is the column's :func:`type_name` (booleans: ``1``/``true``/``'t'`` are one).
    """
    if text is None:
        return None
    t = re.sub(r"\s+", " ", str(text).strip())
    for _ in range(5):  # peel parentheses and casts, in either order, a few levels deep
        before = t
        while t.startswith("(") and t.endswith(")") and _balanced(t[1:-1]):
            t = t[1:-1].strip()
        t = _CAST.sub("", t).strip()
        if t == before:
            break
    low = t.lower()
    if low in ("", "null") or low.startswith("nextval("):
        return None
    if low.replace(" ", "") in {n.replace(" ", "") for n in _NOW}:
        return "now"
    if low.replace(" ", "") in _TODAY:
        return "today"
    if type_.startswith("boolean"):
        if low in _TRUE:
            return "true"
        if low in _FALSE:
            return "false"
    unquoted = t[1:-1].replace("''", "'") if _STRING.match(t) else None
    number = _number(unquoted if unquoted is not None else t)
    if number is not None:
        return number
    if unquoted is not None:
        return "'" + unquoted.replace("'", "''") + "'"
    return low  # an expression: compared as the engine writes it, in lower case


def _boolish(t: sa.types.TypeEngine) -> bool:
    # MariaDB/MySQL store BOOLEAN as TINYINT(1): its default 0/1 is false/true there too.
    if isinstance(t, sa.Boolean):
        return True
    return type(t).__name__.upper() == "TINYINT" and getattr(t, "display_width", None) == 1


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def _number(text: str) -> str | None:
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite():
        return None
    # 0, 0.0 and 0.00 are one default; -0 is 0
    return format(d.normalize() + 0, "f")


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
    tables = [t for t in insp.get_table_names()
              if not engines.is_bookkeeping(t, [c["name"] for c in insp.get_columns(t)])]
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
            tname = type_name(c["type"], eq)
            add(f"column.{t}.{c['name']}", f"{tname} {null}", component)
            default = normalise_default(c.get("default"),
                                        "boolean" if _boolish(c["type"]) else tname)
            if default is not None:
                add(f"default.{t}.{c['name']}", default, component,
                    source=str(c.get("default")))
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
    objects(conn, out, component)


def objects(conn: sa.Connection, out: LayerFacts, component: str) -> None:
    """Sequences, views, functions, triggers, enum types and extensions as facts.

    ``sequence.NAME``: its increment (and the column that owns it) — not its value, which
    staging moves on its own; ``view.NAME``: the definition, normalised; ``function.NAME(ARGS)``:
    what it returns, its language and a hash of its body; ``trigger.TABLE.NAME``: timing,
    events, level and the function it runs (or its body's hash); ``enum.NAME``: the labels in
    order; ``extension.NAME``: its version. A kind the engine does not have at all (SQLite's
    sequences) is not applicable, so the other side's are a note, not drift."""
    dialect = conn.dialect.name
    has = KINDS.get(dialect, ())
    missing = [k for k in ALL_KINDS if k not in has]
    reason = (f"{dialect} has no " + ", ".join(f"{k}s" for k in missing)
              + " — not compared") if missing else ""
    for kind in missing:
        out.fail(f"{kind}.", component, NOT_APPLICABLE + reason)
    for o in read_objects(conn, values=False):  # parity compares no sequence values
        out.add(o.key, o.value, component)
