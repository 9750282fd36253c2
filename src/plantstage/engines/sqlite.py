"""SQLite: the embedded default. Read-only via ``mode=ro``; backup and clone via the backup API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from plantstage.engines import register
from plantstage.engines.base import EngineAdapter
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

    def restore(self, backup: Path) -> None:
        self._copy(backup, self.path, src_readonly=True)


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
