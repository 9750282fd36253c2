"""Backups taken with each engine's own tool, and verified as pgBackRest verifies its own:
the backup is restored into a scratch database and compared with what was backed up.

What is compared: every table's row count and order-independent digest (read in the backup's
own snapshot where the engine can share it, so writes during the backup cannot make it fail),
and the database objects — views, triggers, functions by definition; a sequence must come back
at least where it was before the backup started (sequences are not transactional: the dump
reads them a moment later, never earlier).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from plantstage.engines import column_snapshot, snapshot, table_columns
from plantstage.engines.base import EngineAdapter
from plantstage.errors import EngineError

Snapshot = dict[str, dict[str, Any]]


@dataclass
class TakenBackup:
    """A backup file and the fingerprint of the data it was taken from."""

    path: Path
    bytes: int
    seconds: float
    columns: dict[str, list[str]]
    snapshot: Snapshot
    objects: dict[str, dict[str, Any]]


@dataclass
class Verification:
    """The outcome of restoring a backup into a scratch database and comparing it."""

    verified: bool
    seconds: float
    restore_seconds: float | None = None
    #: One line: the first difference (naming its table or object), or why it did not restore.
    problem: str | None = None
    differences: list[str] = field(default_factory=list)


def read_objects(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """``{kind.name: {"value": definition, "next": a sequence's next value}}``."""
    from plantstage.engines.objects import read_objects as read  # objects imports this package

    return {o.key: {"value": o.value, "next": o.detail.get("next")} for o in read(conn)}


def take_backup(adapter: EngineAdapter, dest_dir: Path) -> TakenBackup:
    """Back ``adapter``'s database up into ``dest_dir`` and fingerprint what it holds."""
    t0 = time.perf_counter()
    # Objects first: a sequence read before the dump is at most where the dump finds it.
    eng = adapter.engine()
    try:
        with eng.connect() as conn:
            objects = read_objects(conn)
    finally:
        eng.dispose()

    def read(conn: sa.Connection) -> tuple[dict[str, list[str]], Snapshot]:
        cols = table_columns(conn)
        return cols, column_snapshot(conn, cols)

    path, (columns, snap) = adapter.backup_consistent(dest_dir, read)
    return TakenBackup(path=path, bytes=path.stat().st_size,
                       seconds=time.perf_counter() - t0, columns=columns, snapshot=snap,
                       objects=objects)


def differences(expected: TakenBackup, tables: Snapshot, present: dict[str, list[str]],
                objects: dict[str, dict[str, Any]]) -> list[str]:
    """What the restored copy (``tables``, ``objects``) lacks or holds otherwise, tables
    first, each as one line naming the table or object."""
    out: list[str] = []
    for table in sorted(expected.columns):
        want = expected.snapshot[table]
        if table not in present:
            out.append(f"table {table} is missing from the restored backup")
            continue
        missing = [c for c in expected.columns[table] if c not in present[table]]
        if missing:
            out.append(f"table {table}: column {missing[0]} is missing from the restored backup")
            continue
        got = tables[table]
        if got["rows"] != want["rows"]:
            out.append(f"table {table}: {want['rows']:,} rows backed up, "
                       f"{got['rows']:,} restored")
        elif got["digest"] != want["digest"]:
            out.append(f"table {table}: rows differ from the backed-up data "
                       f"(same count, {want['rows']:,})")
    for key in sorted(expected.objects):
        want, got = expected.objects[key], objects.get(key)
        if got is None:
            out.append(f"{key.replace('.', ' ', 1)} is missing from the restored backup")
        elif got["value"] != want["value"]:
            out.append(f"{key.replace('.', ' ', 1)} differs in the restored backup")
        elif want["next"] is not None and (got["next"] is None or got["next"] < want["next"]):
            out.append(f"{key.replace('.', ' ', 1)} restored at {got['next']}, behind "
                       f"{want['next']} at the backup (keys would be handed out twice)")
    return out


def verify_backup(adapter: EngineAdapter, taken: TakenBackup) -> Verification:
    """Restore ``taken`` into a scratch database beside ``adapter``'s, compare it with the
    fingerprint taken with the backup, and drop the scratch database again."""
    t0 = time.perf_counter()
    scratch = adapter.scratch("verify")
    restore_seconds = None
    try:
        try:
            restore_seconds = scratch.restore(taken.path)
            eng = scratch.engine()
            try:
                with eng.connect() as conn:
                    present = table_columns(conn)
                    cols = {t: cs for t, cs in taken.columns.items()
                            if t in present and all(c in present[t] for c in cs)}
                    tables = snapshot(conn, cols)
                    objects = read_objects(conn)
            finally:
                eng.dispose()
        except EngineError as exc:
            return Verification(False, time.perf_counter() - t0, restore_seconds,
                                f"the backup does not restore: {exc.message}")
        except sa.exc.SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0][:160]
            return Verification(False, time.perf_counter() - t0, restore_seconds,
                                f"the restored backup cannot be read: {first}")
    finally:
        try:
            scratch.drop()
        except Exception:  # noqa: BLE001 - a scratch left behind must not hide the verdict
            pass
    diffs = differences(taken, tables, present, objects)
    return Verification(not diffs, time.perf_counter() - t0, restore_seconds,
                        diffs[0] if diffs else None, diffs)
