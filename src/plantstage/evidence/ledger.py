"""The run ledger: a SQLite file in the run folder that records each step as it starts and ends.

Every write commits at once, so whatever stops plantstage (a failure, Ctrl-C, SIGTERM, even
SIGKILL) the ledger shows how far the run got. The run row records who runs it — process id,
host, boot id and the process's start time — so a run still marked ``running`` whose process is
gone (killed, or the machine rebooted) is told apart from one still going, even when the pid has
been reused. Readers report such a run as ``interrupted``; :func:`sweep_stale_runs` (called when
a rehearsal starts) writes that into its ledger and leaves an ``interrupted.json`` marker saying
the run was never finished.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The marker a sweep leaves in the folder of a run whose process died before it finished.
MARKER = "interrupted.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, spec TEXT, release TEXT, status TEXT NOT NULL,
  verdict TEXT, started_at REAL NOT NULL, ended_at REAL, pid INTEGER,
  host TEXT, boot_id TEXT, proc_start TEXT
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
        me = process_identity()
        self._db.execute(
            "INSERT INTO runs(run_id, spec, release, status, started_at, pid, host, boot_id, "
            "proc_start) VALUES (?,?,?,?,?,?,?,?,?)",
            (self.run_id, spec, release, "running", time.time(), me["pid"], me["host"],
             me["boot_id"], me["proc_start"]),
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


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return stat[stat.rindex(")") + 2:].split()[19]  # field 22: starttime
    except (ValueError, IndexError):
        return None


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """What tells this process apart from any other, past or future: pid, host, boot id and
    the process's start time."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(),
            "proc_start": _proc_start(pid)}


def process_state(run: dict[str, Any]) -> str:
    """``alive``, ``gone`` or ``unknown`` (another host) for the process a run row records."""
    pid = run.get("pid")
    host = run.get("host")
    if host is not None and host != socket.gethostname():
        return "unknown"
    boot = run.get("boot_id")
    if boot is not None and _boot_id() is not None and boot != _boot_id():
        return "gone"  # the machine rebooted since
    if not isinstance(pid, int) or pid <= 0:
        return "gone"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # exists, someone else's
    except OSError:
        return "gone"
    started = run.get("proc_start")
    if started is not None and _proc_start(pid) not in (None, started):
        return "gone"  # the pid was reused by another process
    return "alive"


def read_run(path: Path) -> dict[str, Any]:
    """Read a run back (for tests, `plantstage` readers and re-judging); read-only.

    A run still ``running`` whose process is gone reads as ``interrupted``.
    """
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM runs").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("no run recorded")
        run = dict(row)
        steps = [dict(r) for r in db.execute("SELECT * FROM steps ORDER BY seq")]
    finally:
        db.close()
    if run["status"] == "running" and process_state(run) == "gone":
        run["status"] = "interrupted"
        for st in steps:
            if st["status"] == "running":
                st["status"] = "interrupted"
    return {"run": run, "steps": steps}


def interrupted_note(run_dir: Path) -> str | None:
    """One line saying a run folder holds a run that was never finished, or None.

    From the sweep's marker, else from the ledger (a ``running`` run whose process is gone).
    Reads only.
    """
    marker = run_dir / MARKER
    info: dict[str, Any] | None = None
    try:
        if marker.is_file():
            info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        info = None
        ledger = run_dir / "ledger.sqlite"
        if ledger.is_file():
            try:
                r = read_run(ledger)
            except (sqlite3.Error, OSError):
                return None
            if r["run"]["status"] != "interrupted":
                return None
            info = _marker_data(r)
    if info is None:
        return None
    step = info.get("last_step")
    return (f"run {info.get('run_id')} was interrupted and never finished: its process "
            f"(pid {info.get('pid')} on {info.get('host')}) is gone"
            + (f", last in step '{step}'" if step else "")
            + "; it has no verdict and no sealed evidence")


def _marker_data(r: dict[str, Any]) -> dict[str, Any]:
    run, steps = r["run"], r["steps"]
    last = next((s["name"] for s in reversed(steps)
                 if s["status"] in ("running", "interrupted")), None) or next(
        (s["name"] for s in reversed(steps) if s["status"] not in ("planned",)), None)
    return {"run_id": run["run_id"], "status": "interrupted", "finished": False,
            "pid": run.get("pid"), "host": run.get("host"), "boot_id": run.get("boot_id"),
            "started_at": run.get("started_at"), "last_step": last,
            "note": "This run's process ended (killed or the machine stopped) before the run "
                    "finished: it has no verdict, its evidence was never written or sealed."}


def mark_interrupted(run_dir: Path) -> dict[str, Any] | None:
    """Mark a run whose process is gone as ``interrupted`` (ledger + marker); None if the run
    is finished, still running, or on another host."""
    path = run_dir / "ledger.sqlite"
    try:
        r = read_run(path)
    except (sqlite3.Error, OSError):
        return None
    if r["run"]["status"] != "interrupted" or r["run"].get("ended_at") is not None:
        return None
    data = _marker_data(r)
    data["swept_at"] = time.time()
    db = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        db.execute("UPDATE runs SET status='interrupted', verdict=COALESCE(verdict, 'NO-GO'), "
                   "ended_at=? WHERE run_id=? AND status='running'",
                   (data["swept_at"], data["run_id"]))
        db.execute("UPDATE steps SET status='interrupted', error=COALESCE(error, "
                   "'the process running this step was killed') "
                   "WHERE run_id=? AND status='running'", (data["run_id"],))
        db.execute("UPDATE steps SET status='not-run' WHERE run_id=? AND status='planned'",
                   (data["run_id"],))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()
    (run_dir / MARKER).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def sweep_stale_runs(runs_dir: Path, echo: Callable[[str], None] | None = None) -> list[Path]:
    """Mark every run under ``runs_dir`` whose process is gone as ``interrupted``.

    Called when a rehearsal starts; returns the folders marked (one line each through
    ``echo``). Runs still going, finished, or started on another host are left alone.
    """
    marked: list[Path] = []
    try:
        folders = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() \
            else []
    except OSError:
        return marked
    for d in folders:
        if (d / MARKER).exists() or not (d / "ledger.sqlite").is_file():
            continue
        try:
            data = mark_interrupted(d)
        except (sqlite3.Error, OSError):
            continue  # not ours to fix; the next start tries again
        if data is not None:
            marked.append(d)
            if echo is not None:
                echo(f"Marked run {data['run_id']} interrupted: its process (pid {data['pid']}) "
                     "is gone and it never finished")
    return marked
