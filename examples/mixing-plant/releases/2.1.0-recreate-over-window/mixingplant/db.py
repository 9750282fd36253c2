"""Database access through the DB-API: sqlite3, or psycopg for a postgresql:// URL.

SQL is written once with ``?`` placeholders; for PostgreSQL they become ``%s``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

GRAMS_PER_KG = 1000
PCT_SCALE = 1000  # recipe shares are stored in thousandths of a percent


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise SystemExit("mixingplant: DATABASE_URL is not set (sqlite:///path or postgresql://…)")
    return url


class Database:
    """One connection. ``with db.transaction():`` groups statements into one commit."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.dialect = "postgresql"
            self.conn: Any = psycopg.connect(url)
        elif url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            path = url[len("sqlite:///"):]
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA busy_timeout = 30000")
        else:
            raise SystemExit(f"mixingplant: unsupported DATABASE_URL {url!r}")
        self._depth = 0

    def close(self) -> None:
        self.conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        if self._depth == 0 and self.dialect == "postgresql":
            self.conn.commit()
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        if self._depth == 0 and self.dialect == "postgresql":
            self.conn.commit()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def script(self, sql: str) -> None:
        """Run a multi-statement SQL script inside the current transaction."""
        if self.dialect == "sqlite":
            for statement in split_statements(sql):
                self.conn.execute(statement)
        else:
            self.conn.execute(sql)

    def tables(self) -> set[str]:
        if self.dialect == "sqlite":
            rows = self.all("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.all("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = current_schema()")
        return {r[0] for r in rows}

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._depth = 1
        if self.dialect == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._depth = 0
            self.conn.rollback() if self.dialect == "postgresql" else self.conn.execute(
                "ROLLBACK")
            raise
        self._depth = 0
        if self.dialect == "sqlite":
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()


def split_statements(sql: str) -> list[str]:
    """Statements of a migration script (``;`` at the end of a line ends one; ``--`` comments)."""
    out: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        if stripped.endswith(";"):
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def connect(url: str | None = None) -> Database:
    return Database(url or database_url())


# -- quantities ------------------------------------------------------------------------

def kg_to_grams(value: str) -> int:
    """An exact decimal kg amount ("2.750") as integer grams; finer than 1 g is refused."""
    qty = Decimal(str(value).strip())
    if not qty.is_finite():
        raise ValueError(f"not a quantity: {value!r}")
    grams = qty * GRAMS_PER_KG
    if grams != grams.to_integral_value():
        raise ValueError(f"{value} kg is finer than one gram")
    return int(grams)


def grams_to_kg(grams: int) -> str:
    """Integer grams as a kg string with three decimals ("2.750")."""
    return str((Decimal(int(grams)) / GRAMS_PER_KG).quantize(Decimal("0.001")))


def quantity(grams: int) -> dict[str, str]:
    return {"value": grams_to_kg(grams), "uom": "kg"}


def pct_text(pct_milli: int) -> str:
    return str((Decimal(int(pct_milli)) / PCT_SCALE).quantize(Decimal("0.001")))


def split_by_shares(total_g: int, shares: list[int]) -> list[int]:
    """Split ``total_g`` by recipe shares (pct_milli) into grams that add up to it exactly.

    Each part is rounded half-even; the rounding difference goes to the largest share.
    """
    whole = sum(shares)
    parts = [int((Decimal(total_g) * s / whole).quantize(Decimal(1), ROUND_HALF_EVEN))
             for s in shares]
    if parts:
        parts[shares.index(max(shares))] += total_g - sum(parts)
    return parts
