"""The target's tables: production's schema as the target engine can create them, created
bare with their indexes and foreign keys kept for after the load."""

from __future__ import annotations

import re

import sqlalchemy as sa

from plantstage.engines.order import sorted_tables

#: Spellings of "now" (SQLite, PostgreSQL, MariaDB) → the standard keyword every engine takes.
_NOW = {"current_timestamp", "current_timestamp()", "now()", "localtimestamp",
        "localtimestamp()", "datetime('now')", "datetime('now', 'localtime')",
        "datetime('now','localtime')", "transaction_timestamp()", "statement_timestamp()",
        "clock_timestamp()", "utc_timestamp()", "sysdate()"}
_TODAY = {"current_date", "current_date()", "curdate()", "date('now')"}
_CAST = re.compile(r"::[A-Za-z_][\w ]*(\[\])?(\(\d+(,\s*\d+)?\))?$")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?")
_STRING = re.compile(r"'(?:[^']|'')*'")


def _unwrap(s: str) -> str:
    s = s.strip()
    while s.startswith("(") and s.endswith(")") and s.count("(") == s.count(")"):
        s = s[1:-1].strip()
    while (m := _CAST.search(s)) and not s.endswith("''"):
        s = s[:m.start()].strip()
        while s.startswith("(") and s.endswith(")"):
            s = s[1:-1].strip()
    return s


def portable_default(text: str, col: sa.Column, dialect: str) -> str | None:
    """A column default of one engine in the SQL of another, or None when it is not a
    literal or a known expression (a sequence, a function of the source engine)."""
    s = _unwrap(text)
    low = s.lower()
    if "nextval" in low or low in ("null", ""):
        return None
    is_bool = isinstance(col.type, sa.Boolean)
    if low in _NOW:
        date_only = isinstance(col.type, sa.Date) and not isinstance(col.type, sa.DateTime)
        return "CURRENT_DATE" if date_only else "CURRENT_TIMESTAMP"
    if low in _TODAY:
        return "CURRENT_DATE"
    truth = None
    if low in ("true", "'t'", "'true'", "'1'", "1") and is_bool:
        truth = True
    elif low in ("false", "'f'", "'false'", "'0'", "0") and is_bool:
        truth = False
    if truth is not None:
        if dialect == "postgresql":
            return "true" if truth else "false"
        return "1" if truth else "0"
    if _NUMBER.fullmatch(s) or _STRING.fullmatch(s):
        return s
    return None


def target_metadata(src_md: sa.MetaData, tables: list[str], dialect: sa.Dialect,
                    same_engine: bool, notes: list[str] | None = None) -> sa.MetaData:
    """Production's tables as the target engine can create them.

    Column defaults travel: literals as they are, "now" and "today" in their standard
    spelling, booleans as the target spells them. A default that is neither (a sequence, a
    function of the source engine) is left out and named in ``notes``."""
    md = sa.MetaData()
    for t in sorted_tables(src_md):
        if t.name in tables:
            t.to_metadata(md)
    for table in md.tables.values():
        for col in table.columns:
            if not same_engine:
                # Another engine: its own spelling of the generic type (SQLite's DATETIME is
                # no PostgreSQL type, PostgreSQL's JSONB no SQLite one).
                try:
                    col.type = col.type.as_generic()
                except NotImplementedError:
                    pass
            try:
                col.type.compile(dialect=dialect)
            except Exception:
                col.type = sa.Text() if isinstance(col.type, sa.String) else col.type
            default = col.server_default
            if default is None:
                continue
            text = str(getattr(default, "arg", ""))
            if same_engine:
                if "nextval" in text:
                    col.server_default = None  # the target's own sequence (autoincrement)
                continue
            mapped = portable_default(text, col, dialect.name)
            col.server_default = sa.DefaultClause(sa.text(mapped)) if mapped else None
            if mapped is None and "nextval" not in text.lower() and notes is not None:
                notes.append(f"{table.name}.{col.name}: default {text} has no "
                             f"{dialect.name} spelling; left out")
    return md


def create_tables_deferred(dst: sa.Engine, md: sa.MetaData) -> list:
    """Create the tables bare; return the index and foreign-key DDL to run after the load.

    Loading into unindexed, unconstrained tables and building indexes once afterwards is what
    makes pg_restore fast; a per-row index update and foreign-key lookup costs several times
    the COPY itself. SQLite cannot add a foreign key later (and does not check them while
    loading anyway), so it gets its tables whole.
    """
    if dst.dialect.name == "sqlite":
        md.create_all(dst)
        return []
    later: list = []
    with dst.begin() as c:
        for table in sorted_tables(md):
            fks = [fk for fk in table.constraints if isinstance(fk, sa.ForeignKeyConstraint)]
            c.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))
            later += [sa.schema.CreateIndex(ix) for ix in table.indexes]
            later += [sa.schema.AddConstraint(fk) for fk in fks]
    # Indexes first: a foreign key is checked faster against an indexed parent.
    return sorted(later, key=lambda d: isinstance(d, sa.schema.AddConstraint))
