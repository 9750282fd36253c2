"""The run ledger: a SQLite file in the run folder that records each step as it starts and ends.

Every write commits at once, so whatever stops plantstage (a failure, Ctrl-C, SIGTERM, even
SIGKILL) the ledger shows how far the run got. A run still marked ``running`` after plantstage
exited was killed; readers report it as ``interrupted``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, spec TEXT, release TEXT, status TEXT NOT NULL,
  verdict TEXT, started_at REAL NOT NULL, ended_at REAL, pid INTEGER
);
CREATE TABLE IF NOT EXISTS steps (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
  started_at REAL, ended_at REAL, seconds REAL, results TEXT, error TEXT,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS signals (
  run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL, at REAL NOT NULL,
  PRIMARY KEY (run_id, name)
);
"""


class Ledger:
    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: every write lands
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def start_run(self, spec: str, release: str) -> None:
        import os

        self._db.execute(
            "INSERT INTO runs(run_id, spec, release, status, started_at, pid) "
            "VALUES (?,?,?,?,?,?)",
            (self.run_id, spec, release, "running", time.time(), os.getpid()),
        )

    def end_run(self, status: str, verdict: str | None) -> None:
        self._db.execute(
            "UPDATE runs SET status=?, verdict=?, ended_at=? WHERE run_id=?",
            (status, verdict, time.time(), self.run_id),
        )

    def step_started(self, seq: int, name: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO steps(run_id, seq, name, status, started_at) "
            "VALUES (?,?,?,?,?)",
            (self.run_id, seq, name, "running", time.time()),
        )

    def step_planned(self, seq: int, name: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO steps(run_id, seq, name, status) VALUES (?,?,?,?)",
            (self.run_id, seq, name, "planned"),
        )

    def step_ended(
        self, seq: int, status: str, seconds: float, results: dict[str, Any],
        error: str | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE steps SET status=?, ended_at=?, seconds=?, results=?, error=? "
            "WHERE run_id=? AND seq=?",
            (status, time.time(), seconds, json.dumps(results, default=str), error,
             self.run_id, seq),
        )

    def record_signals(self, values: dict[str, float]) -> None:
        """Record a batch of signal values in one transaction (one fsync, not one per value)."""
        now = time.time()
        rows = [(self.run_id, k, v, now) for k, v in values.items()]
        own = not self._db.in_transaction
        if own:
            self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO signals(run_id, name, value, at) VALUES (?,?,?,?)", rows)
        except BaseException:
            if own:
                self._db.execute("ROLLBACK")
            raise
        if own:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def read_run(path: Path) -> dict[str, Any]:
    """Read a run back (for tests, `plantstage` readers and re-judging)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        run = dict(db.execute("SELECT * FROM runs").fetchone())
        steps = [dict(r) for r in db.execute("SELECT * FROM steps ORDER BY seq")]
    finally:
        db.close()
    if run["status"] == "running":
        import os

        try:
            os.kill(run["pid"], 0)
        except (ProcessLookupError, TypeError):
            run["status"] = "interrupted"
    return {"run": run, "steps": steps}
