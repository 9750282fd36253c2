"""Database objects beyond tables, read from each engine's catalogue: sequences (with their
current values), views, functions and procedures, triggers, enum types and extensions.

The refresh carries them to staging and parity compares them; both read them here, with
plain ``SELECT``s only (production's statement guard lets them through, and nothing else).
Objects that belong to an extension are the extension's: only the extension is listed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from plantstage.engines import MIGRATION_BOOKKEEPING

#: Object kinds each engine has at all (a kind missing here is "not applicable" there).
KINDS: dict[str, tuple[str, ...]] = {
    "postgresql": ("sequence", "view", "function", "trigger", "enum", "extension"),
    "mysql": ("sequence", "view", "function", "trigger"),
    "sqlite": ("view", "trigger"),
}
ALL_KINDS = ("sequence", "view", "function", "trigger", "enum", "extension")


@dataclass
class DbObject:
    """One object: its kind, its name, what parity compares, and how to create it again.

    ``detail`` holds what a kind needs besides: a sequence's ``increment``, ``next`` (the value
    ``nextval`` gives next), ``owned_by`` (``table.column`` or None); a trigger's ``table``.
    """

    kind: str
    name: str
    value: str
    ddl: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}.{self.name}"


def normalise_sql(text: str | None) -> str:
    """Engine SQL in one spelling for comparing: whitespace collapsed, lower case, no
    trailing semicolon."""
    t = re.sub(r"\s+", " ", (text or "").strip()).rstrip(";").strip()
    return t.lower()


def body_hash(text: str | None) -> str:
    return hashlib.sha256(normalise_sql(text).encode()).hexdigest()[:12]


def read_objects(conn: sa.Connection, *, values: bool = True) -> list[DbObject]:
    """Every object of the connection's database (its default schema first), by kind.

    ``values`` reads each sequence's next value (a refresh carries it). Parity compares no
    values and passes False: reading a sequence needs a privilege on it that a read-only
    production role often lacks, while the catalogue is readable by anyone."""
    reader = {"postgresql": _pg, "mysql": _my, "mariadb": _my, "sqlite": _lite}.get(
        conn.dialect.name)
    if reader is None:
        return []
    return reader(conn) if values or reader is _lite else reader(conn, values=False)


# -- PostgreSQL ---------------------------------------------------------------------------------
_PG_SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"
#: Objects an extension created (its functions, types …) belong to the extension.
_PG_NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{cat}'::regclass "
               "AND d.objid = {oid} AND d.deptype = 'e')")


def _pg_name(schema: str, name: str, default: str) -> str:
    return name if schema == default else f"{schema}.{name}"


def _pg(conn: sa.Connection, values: bool = True) -> list[DbObject]:
    q = lambda sql, **kw: conn.execute(sa.text(sql), kw).all()  # noqa: E731
    default = conn.execute(sa.text("SELECT current_schema()")).scalar() or "public"
    prep = conn.dialect.identifier_preparer
    out: list[DbObject] = []
    for ext, version, schema in q("SELECT e.extname, e.extversion, n.nspname FROM pg_extension e "
                                  "JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1"):
        out.append(DbObject("extension", ext, str(version),
                            f'CREATE EXTENSION IF NOT EXISTS "{ext}" WITH SCHEMA "{schema}"',
                            {"schema": schema}))
    for schema, name, labels in q(
            "SELECT n.nspname, t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) "
            "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "JOIN pg_enum e ON e.enumtypid = t.oid "
            f"WHERE n.nspname NOT IN {_PG_SYSTEM} AND "
            + _PG_NOT_EXT.format(cat="pg_type", oid="t.oid") +
            " GROUP BY n.nspname, t.typname ORDER BY 1, 2"):
        quoted = ", ".join("'" + str(lb).replace("'", "''") + "'" for lb in labels)
        out.append(DbObject("enum", _pg_name(schema, name, default), ", ".join(labels),
                            f'CREATE TYPE "{schema}"."{name}" AS ENUM ({quoted})'))
    for schema, name, inc, owned, readable, start in q(
            "SELECT s.schemaname, s.sequencename, s.increment_by, "
            "(SELECT t.relname || '.' || a.attname FROM pg_depend d "
            " JOIN pg_class t ON t.oid = d.refobjid "
            " JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
            " WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
            " AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1), "
            "has_sequence_privilege(c.oid, 'SELECT'), s.start_value "
            "FROM pg_sequences s JOIN pg_namespace n ON n.nspname = s.schemaname "
            "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename "
            f"WHERE s.schemaname NOT IN {_PG_SYSTEM} AND "
            + _PG_NOT_EXT.format(cat="pg_class", oid="c.oid") + " ORDER BY 1, 2"):
        if owned and owned.split(".")[0] in MIGRATION_BOOKKEEPING:
            continue  # a migration tool's (or the refresh marker's) key, not the app's
        # The sequence itself says where it is (pg_sequences shows NULL after a
        # setval(…, false)); with a cache, last_value may be past the last value handed out:
        # a gap on staging, never a number used twice.
        nxt = None
        if values and readable:
            # Without SELECT on it (a read-only role granted the tables only) the value cannot
            # be read, and trying would abort the transaction: "next" stays None and the
            # refresh says what it did instead.
            last, called = conn.execute(sa.text(
                f"SELECT last_value, is_called FROM {prep.quote(schema)}.{prep.quote(name)}")
            ).one()
            nxt = int(last) + int(inc) if called else int(last)
        value = f"increment {inc}" + (f", owned by {owned}" if owned else "")
        out.append(DbObject("sequence", _pg_name(schema, name, default), value,
                            f'CREATE SEQUENCE "{schema}"."{name}" INCREMENT BY {inc}',
                            {"increment": int(inc), "next": nxt, "owned_by": owned,
                             "schema": schema, "sequence": name,
                             "readable": bool(readable), "start": int(start)}))
    for schema, name, definition, mat in q(
            "SELECT schemaname, viewname, definition, false FROM pg_views "
            f"WHERE schemaname NOT IN {_PG_SYSTEM} UNION ALL "
            "SELECT schemaname, matviewname, definition, true FROM pg_matviews "
            f"WHERE schemaname NOT IN {_PG_SYSTEM} ORDER BY 1, 2"):
        kind = "MATERIALIZED VIEW" if mat else "VIEW"
        out.append(DbObject("view", _pg_name(schema, name, default),
                            ("materialized: " if mat else "") + normalise_sql(definition),
                            f'CREATE {kind} "{schema}"."{name}" AS {definition}'))
    for schema, name, args, result, lang, src, ddl, kind in q(
            "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), "
            "pg_get_function_result(p.oid), l.lanname, p.prosrc, pg_get_functiondef(p.oid), "
            "p.prokind FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "JOIN pg_language l ON l.oid = p.prolang "
            f"WHERE n.nspname NOT IN {_PG_SYSTEM} AND p.prokind IN ('f', 'p') AND "
            + _PG_NOT_EXT.format(cat="pg_proc", oid="p.oid") + " ORDER BY 1, 2, 3"):
        what = "procedure" if kind == "p" else f"returns {result}"
        out.append(DbObject("function", _pg_name(schema, name, default) + f"({args})",
                            f"{what} language {lang} body {body_hash(src)}", ddl))
    for table, name, tgtype, fn, enabled, ddl in q(
            "SELECT c.relname, t.tgname, t.tgtype, t.tgfoid::regproc::text, t.tgenabled, "
            "pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE NOT t.tgisinternal AND n.nspname NOT IN {_PG_SYSTEM} ORDER BY 1, 2"):
        tg = int(tgtype)
        timing = "instead of" if tg & 64 else ("before" if tg & 2 else "after")
        events = [e for bit, e in ((4, "insert"), (16, "update"), (8, "delete"),
                                   (32, "truncate")) if tg & bit]
        level = "row" if tg & 1 else "statement"
        value = f"{timing} {' or '.join(events)} for each {level} execute {fn}"
        if enabled == "D":
            value += " (disabled)"
        out.append(DbObject("trigger", f"{table}.{name}", value, ddl, {"table": table}))
    return out


# -- MariaDB / MySQL ----------------------------------------------------------------------------
def _my(conn: sa.Connection, values: bool = True) -> list[DbObject]:
    db = conn.execute(sa.text("SELECT DATABASE()")).scalar()
    q = lambda sql: conn.execute(sa.text(sql), {"db": db}).all()  # noqa: E731
    out: list[DbObject] = []
    prep = conn.dialect.identifier_preparer
    for (name,) in q("SELECT table_name FROM information_schema.tables "
                     "WHERE table_schema = :db AND table_type = 'SEQUENCE' ORDER BY 1"):
        row = conn.execute(sa.text(f"SELECT next_not_cached_value, increment, minimum_value, "
                                   f"maximum_value, cache_size, cycle_option "
                                   f"FROM {prep.quote(name)}")).one()
        nxt, inc = int(row[0]), int(row[1])
        # MariaDB hands out values from a cache: the next value not cached is the value it
        # would start from after a restart (a gap, never a reuse).
        out.append(DbObject("sequence", name, f"increment {inc}",
                            f"CREATE SEQUENCE {prep.quote(name)} INCREMENT BY {inc} "
                            f"MINVALUE {row[2]} MAXVALUE {row[3]} CACHE {row[4]}"
                            + (" CYCLE" if row[5] else ""),
                            {"increment": inc, "next": nxt, "owned_by": None, "sequence": name}))
    for name, definition in q("SELECT table_name, view_definition FROM information_schema.views "
                              "WHERE table_schema = :db ORDER BY 1"):
        # The catalogue qualifies every name with the database: not part of the definition.
        body = str(definition).replace(f"`{db}`.", "")
        out.append(DbObject("view", name, normalise_sql(body),
                            f"CREATE VIEW {prep.quote(name)} AS {body}"))
    for name, rtype, dtd, body in q(
            "SELECT routine_name, routine_type, dtd_identifier, routine_definition "
            "FROM information_schema.routines WHERE routine_schema = :db ORDER BY 1"):
        args = ", ".join(
            f"{m or 'in'} {p} {t}".strip().lower() if rtype == "PROCEDURE" else f"{p} {t}".lower()
            for m, p, t in conn.execute(sa.text(
                "SELECT parameter_mode, parameter_name, dtd_identifier FROM "
                "information_schema.parameters WHERE specific_schema = :db AND "
                "specific_name = :n AND ordinal_position > 0 ORDER BY ordinal_position"),
                {"db": db, "n": name}).all())
        what = "procedure" if rtype == "PROCEDURE" else f"returns {str(dtd).lower()}"
        try:
            ddl = conn.execute(sa.text(f"SHOW CREATE {rtype} {prep.quote(name)}")).one()[2]
            ddl = re.sub(r"\s+DEFINER\s*=\s*\S+", "", ddl, count=1) if ddl else None
        except Exception:  # noqa: BLE001 - no privilege to see the source: compared, not carried
            ddl = None
        out.append(DbObject("function", f"{name}({args})",
                            f"{what} language sql body {body_hash(body)}", ddl))
    for name, event, table, timing, stmt, level in q(
            "SELECT trigger_name, event_manipulation, event_object_table, action_timing, "
            "action_statement, action_orientation FROM information_schema.triggers "
            "WHERE trigger_schema = :db ORDER BY 3, 1"):
        value = (f"{timing.lower()} {event.lower()} for each {level.lower()} "
                 f"body {body_hash(stmt)}")
        out.append(DbObject("trigger", f"{table}.{name}", value,
                            f"CREATE TRIGGER {prep.quote(name)} {timing} {event} ON "
                            f"{prep.quote(table)} FOR EACH {level} {stmt}", {"table": table}))
    return out


# -- SQLite -------------------------------------------------------------------------------------
_LITE_TRIGGER = re.compile(
    r"create\s+(?:temp\w*\s+)?trigger\s+(?:if\s+not\s+exists\s+)?\S+\s+"
    r"(before|after|instead\s+of)?\s*(insert|update(?:\s+of\s+[^\n]+?)?|delete)\s+on\s+"
    r"\S+\s+(?:for\s+each\s+row\s+)?(?:when\s+(.*?)\s+)?begin\s+(.*)end\s*;?\s*$",
    re.I | re.S)


def _lite(conn: sa.Connection) -> list[DbObject]:
    out: list[DbObject] = []
    rows = conn.execute(sa.text("SELECT type, name, tbl_name, sql FROM sqlite_master "
                                "WHERE type IN ('view', 'trigger') AND sql IS NOT NULL "
                                "ORDER BY type DESC, name")).all()
    for kind, name, table, sql in rows:
        if kind == "view":
            m = re.search(r"\bas\b\s+(.*)$", sql, re.I | re.S)
            out.append(DbObject("view", name, normalise_sql(m.group(1) if m else sql), sql))
            continue
        m = _LITE_TRIGGER.search(sql)
        if m:
            timing = re.sub(r"\s+", " ", (m.group(1) or "before").lower())
            event = re.sub(r"\s+", " ", m.group(2).lower())
            value = f"{timing} {event} for each row body {body_hash(m.group(4))}"
        else:
            value = f"body {body_hash(sql)}"
        out.append(DbObject("trigger", f"{table}.{name}", value, sql, {"table": table}))
    return out
