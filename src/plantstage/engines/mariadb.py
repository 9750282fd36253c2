"""MariaDB / MySQL: read-only transactions; backup with mariadb-dump."""

from __future__ import annotations

import sqlalchemy as sa

from plantstage.engines import register
from plantstage.engines.base import EngineAdapter


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
        finally:
            admin.dispose()

    def drop(self) -> None:
        admin = self._admin()
        try:
            with admin.connect() as c:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.url.database}`"))
        finally:
            admin.dispose()
