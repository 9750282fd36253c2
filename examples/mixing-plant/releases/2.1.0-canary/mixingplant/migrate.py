"""Numbered SQL migrations: ``migrations/NNNN_name.up.sql`` and ``NNNN_name.down.sql``.

Applied versions are kept in ``schema_migrations`` (one row per applied version). Each
migration runs in its own transaction together with its bookkeeping row, so a failing
migration leaves the schema where it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .db import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path | None


def available(folder: Path = MIGRATIONS) -> list[Migration]:
    found: dict[str, dict[str, Path]] = {}
    names: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        m = _FILE.match(path.name)
        if m:
            found.setdefault(m.group(1), {})[m.group(3)] = path
            names[m.group(1)] = m.group(2)
    out = []
    for version in sorted(found):
        files = found[version]
        if "up" not in files:
            raise MigrationError(f"migration {version}_{names[version]} has no .up.sql file")
        out.append(Migration(version, names[version], files["up"], files.get("down")))
    return out


def ensure_table(db: Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
               "version TEXT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")


def applied(db: Database) -> list[str]:
    ensure_table(db)
    return [r[0] for r in db.all("SELECT version FROM schema_migrations ORDER BY version")]


def current(db: Database) -> str | None:
    versions = applied(db)
    return versions[-1] if versions else None


def up(db: Database, target: str | None = None) -> list[str]:
    """Apply every pending migration up to ``target`` (default: the latest)."""
    done = set(applied(db))
    ran = []
    for mig in available():
        if mig.version in done or (target is not None and mig.version > target):
            continue
        try:
            with db.transaction():
                db.script(mig.up.read_text())
                db.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                           "VALUES (?, ?, ?)", (mig.version, mig.name, _now()))
        except MigrationError:
            raise
        except Exception as exc:
            raise MigrationError(f"{mig.version}_{mig.name} up failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        ran.append(f"{mig.version}_{mig.name}")
    return ran


def down(db: Database, target: str) -> list[str]:
    """Revert every applied migration above ``target`` (newest first)."""
    by_version = {m.version: m for m in available()}
    ran = []
    for version in reversed(applied(db)):
        if version <= target:
            break
        mig = by_version.get(version)
        if mig is None or mig.down is None:
            raise MigrationError(f"migration {version} cannot be reverted: "
                                 f"no {version}_*.down.sql in this release")
        try:
            with db.transaction():
                db.script(mig.down.read_text())
                db.execute("DELETE FROM schema_migrations WHERE version = ?", (version,))
        except Exception as exc:
            raise MigrationError(f"{mig.version}_{mig.name} down failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        ran.append(f"{mig.version}_{mig.name}")
    return ran


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
