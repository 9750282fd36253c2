"""Database engines: one module per engine, registered by SQLAlchemy dialect name.

Production is opened read-only at two depths: the database session itself refuses writes
(SQLite ``mode=ro``, PostgreSQL ``default_transaction_read_only``, MariaDB ``READ ONLY``
transactions), and a statement guard rejects anything but reads before it is sent.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from plantstage.engines.base import EngineAdapter
from plantstage.engines.order import sorted_tables
from plantstage.errors import EngineError, ProductionWriteError

_REGISTRY: dict[str, type[EngineAdapter]] = {}

#: Tables that migration tools change by design, known by name (Flyway, Active Record,
#: Django); data comparisons leave them out. plantstage_refresh: the refresh's completion
#: marker. A tool's version table of another name is known by its shape: see
#: :func:`is_bookkeeping`, which every check that has the columns at hand should use.
MIGRATION_BOOKKEEPING = frozenset(
    {"flyway_schema_history", "schema_migrations", "django_migrations", "plantstage_refresh"})
#: Column names of a migration tool's one-column head table (the revision it is at).
_VERSION_COLUMNS = frozenset({"version", "version_num", "version_id", "revision", "schema_version"})


def is_bookkeeping(table: str, columns: Iterable[str] | sa.Table = ()) -> bool:
    """A migration tool's table: known by name, or a table whose only column is a version
    (what most tools keep the current revision in)."""
    if table in MIGRATION_BOOKKEEPING:
        return True
    cols = [c.name for c in columns.columns] if isinstance(columns, sa.Table) else list(columns)
    return len(cols) == 1 and cols[0].lower() in _VERSION_COLUMNS

_READ_ONLY_SQL = re.compile(r"^\s*(select|with|pragma|show|explain)\b", re.I)


def register(name: str):
    def deco(cls: type[EngineAdapter]) -> type[EngineAdapter]:
        _REGISTRY[name] = cls
        return cls

    return deco


def normalize_url(url: str) -> URL:
    """Parse a database URL and pick the driver plantstage ships with."""
    try:
        u = make_url(url)
    except Exception:
        raise EngineError(
            "not a database URL",
            where=url,
            hint="e.g. sqlite:///path.db or postgresql://host:5432/db",
        ) from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+pymysql")
    return u


def adapter_for(url: str | URL) -> EngineAdapter:
    u = normalize_url(str(url) if isinstance(url, URL) else url) if isinstance(url, str) else url
    # Import the engine modules so that they register themselves.
    from plantstage.engines import mariadb, postgresql, sqlite  # noqa: F401

    cls = _REGISTRY.get(u.get_backend_name())
    if cls is None:
        raise EngineError(
            f"unsupported database engine '{u.get_backend_name()}'",
            where=u.render_as_string(hide_password=True),
            hint="plantstage supports sqlite, postgresql and mariadb/mysql",
        )
    return cls(u)


def _guard_reads(engine: sa.Engine, label: str) -> None:
    @sa.event.listens_for(engine, "before_cursor_execute")
    def _refuse_writes(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if executemany or not _READ_ONLY_SQL.match(statement):
            raise ProductionWriteError(
                "refused a write to production: " + statement.strip().split("\n")[0][:80],
                where=label,
                hint="production is read-only to plantstage; bind staging instead",
            )


def connect_production(url: str) -> sa.Engine:
    """A read-only engine on a production database (refuses writes at two depths)."""
    adapter = adapter_for(url)
    engine = adapter.readonly_engine()
    _guard_reads(engine, adapter.label)
    return engine


def connect_staging(url: str) -> sa.Engine:
    return adapter_for(url).engine()


def same_database(a: str, b: str) -> bool:
    return adapter_for(a).identity() == adapter_for(b).identity()


def ping(engine: sa.Engine, label: str) -> None:
    """Connect once; turn driver errors into one clear EngineError."""
    try:
        with engine.connect() as c:
            c.execute(sa.text("SELECT 1"))
    except Exception as exc:
        raise EngineError(
            f"cannot connect: {str(exc).splitlines()[0][:160]}",
            where=label,
            hint="is the database running and the URL right?",
        ) from None


def _connected(bind: sa.Engine | sa.Connection) -> AbstractContextManager[sa.Connection]:
    """A connection from an engine (closed afterwards), or the caller's own connection (left
    open: the caller may be reading inside a transaction, e.g. a backup's snapshot)."""
    return nullcontext(bind) if isinstance(bind, sa.Connection) else bind.connect()


def table_columns(engine: sa.Engine | sa.Connection) -> dict[str, list[str]]:
    """Tables and their column names, as the database reports them (bookkeeping left out)."""
    insp = sa.inspect(engine)
    out = {t: [c["name"] for c in insp.get_columns(t)] for t in sorted(insp.get_table_names())
           if t not in MIGRATION_BOOKKEEPING}
    return {t: cols for t, cols in out.items() if not is_bookkeeping(t, cols)}


def _norm(v: Any) -> str:
    # Normalise values so that the same data compares equal across engines and drivers.
    if v is None:
        return "\0"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if hasattr(v, "normalize") and hasattr(v, "as_tuple"):  # Decimal
        v = format(v.normalize(), "f")
    return str(v)


def snapshot(
    engine: sa.Engine | sa.Connection, columns: dict[str, list[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """Row count and an order-independent digest of each table (over the given columns).

    Used to prove a rollback kept the data: the digest is a sum of per-row hashes, so it does
    not depend on row order and can be computed in one streaming pass.
    """
    columns = columns or table_columns(engine)
    out: dict[str, dict[str, Any]] = {}
    with _connected(engine) as conn:
        for table, cols in columns.items():
            tbl = sa.table(table, *[sa.column(c) for c in cols])
            total = 0
            acc = 0
            result = conn.execution_options(stream_results=True).execute(sa.select(tbl))
            for row in result:
                h = hashlib.blake2b("\x1f".join(_norm(v) for v in row).encode(), digest_size=8)
                acc = (acc + int.from_bytes(h.digest(), "big")) & ((1 << 64) - 1)
                total += 1
            out[table] = {"rows": total, "digest": f"{acc:016x}", "columns": list(cols)}
    return out


def compare_snapshots(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Tables whose rows differ between two snapshots, with how many rows went missing."""
    diffs = []
    for table, b in before.items():
        a = after.get(table)
        if a is None:
            diffs.append({"table": table, "before": b["rows"], "after": None, "lost": b["rows"]})
        elif a["rows"] != b["rows"] or a["digest"] != b["digest"]:
            diffs.append(
                {
                    "table": table,
                    "before": b["rows"],
                    "after": a["rows"],
                    "lost": max(0, b["rows"] - a["rows"]),
                    "changed": a["digest"] != b["digest"],
                }
            )
    return diffs


SKETCH_BUCKETS = 512


def column_snapshot(
    engine: sa.Engine | sa.Connection, columns: dict[str, list[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`snapshot` plus a fingerprint of each column, in the same single pass.

    ``by_column[c]`` holds the column's non-null ``values``, an order-independent ``digest``
    of them and a ``sketch``: the values counted into ``SKETCH_BUCKETS`` buckets by hash. Two
    sketches tell how many values went missing (:func:`values_missing`) without keeping the
    values: exact when values are wiped (set to NULL or to one value), a lower bound when many
    values change one by one.
    """
    columns = columns or table_columns(engine)
    mask = (1 << 64) - 1
    out: dict[str, dict[str, Any]] = {}
    with _connected(engine) as conn:
        for table, cols in columns.items():
            tbl = sa.table(table, *[sa.column(c) for c in cols])
            total = acc = 0
            n = [0] * len(cols)
            sums = [0] * len(cols)
            sketches = [[0] * SKETCH_BUCKETS for _ in cols]
            result = conn.execution_options(stream_results=True).execute(sa.select(tbl))
            for row in result:
                vals = [_norm(v) for v in row]
                h = hashlib.blake2b("\x1f".join(vals).encode(), digest_size=8)
                acc = (acc + int.from_bytes(h.digest(), "big")) & mask
                total += 1
                for i, v in enumerate(vals):
                    if row[i] is None:
                        continue
                    hv = zlib.crc32(v.encode())  # per value: cheap, and the same on any machine
                    n[i] += 1
                    sums[i] = (sums[i] + hv) & mask
                    sketches[i][hv % SKETCH_BUCKETS] += 1
            out[table] = {"rows": total, "digest": f"{acc:016x}", "columns": list(cols),
                          "by_column": {c: {"values": n[i], "digest": f"{sums[i]:016x}",
                                            "sketch": sketches[i]} for i, c in enumerate(cols)}}
    return out


def values_missing(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Values of a column (a ``by_column`` entry) that are no longer there: 0 when the
    fingerprints match, else the values that left their sketch buckets (at least 1)."""
    if before["digest"] == after["digest"] and before["values"] == after["values"]:
        return 0
    gone = sum(max(0, b - a) for b, a in zip(before["sketch"], after["sketch"], strict=True))
    # Same count, other digest, no bucket emptier: a value changed within its bucket.
    return 1 if gone == 0 and before["values"] == after["values"] else gone


def copy_rows(
    src: sa.Engine,
    dst: sa.Engine,
    *,
    skip: Iterable[str] | None = None,
    batch: int = 5000,
    progress=None,
) -> dict[str, int]:
    """Copy every table's rows from ``src`` into the same tables (already created) in ``dst``.

    Tables are filled parents-first (foreign-key order) in one transaction per batch.
    """
    src_md = sa.MetaData()
    src_md.reflect(src)
    # default: the migration tool's own tables (the target's migrations wrote them)
    skip = set(skip) if skip is not None else {
        t.name for t in src_md.tables.values() if is_bookkeeping(t.name, t)}
    dst_md = sa.MetaData()
    dst_md.reflect(dst)
    counts: dict[str, int] = {}
    adapter = adapter_for(dst.url)
    with src.connect() as s:
        for table in sorted_tables(dst_md):
            if table.name in skip or table.name not in src_md.tables:
                continue
            src_tbl = src_md.tables[table.name]
            cols = [c.name for c in table.columns if c.name in src_tbl.columns]
            n = 0
            result = s.execution_options(stream_results=True).execute(
                sa.select(*[src_tbl.c[c] for c in cols])
            )
            while True:
                rows = result.fetchmany(batch)
                if not rows:
                    break
                with dst.begin() as d:
                    d.execute(table.insert(), [dict(zip(cols, r, strict=True)) for r in rows])
                n += len(rows)
                if progress:
                    progress(table.name, n)
            counts[table.name] = n
        adapter.after_bulk_load(dst, dst_md)
    return counts


__all__ = [
    "EngineAdapter",
    "adapter_for",
    "column_snapshot",
    "compare_snapshots",
    "connect_production",
    "connect_staging",
    "copy_rows",
    "normalize_url",
    "ping",
    "same_database",
    "snapshot",
    "table_columns",
    "values_missing",
]
