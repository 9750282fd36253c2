"""The interface every database engine module implements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from plantstage.errors import EngineError

T = TypeVar("T")


class EngineAdapter:
    """One database, as plantstage needs to handle it: connect, isolate, back up, restore."""

    name = "base"

    def __init__(self, url: URL):
        self.url = url

    @property
    def label(self) -> str:
        """The URL without its password, for messages and evidence."""
        return self.url.render_as_string(hide_password=True)

    def identity(self) -> tuple:
        """What makes two URLs the same database (host, port, name …)."""
        return (self.url.get_backend_name(), self.url.host, self.url.port, self.url.database)

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url)

    def readonly_engine(self) -> sa.Engine:
        raise EngineError(f"no read-only mode for {self.name}", where=self.label)

    def for_run(self, run_id: str) -> EngineAdapter:
        """The database a run should own on this server (created by :meth:`create`)."""
        return self

    def create(self) -> None:
        """Create the (empty) database; refuse if it already holds tables."""

    def drop(self) -> None:
        """Remove the run's database."""

    def clone_from(self, source: EngineAdapter) -> bool:
        """Fast same-engine copy of ``source`` into this database. False if not supported."""
        return False

    def backup(self, dest_dir: Path) -> Path:
        """Back this database up into ``dest_dir`` with the engine's own tool; the file."""
        raise EngineError(f"backup is not supported on {self.name} yet", where=self.label,
                          hint="use SQLite, PostgreSQL or MariaDB for staging")

    def backup_consistent(self, dest_dir: Path,
                          read: Callable[[sa.Connection], T]) -> tuple[Path, T]:
        """:meth:`backup`, and ``read`` run on a connection that sees the data as it was
        backed up (what verification compares the backup against). Engines that can share
        the dump's snapshot override this; here ``read`` runs right after the backup, so a
        write in between would make verification fail (never pass wrongly)."""
        path = self.backup(dest_dir)
        eng = self.engine()
        try:
            with eng.connect() as conn:
                return path, read(conn)
        finally:
            eng.dispose()

    def restore(self, backup: Path) -> float:
        """Replace this database's contents with ``backup`` (rows the database holds and the
        backup does not are gone afterwards). Returns the seconds it took."""
        raise EngineError(f"restore is not supported on {self.name} yet", where=self.label,
                          hint="use SQLite, PostgreSQL or MariaDB for staging")

    def prepare_restore(self) -> None:
        """Make ready what a later :meth:`restore` needs before it starts (an empty target
        database), so that the restore's time is the restore's."""

    def drop_restore_target(self) -> None:
        """Remove what :meth:`prepare_restore` made and no restore used (also when the
        database itself is kept)."""

    def scratch(self, tag: str) -> EngineAdapter:
        """A throwaway database beside this one (same server, or a temporary file) for
        restoring a backup to verify it; :meth:`drop` removes it."""
        raise EngineError(f"no scratch database on {self.name}", where=self.label)

    def pitr_status(self) -> tuple[bool, str]:
        """Whether this server allows point-in-time recovery (a base backup plus the
        write-ahead log), and why (not)."""
        return False, f"point-in-time recovery is not implemented for {self.name}"

    def bulk_load(self, conn: sa.Connection, table: sa.Table, columns: list[str],
                  rows: list[tuple]) -> None:
        """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in bulk, inside the
        caller's transaction. The default is one DBAPI ``executemany`` of a plain INSERT, which
        SQLite runs as a prepared statement and PyMySQL folds into multi-row INSERTs."""
        if not rows:
            return
        prep = conn.dialect.identifier_preparer
        marks = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{}",
                 "named": ":c{}"}[conn.dialect.paramstyle]
        if "{}" in marks:  # pragma: no cover - none of the shipped drivers use these styles
            raise EngineError(f"paramstyle {conn.dialect.paramstyle} is not supported",
                              where=self.label)
        sql = (f"INSERT INTO {prep.format_table(table)} "
               f"({', '.join(prep.quote(c) for c in columns)}) "
               f"VALUES ({', '.join([marks] * len(columns))})")
        # The DBAPI gets the values as SQLAlchemy would bind them (Decimal and datetime on
        # SQLite, …), so the rows read back exactly as the application's own writes do.
        procs = [(i, p) for i, c in enumerate(columns)
                 if (p := table.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect))]
        if procs:
            out = []
            for r in rows:
                r = list(r)
                for i, p in procs:
                    r[i] = p(r[i])
                out.append(tuple(r))
            rows = out
        conn.exec_driver_sql(sql, rows)

    #: True when :meth:`copy_out` and :meth:`copy_in` stream the engine's COPY text format.
    supports_copy = False

    def copy_out(self, conn: sa.Connection, select_sql: str) -> Iterator[bytes]:
        """Stream the rows of a SELECT in the engine's COPY text format (one row per item)."""
        raise EngineError(f"COPY is not supported on {self.name}", where=self.label)

    def copy_in(self, conn: sa.Connection, table: sa.Table,
                columns: list[str]) -> AbstractContextManager[Callable[[bytes], None]]:
        """A writer of COPY-text blocks into ``table`` inside the caller's transaction."""
        raise EngineError(f"COPY is not supported on {self.name}", where=self.label)

    def copy_encoding(self, conn: sa.Connection) -> str:
        """The Python codec of the COPY text this connection sends and expects."""
        raise EngineError(f"COPY is not supported on {self.name}", where=self.label)

    def after_bulk_load(self, engine: sa.Engine, md: sa.MetaData) -> None:
        """Fix-ups after rows were inserted with explicit keys (e.g. sequences)."""

    def app_url(self) -> str:
        """The URL to hand to the application (with password, never logged)."""
        return self.url.render_as_string(hide_password=False)
