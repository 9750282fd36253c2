"""MariaDB / MySQL: a database per run; read-only transactions; backup with ``mariadb-dump``
and restore with the ``mariadb`` client."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from plantstage.engines import register
from plantstage.engines._tools import run_tool, secret_file
from plantstage.engines.base import EngineAdapter
from plantstage.errors import EngineError


@register("mysql")
class MariaDBAdapter(EngineAdapter):
    name = "mariadb"

    def identity(self) -> tuple:
        return ("mysql", self.url.host or "localhost", self.url.port or 3306, self.url.database)

    def readonly_engine(self) -> sa.Engine:
        eng = sa.create_engine(self.url)

        @sa.event.listens_for(eng, "connect")
        def _read_only(dbapi_conn, _rec):  # noqa: ANN001
            with dbapi_conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")

        return eng

    def for_run(self, run_id: str) -> MariaDBAdapter:
        return MariaDBAdapter(self.url.set(database=f"ps_{run_id}".lower()))

    def _admin(self) -> sa.Engine:
        # database="" (not None: URL.set treats None as "leave unchanged") — the server itself.
        return sa.create_engine(self.url.set(database=""), isolation_level="AUTOCOMMIT")

    def create(self) -> None:
        admin = self._admin()
        try:
            with admin.connect() as c:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.url.database}`"))
                c.execute(sa.text(f"CREATE DATABASE `{self.url.database}`"))
        except sa.exc.OperationalError as exc:
            raise EngineError(
                f"cannot create the staging database: {str(exc.orig).splitlines()[0]}",
                where=self.label, hint="is MariaDB running, and may this user CREATE DATABASE?",
            ) from None
        finally:
            admin.dispose()

    def drop(self) -> None:
        admin = self._admin()
        try:
            with admin.connect() as c:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.url.database}`"))
        except sa.exc.SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            raise EngineError(f"cannot drop database {self.url.database}: {first}",
                              where=self.label) from None
        finally:
            admin.dispose()

    # -- backup and restore by MariaDB's own client tools ----------------------------------
    @contextmanager
    def _client_args(self) -> Iterator[tuple[list[str], dict[str, str]]]:
        """Connection options for the client tools, for the block. A password goes in a private
        option file (0600, deleted after) named by ``--defaults-extra-file`` — which must be
        the tools' first option — never on the command line (``ps``) nor in ``MYSQL_PWD``."""
        u = self.url
        args = [f"--host={u.host or '127.0.0.1'}", f"--port={u.port or 3306}"]
        if u.username:
            args.append(f"--user={u.username}")
        env = dict(os.environ)
        if not u.password:
            yield args, env
            return
        env.pop("MYSQL_PWD", None)
        # A quoted option value: backslash escapes for "\", the quote and line ends.
        pw = (str(u.password).replace("\\", "\\\\").replace('"', '\\"')
              .replace("\n", "\\n").replace("\r", "\\r"))
        with secret_file(f'[client]\npassword="{pw}"\n', "plantstage-my-") as path:
            yield [f"--defaults-extra-file={path}", *args], env

    def _tool(self, *names: str) -> str:
        for name in names:
            if path := shutil.which(name):
                return path
        raise EngineError(f"{names[0]} not found", where=self.label,
                          hint="install the MariaDB client tools (mariadb-client)")

    def backup(self, dest_dir: Path) -> Path:
        """``mariadb-dump --single-transaction``: one consistent InnoDB snapshot without
        locking the app out, with routines, triggers and events. (``mariabackup`` copies a
        whole server's files and needs access to its data directory: not a per-database
        staging backup, so plantstage uses the dump.)"""
        dest = dest_dir / "backup.sql"
        tool = self._tool("mariadb-dump", "mysqldump")
        with self._client_args() as (args, env):
            cmd = [tool, *args, "--single-transaction", "--routines", "--triggers", "--events",
                   "--hex-blob", "--default-character-set=utf8mb4", f"--result-file={dest}",
                   "--", self.url.database or ""]
            proc = run_tool(cmd, env=env, text=True)
        if proc.returncode != 0:
            raise EngineError(f"mariadb-dump failed: {_first_line(proc.stderr)}",
                              where=self.label)
        return dest

    def restore(self, backup: Path) -> float:
        """Into a fresh database (the old one dropped) with the ``mariadb`` client reading the
        dump; stops at the first error, so a damaged dump fails here.

        Before anything is dropped the dump must end with mariadb-dump's ``-- Dump completed``
        line (a dump cut short has none): staging is left as it was. A dump that fails while
        loading leaves a part-restored database: it is dropped, and the error says so."""
        t0 = time.perf_counter()
        if not backup.is_file():
            raise EngineError("backup file not found", where=str(backup))
        if not _dump_completed(backup):
            raise EngineError("the backup is incomplete (no '-- Dump completed' line at its "
                              "end); staging was left as it was", where=str(backup),
                              hint="take a new backup")
        client = self._tool("mariadb", "mysql")
        self.create()  # drops the old database first
        with self._client_args() as (args, env), backup.open("rb") as f:
            proc = run_tool(
                [client, *args, "--default-character-set=utf8mb4",
                 self.url.database or ""], stdin=f, env=env)
        if proc.returncode != 0:
            why = _first_line(proc.stderr.decode(errors="replace"))
            try:
                self.drop()
                state = f"staging database {self.url.database} was dropped and is gone"
            except EngineError as exc:
                state = (f"staging database {self.url.database} is left part-restored "
                         f"({exc.message})")
            raise EngineError(f"mariadb restore failed: {why}; {state}", where=self.label,
                              hint="is the backup complete?")
        return time.perf_counter() - t0

    def scratch(self, tag: str) -> MariaDBAdapter:
        # Cut the name, never the tag: a cut tag could name the staging database itself.
        name = f"{(self.url.database or '')[:64 - len(tag) - 1]}_{tag}"
        return MariaDBAdapter(self.url.set(database=name))

    def pitr_status(self) -> tuple[bool, str]:
        eng = self.engine()
        try:
            with eng.connect() as c:
                log_bin = c.execute(sa.text("SELECT @@log_bin")).scalar()
        except sa.exc.SQLAlchemyError as exc:
            return False, f"cannot read the server's settings: {str(exc).splitlines()[0][:120]}"
        finally:
            eng.dispose()
        if not log_bin:
            return False, ("the binary log is off (log_bin; enabling it needs a server "
                           "restart): there is nothing to replay after a backup")
        return False, ("point-in-time recovery from the binary log is not implemented by "
                       "plantstage yet (the server keeps one)")


def _dump_completed(path: Path) -> bool:
    """Whether the dump's last line is mariadb-dump's (or mysqldump's) ``-- Dump completed``
    trailer, written only once the whole dump is out. Reads only the file's tail."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        lines = f.read().rstrip().splitlines()
    return bool(lines) and lines[-1].startswith(b"-- Dump completed")


def _first_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower():
            return ln[:240]
    return (lines[-1] if lines else "no output")[:240]
