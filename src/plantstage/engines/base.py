"""The interface every database engine module implements."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from plantstage.errors import EngineError


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
        raise EngineError(f"backup is not supported on {self.name} yet", where=self.label,
                          hint="use SQLite or PostgreSQL for staging")

    def restore(self, backup: Path) -> None:
        raise EngineError(f"restore is not supported on {self.name} yet", where=self.label,
                          hint="use SQLite or PostgreSQL for staging")

    def after_bulk_load(self, engine: sa.Engine, md: sa.MetaData) -> None:
        """Fix-ups after rows were inserted with explicit keys (e.g. sequences)."""

    def app_url(self) -> str:
        """The URL to hand to the application (with password, never logged)."""
        return self.url.render_as_string(hide_password=False)
