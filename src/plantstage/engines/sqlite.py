"""SQLite: the embedded default. Read-only via ``mode=ro``; backup and clone via the backup API."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from plantstage.engines import register
from plantstage.engines.base import EngineAdapter, T
from plantstage.errors import EngineError


@register("sqlite")
class SQLiteAdapter(EngineAdapter):
    name = "sqlite"

    @property
    def path(self) -> Path:
        if not self.url.database or self.url.database == ":memory:":
            raise EngineError(
                "an in-memory SQLite database cannot be shared with an app process",
                where=self.label,
                hint="use sqlite:///path/to/file.db",
            )
        return Path(self.url.database)

    def identity(self) -> tuple:
        return ("sqlite", str(self.path.resolve()))

    def engine(self) -> sa.Engine:
        eng = sa.create_engine(self.url, connect_args={"timeout": 30})

        @sa.event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _rec):  # noqa: ANN001
            dbapi_conn.execute("PRAGMA busy_timeout=30000")

        return eng

    def readonly_engine(self) -> sa.Engine:
        path = self.path.resolve()
        if not path.exists():
            raise EngineError(
                "production database file not found",
                where=str(path),
                hint="generate it (see the example's README) or fix the URL",
            )

        def _connect() -> sqlite3.Connection:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

        # NullPool: every checkout opens its own read-only connection. With a creator and the
        # "sqlite://" URL SQLAlchemy would pick SingletonThreadPool (an in-memory database's
        # pool), whose dispose() closes connections other threads are still reading through —
        # flows query from many threads at once (seen as a segfault in sqlite3).
        return sa.create_engine("sqlite://", creator=_connect, poolclass=sa.pool.NullPool)

    def for_run(self, run_id: str) -> SQLiteAdapter:
        return self

    def create(self) -> None:
        p = self.path
        p.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(str(p) + suffix).unlink(missing_ok=True)
        # WAL, as a production SQLite serving an app runs: the app and plantstage read while
        # the other writes. (A clone copies the mode; a database built here must set it.)
        conn = sqlite3.connect(p)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()

    def drop(self) -> None:
        pass  # the file stays in the run folder as evidence

    def _copy(self, src: Path, dst: Path, *, src_readonly: bool) -> None:
        uri = f"file:{src.resolve()}?mode=ro" if src_readonly else f"file:{src.resolve()}"
        s = sqlite3.connect(uri, uri=True)
        d = sqlite3.connect(dst)
        try:
            s.backup(d)
        finally:
            d.close()
            s.close()

    def clone_from(self, source: EngineAdapter) -> bool:
        if not isinstance(source, SQLiteAdapter):
            return False
        self._copy(source.path, self.path, src_readonly=True)
        return True

    def backup(self, dest_dir: Path) -> Path:
        dest = dest_dir / "backup.sqlite"
        dest.unlink(missing_ok=True)
        self._copy(self.path, dest, src_readonly=False)
        return dest

    def backup_consistent(self, dest_dir: Path,
                          read: Callable[[sa.Connection], T]) -> tuple[Path, T]:
        """The backup API run from a connection holding a read transaction, and ``read`` in
        that same transaction: both see one state of the file, whatever the app writes
        meanwhile (WAL readers keep their snapshot)."""
        dest = dest_dir / "backup.sqlite"
        dest.unlink(missing_ok=True)
        eng = self.engine()
        try:
            with eng.connect() as conn:
                raw = conn.connection.dbapi_connection
                raw.execute("BEGIN")
                raw.execute("SELECT count(*) FROM sqlite_master").fetchall()  # pins the snapshot
                d = sqlite3.connect(dest)
                try:
                    raw.backup(d)
                finally:
                    d.close()
                value = read(conn)
                raw.rollback()
                return dest, value
        finally:
            eng.dispose()

    def restore(self, backup: Path) -> float:
        """The backup API copies every page of ``backup`` over this file: what the file held
        before is gone. A backup that is not a sound SQLite file is refused first."""
        t0 = time.perf_counter()
        problem = _integrity_problem(backup)
        if problem:
            raise EngineError(f"backup {backup.name} is damaged: {problem}", where=str(backup),
                              hint="take a new backup")
        self._copy(backup, self.path, src_readonly=True)
        return time.perf_counter() - t0

    def scratch(self, tag: str) -> SQLiteAdapter:
        fd, name = tempfile.mkstemp(prefix=f"plantstage-{tag}-", suffix=".sqlite")
        os.close(fd)
        return _ScratchSQLite(self.url.set(database=name))

    def pitr_status(self) -> tuple[bool, str]:
        return False, "SQLite has no write-ahead log archive to replay: restore is to the backup"


class _ScratchSQLite(SQLiteAdapter):
    """A temporary SQLite file: unlike a run's database, dropping it removes it."""

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)


def _integrity_problem(path: Path) -> str | None:
    """None when ``path`` is a sound SQLite database, else what is wrong, in one line.

    ``PRAGMA quick_check`` reads every page (a truncated or overwritten file fails it) without
    the index cross-checks of ``integrity_check``: linear in the file, cheap for staging."""
    if not path.exists():
        return "file not found"
    try:
        db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc).splitlines()[0][:160]
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])[:160]
    return None


def seal_files(folder: Path) -> list[str]:
    """Fold each SQLite file's write-ahead log back into it and leave it in rollback-journal mode.

    A run folder is hashed and signed; a database left in WAL mode grows ``-wal``/``-shm`` files
    as soon as anyone merely reads it, which would look like tampering. Returns the files sealed.
    """
    sealed = []
    for path in sorted(folder.glob("*.sqlite")):
        try:
            db = sqlite3.connect(path)
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("PRAGMA journal_mode=DELETE")
            finally:
                db.close()
        except sqlite3.DatabaseError:
            continue  # not ours to fix; verify will name it if it changes
        sealed.append(path.name)
    return sealed
