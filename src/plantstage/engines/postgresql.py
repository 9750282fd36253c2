"""PostgreSQL: a database per run; read-only sessions; backup with pg_dump / pg_restore."""

from __future__ import annotations

import os
import select
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg.pq import ExecStatus

from plantstage.engines import _READ_ONLY_SQL, register
from plantstage.engines._tools import run_tool, secret_file
from plantstage.engines.base import EngineAdapter, T
from plantstage.engines.order import sorted_tables
from plantstage.errors import EngineError, ProductionWriteError


@register("postgresql")
class PostgreSQLAdapter(EngineAdapter):
    name = "postgresql"

    def identity(self) -> tuple:
        return ("postgresql", self.url.host or "localhost", self.url.port or 5432,
                self.url.database)

    def readonly_engine(self) -> sa.Engine:
        return sa.create_engine(
            self.url, connect_args={"options": "-c default_transaction_read_only=on"}
        )

    def for_run(self, run_id: str) -> PostgreSQLAdapter:
        # Each run owns a database of its own on the staging server, so runs never collide
        # and nothing a user already keeps in the named database is touched.
        return PostgreSQLAdapter(self.url.set(database=f"ps_{run_id}".lower()))

    def _admin(self) -> sa.Engine:
        return sa.create_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        admin = self._admin()
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.url.database}"'))
                c.execute(sa.text(f'CREATE DATABASE "{self.url.database}"'))
        except sa.exc.OperationalError as exc:
            raise EngineError(
                f"cannot create the staging database: {str(exc.orig).splitlines()[0]}",
                where=self.label,
                hint="is PostgreSQL running, and may this user CREATE DATABASE?",
            ) from None
        finally:
            admin.dispose()

    def drop(self) -> None:
        """Drop the database (its sessions ended) and the empty one kept ready for a restore."""
        self._drop_databases(self.url.database or "", self._spare_name())

    def _drop_databases(self, *names: str) -> None:
        admin = self._admin()
        try:
            with admin.connect() as c:
                for name in names:
                    try:
                        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    except sa.exc.SQLAlchemyError as exc:
                        raise EngineError(f"cannot drop database {name}: {_db_error(exc)}",
                                          where=self.label) from None
        except sa.exc.SQLAlchemyError as exc:  # the connection itself
            raise EngineError(f"cannot drop database(s) {', '.join(names)}: {_db_error(exc)}",
                              where=self.label) from None
        finally:
            admin.dispose()

    def _spare_name(self) -> str:
        return self.scratch("restoring").url.database or ""

    def prepare_restore(self) -> None:
        """Create the empty database a later :meth:`restore` fills (off the restore's clock,
        as a DBA creates the target before ``pg_restore``)."""
        self.scratch("restoring").create()

    def drop_restore_target(self) -> None:
        self._drop_databases(self._spare_name())

    def _spare_ready(self) -> bool:
        """The spare exists and holds no relation (nothing half-restored into it)."""
        spare = self.scratch("restoring")
        eng = spare.engine()
        try:
            with eng.connect() as c:
                return not c.execute(sa.text(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname NOT IN "
                    "('pg_catalog', 'information_schema', 'pg_toast')")).scalar()
        except sa.exc.SQLAlchemyError:
            return False
        finally:
            eng.dispose()

    @contextmanager
    def _libpq_env(self) -> Iterator[dict[str, str]]:
        """The client tools' environment, for the block. A password in the URL goes in a
        private libpq password file (``PGPASSFILE``, 0600, deleted after), never in
        ``PGPASSWORD``."""
        env = dict(os.environ)
        u = self.url
        env.update({"PGHOST": u.host or "127.0.0.1", "PGPORT": str(u.port or 5432),
                    "PGDATABASE": u.database or ""})
        if u.username:
            env["PGUSER"] = u.username
        if not u.password:
            yield env
            return
        env.pop("PGPASSWORD", None)  # libpq would take it before the file
        # host:port:database:user:password, with ":" and "\" escaped; any database (a restore
        # connects to a new one), this file is for this call alone.
        pw = str(u.password).replace("\\", "\\\\").replace(":", "\\:")
        with secret_file(f"*:*:*:*:{pw}\n", "plantstage-pgpass-") as path:
            env["PGPASSFILE"] = str(path)
            yield env

    def _tool(self, name: str) -> str:
        path = shutil.which(name)
        if not path:
            raise EngineError(f"{name} not found", where=self.label,
                              hint=f"install the PostgreSQL client tools ({name})")
        return path

    def backup(self, dest_dir: Path) -> Path:
        return self._dump(dest_dir / "backup.pgdump")

    def _dump(self, dest: Path, snapshot: str | None = None) -> Path:
        cmd = [self._tool("pg_dump"), "-Fc", "-f", str(dest)]
        if snapshot:
            cmd.append(f"--snapshot={snapshot}")
        with self._libpq_env() as env:
            proc = run_tool(cmd, env=env, text=True)
        if proc.returncode != 0:
            raise EngineError(f"pg_dump failed: {_first_error(proc.stderr)}", where=self.label)
        return dest

    def backup_consistent(self, dest_dir: Path,
                          read: Callable[[sa.Connection], T]) -> tuple[Path, T]:
        """``pg_dump --snapshot``: the dump runs in a snapshot this session exported, and
        ``read`` runs in the same transaction, so both see exactly the same data."""
        eng = self.engine()
        try:
            with eng.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
                with conn.begin():
                    snap = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar()
                    path = self._dump(dest_dir / "backup.pgdump", str(snap))
                    return path, read(conn)
        finally:
            eng.dispose()

    def restore(self, backup: Path) -> float:
        """Into a fresh database with ``pg_restore -j N``, N the machine's cores: tables load
        and indexes build in parallel; it stops at the first error, so a damaged dump fails.

        First ``pg_restore --list`` reads the dump's table of contents: a file that is no
        readable dump fails there, with staging untouched. Then the dump goes into a new
        database (the empty one :meth:`prepare_restore` made, else one created now) while the
        old one is dropped beside it (its sessions ended); the new one then takes the old
        one's name. Dropping a database waits for a checkpoint and unlinks its files: off the
        critical path, the restore is about as fast as plain ``pg_restore`` into an empty
        database (benchmarks/restore.py). A dump cut after its table of contents lists but
        fails while loading: the part-restored copy is then dropped (never renamed to
        staging) and the error says staging is gone."""
        t0 = time.perf_counter()
        if not backup.is_file():
            raise EngineError("backup file not found", where=str(backup))
        pg_restore = self._tool("pg_restore")
        listed = run_tool([pg_restore, "--list", str(backup)], text=True)
        if listed.returncode != 0:
            raise EngineError(f"the backup does not read (pg_restore --list: "
                              f"{_first_error(listed.stderr)}); staging was left as it was",
                              where=str(backup), hint="take a new backup")
        fresh = self.scratch("restoring")
        if not self._spare_ready():
            fresh.create()
        jobs = max(1, os.cpu_count() or 1)
        staging = self.url.database or ""
        with ThreadPoolExecutor(max_workers=1) as pool, self._libpq_env() as env:
            dropping = pool.submit(self._drop_databases, staging)
            proc = run_tool(
                [pg_restore, "--no-owner", "--exit-on-error", "-j", str(jobs),
                 "-d", fresh.url.database or "", str(backup)],
                env=env, text=True,
            )
            not_dropped = dropping.exception()
        if proc.returncode != 0 or not_dropped is not None:
            # Never rename a part-restored copy to staging: drop it, and say where staging is.
            copy = "the part-restored copy" if proc.returncode != 0 else "the restored copy"
            try:
                self._drop_databases(fresh.url.database or "")
                partial = f"{copy} was dropped"
            except EngineError as exc:
                partial = f"{copy} is left as {fresh.url.database} ({exc.message})"
            state = (f"staging database {staging} was left as it was "
                     f"(it could not be dropped: {getattr(not_dropped, 'message', not_dropped)})"
                     if not_dropped is not None else
                     f"staging database {staging} was dropped and is gone")
            what = (f"pg_restore failed: {_first_error(proc.stderr)}" if proc.returncode != 0
                    else "the restore could not replace staging")
            raise EngineError(f"{what}; {state}, {partial}", where=self.label,
                              hint="is the backup complete? (a cut dump may list but not "
                                   "restore)")
        admin = self._admin()
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'ALTER DATABASE "{fresh.url.database}" '
                                  f'RENAME TO "{staging}"'))
        except sa.exc.SQLAlchemyError as exc:
            raise EngineError(f"cannot rename the restored database {fresh.url.database} to "
                              f"{staging}: {_db_error(exc)}; staging database {staging} was "
                              f"dropped, the restored copy is kept as {fresh.url.database}",
                              where=self.label) from None
        finally:
            admin.dispose()
        return time.perf_counter() - t0

    def scratch(self, tag: str) -> PostgreSQLAdapter:
        # Cut the name, never the tag: a cut tag could name the staging database itself.
        name = f"{(self.url.database or '')[:63 - len(tag) - 1]}_{tag}"
        return PostgreSQLAdapter(self.url.set(database=name))

    def pitr_status(self) -> tuple[bool, str]:
        """Point-in-time recovery needs a base backup (a replication connection) and every
        WAL segment since (archiving, or a replication connection streaming them). Reads the
        server's settings; changes none."""
        eng = self.engine()
        try:
            with eng.connect() as c:
                q = lambda sql: c.execute(sa.text(sql)).scalar()  # noqa: E731
                wal_level = q("SHOW wal_level")
                archive = q("SHOW archive_mode")
                may_replicate = q("SELECT rolsuper OR rolreplication FROM pg_roles "
                                  "WHERE rolname = current_user")
        except sa.exc.SQLAlchemyError as exc:
            return False, f"cannot read the server's settings: {str(exc).splitlines()[0][:120]}"
        finally:
            eng.dispose()
        problems = []
        if wal_level == "minimal":
            problems.append("wal_level is minimal (needs replica; a server restart)")
        if not may_replicate:
            problems.append("this role has no REPLICATION privilege")
        elif (why := self._replication_refused()) is not None:
            problems.append(f"a replication connection is refused ({why}; pg_hba.conf needs a "
                            "'replication' line)")
        if archive == "off":
            problems.append("archive_mode is off (WAL is not archived; enabling it needs "
                            "archive_mode=on, an archive_command and a server restart)")
        if problems:
            return False, "; ".join(problems)
        return True, f"wal_level={wal_level}, archive_mode={archive}, replication allowed"

    def _replication_refused(self) -> str | None:
        u = self.url
        try:
            conn = psycopg.connect(host=u.host or "127.0.0.1", port=u.port or 5432,
                                   user=u.username, password=u.password, dbname="replication",
                                   replication="true", connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            msg = str(exc).strip().splitlines()[0]
            return msg.split("FATAL:", 1)[-1].strip()[:120]
        try:
            conn.execute("IDENTIFY_SYSTEM")
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0][:120]
        finally:
            conn.close()
        return None

    # -- the schema by PostgreSQL's own tools (a same-engine refresh) ----------------------
    def schema_dump(self, dest: Path, exclude: list[str] = ()) -> Path:
        """``pg_dump --schema-only`` of this database into ``dest`` (custom format): tables,
        sequences, views, functions, triggers, types, extensions — no rows. pg_dump only reads,
        and its session is read-only besides."""
        cmd = [self._tool("pg_dump"), "-Fc", "--schema-only", "--no-owner", "--no-privileges",
               "-f", str(dest)]
        for t in exclude:
            cmd += ["--exclude-table", t]
        with self._libpq_env() as env:
            env["PGOPTIONS"] = (env.get("PGOPTIONS", "")
                                + " -c default_transaction_read_only=on")
            proc = run_tool(cmd, env=env, text=True)
        if proc.returncode != 0:
            raise EngineError(f"pg_dump --schema-only failed: {_first_error(proc.stderr)}",
                              where=self.label, hint="is pg_dump at least the server's version?")
        return dest

    def restore_section(self, dump: Path, section: str) -> None:
        """Restore one section (``pre-data``: the objects rows go into; ``post-data``:
        indexes, constraints, triggers) of a :meth:`schema_dump` into this database, in one
        transaction (all or nothing, and one commit instead of one per object: 228 tables
        and 241 sequences in 1.8 s instead of 5.2 s)."""
        with self._libpq_env() as env:
            proc = run_tool(
                [self._tool("pg_restore"), "--no-owner", "--no-privileges",
                 "--single-transaction", f"--section={section}", "-d",
                 self.url.database or "", str(dump)], env=env, text=True)
        if proc.returncode != 0:
            raise EngineError(f"pg_restore --section={section} failed: "
                              f"{_first_error(proc.stderr)}", where=self.label,
                              hint="may this user create the objects (extensions need a "
                                   "superuser or a trusted extension)?")

    def bulk_load(self, conn: sa.Connection, table: sa.Table, columns: list[str],
                  rows: list[tuple]) -> None:
        """``COPY … FROM STDIN`` on the caller's transaction: the fastest way into PostgreSQL
        short of a file on the server."""
        if not rows:
            return
        prep = conn.dialect.identifier_preparer
        sql = (f"COPY {prep.format_table(table)} "
               f"({', '.join(prep.quote(c) for c in columns)}) FROM STDIN")
        cur = conn.connection.dbapi_connection.cursor()
        try:
            # Staging is rebuilt on failure (the refresh marks it incomplete until verified),
            # so waiting for each batch's WAL flush buys nothing.
            cur.execute("SET LOCAL synchronous_commit = off")
            with cur.copy(sql) as cp:
                for r in rows:
                    cp.write_row(r)
        finally:
            cur.close()

    def after_bulk_load(self, engine: sa.Engine, md: sa.MetaData) -> None:
        # Rows were inserted with their keys; move each serial sequence past the largest key.
        with engine.begin() as c:
            for table in sorted_tables(md):
                for col in table.primary_key.columns:
                    seq = c.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                    {"t": table.name, "c": col.name}).scalar()
                    if seq:
                        c.execute(sa.text(
                            f'SELECT setval(:s, COALESCE((SELECT MAX("{col.name}") '
                            f'FROM "{table.name}"), 0) + 1, false)'), {"s": seq})

    # -- COPY text streams (the refresh's fast path) ---------------------------------------
    supports_copy = True

    def copy_out(self, conn: sa.Connection, select_sql: str) -> Iterator[bytes]:
        """``COPY (SELECT …) TO STDOUT``: one row of COPY text per item, no Python row objects.

        The raw DBAPI cursor bypasses the production statement guard, so the same check runs
        here: only a read is ever wrapped (and a production session is read-only anyway)."""
        if not _READ_ONLY_SQL.match(select_sql) or ";" in select_sql:
            raise ProductionWriteError("refused to COPY out of anything but one SELECT: "
                                       + select_sql.strip().split("\n")[0][:80],
                                       where=self.label, hint="copy_out takes a SELECT")
        dbapi = conn.connection.dbapi_connection
        dbapi.execute("SELECT 1")  # psycopg opens the transaction (a read-only one on production)
        yield from _copy_out_rows(dbapi, f"COPY ({select_sql}) TO STDOUT")

    @contextmanager
    def copy_in(self, conn: sa.Connection, table: sa.Table,
                columns: list[str]) -> Iterator[Callable[[bytes], None]]:
        """``COPY … FROM STDIN`` in the caller's transaction; yields ``write(block)`` for blocks
        of whole COPY-text lines."""
        prep = conn.dialect.identifier_preparer
        sql = (f"COPY {prep.format_table(table)} "
               f"({', '.join(prep.quote(c) for c in columns)}) FROM STDIN")
        cur = conn.connection.dbapi_connection.cursor()
        try:
            cur.execute("SET LOCAL synchronous_commit = off")  # see bulk_load
            with cur.copy(sql) as cp:
                yield cp.write
        finally:
            cur.close()

    def copy_encoding(self, conn: sa.Connection) -> str:
        return conn.connection.dbapi_connection.info.encoding


def _db_error(exc: sa.exc.SQLAlchemyError) -> str:
    """The first line of the driver's message (no SQL, no traceback)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _first_error(stderr: str) -> str:
    """The line of a client tool's output that says what went wrong (not a caret or a
    DETAIL line)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln.lower():
            return ln[:240]
    return (lines[-1] if lines else "no output")[:240]


def _copy_out_rows(dbapi: psycopg.Connection, sql: str) -> Iterator[bytes]:
    """Run a ``COPY … TO STDOUT`` and yield its rows, straight from libpq.

    Hand-written on psycopg's thin libpq wrapper because psycopg's own ``Copy.read`` goes
    through its generic wait machinery once per row, about 4 µs a row: more than masking a row.
    Here a row is one libpq call; the loop only waits (without the GIL) when libpq's buffer is
    empty. The connection is left as psycopg expects it: idle in its transaction.
    """
    pgconn = dbapi.pgconn
    poll = select.poll()
    poll.register(pgconn.socket, select.POLLIN)

    def result() -> psycopg.pq.abc.PGresult | None:
        while True:
            pgconn.consume_input()
            if not pgconn.is_busy():
                return pgconn.get_result()
            poll.poll()

    def fail(res: psycopg.pq.abc.PGresult | None) -> EngineError:
        msg = (res.error_message if res is not None else pgconn.error_message) or b"COPY failed"
        while result() is not None:  # drain, so that the connection stays usable
            pass
        return EngineError(f"COPY failed: {msg.decode(errors='replace').strip()[:200]}",
                           where=sql[:80])

    pgconn.send_query(sql.encode(dbapi.info.encoding))
    while pgconn.flush():
        poll.poll(100)
    res = result()
    if res is None or res.status != ExecStatus.COPY_OUT:
        raise fail(res)
    done = False
    try:
        while True:
            n, data = pgconn.get_copy_data(1)
            if n > 0:
                # As bytes at once: holding thousands of libpq buffers costs more than a copy.
                yield bytes(data)
            elif n == 0:
                poll.poll()
                pgconn.consume_input()
            else:
                done = True
                break
    finally:
        if not done:  # the reader stopped early: cancel the COPY and read it to its end
            dbapi.cancel_safe()
            while pgconn.get_copy_data(0)[0] >= 0:
                pass
            while result() is not None:
                pass
    res = result()
    if res is None or res.status != ExecStatus.COMMAND_OK:
        raise fail(res)
    while result() is not None:
        pass
