"""The run's signal store: every value and time series a run recorded, in one place.

Gates, the report and baseline comparisons read only this store (through ``RunContext.signals``,
which mirrors its values). It is kept in memory and, for a run, written through to
``signals.sqlite`` in the run folder, so a finished run can be exported (OpenMetrics, CSV) or
re-judged without rerunning anything.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signal_values (
  name TEXT PRIMARY KEY, value REAL NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signal_points (
  name TEXT NOT NULL, t REAL NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS signal_points_name ON signal_points(name, t);
CREATE TABLE IF NOT EXISTS samples (
  phase TEXT NOT NULL, version TEXT NOT NULL, flow TEXT NOT NULL,
  block INTEGER NOT NULL, t REAL NOT NULL, value_ms REAL NOT NULL, ok INTEGER NOT NULL,
  stratum TEXT
);
CREATE INDEX IF NOT EXISTS samples_key ON samples(phase, flow, version);
"""

#: One raw latency sample: (block, seconds since the phase started, latency in ms, succeeded),
#: optionally followed by its stratum (the tenant that drove it: like is compared with like).
Sample = tuple[int, float, float, bool] | tuple[int, float, float, bool, str]

Listener = Callable[[dict[str, float]], None]


class SignalStore:
    """Values (name → latest float) and time series (name → [(unix time, float)]).

    Thread-safe: the workload writes from its event loop while the Prometheus endpoint reads
    from its own thread. ``path`` makes the store durable (SQLite, every write committed).
    """

    def __init__(self, path: Path | None = None):
        self._lock = threading.RLock()
        self._values: dict[str, float] = {}
        self._series: dict[str, list[tuple[float, float]]] = {}
        #: (phase, version, flow) → raw samples, in the order they were added
        self._samples: dict[tuple[str, str, str], list[Sample]] = {}
        self._listeners: list[Listener] = []
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: writes come from the loop thread and the caller's.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    # -- writing ------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(values)`` after every value write (the run context mirrors them)."""
        self._listeners.append(listener)

    def set(self, name: str, value: float) -> None:
        self.set_many({name: value})

    def set_many(self, values: dict[str, float], *, notify: bool = True) -> None:
        vals = {k: float(v) for k, v in values.items()}
        if not vals:
            return
        now = time.time()
        with self._lock:
            self._values.update(vals)
            if self._db is not None:
                # One transaction per batch: a phase ends with hundreds of values, and one
                # commit (one fsync) each would take seconds.
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO signal_values(name, value, at) VALUES (?,?,?)",
                    [(k, v, now) for k, v in vals.items()])
                self._db.execute("COMMIT")
        if notify:
            for listener in self._listeners:
                listener(vals)

    def add(self, name: str, delta: float = 1.0) -> float:
        """Increase a counter value; returns the new value."""
        with self._lock:
            value = self._values.get(name, 0.0) + delta
            self.set_many({name: value})
            return value

    def points(self, values: dict[str, float], t: float | None = None) -> None:
        """Append one point to each named time series (at ``t``, default now)."""
        t = time.time() if t is None else t
        with self._lock:
            for k, v in values.items():
                self._series.setdefault(k, []).append((t, float(v)))
            if self._db is not None:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO signal_points(name, t, value) VALUES (?,?,?)",
                    [(k, t, float(v)) for k, v in values.items()])
                self._db.execute("COMMIT")

    def add_samples(self, phase: str, version: str, flow: str,
                    rows: Iterable[Sample]) -> None:
        """Keep raw per-iteration samples of one flow of one version in one phase.

        ``rows`` are ``(block, t, value_ms, ok)``: the paired phase's block the iteration ran
        in (0 outside it), its intended start in seconds since the phase began, its latency in
        milliseconds and whether it succeeded — optionally followed by a stratum (the tenant
        whose lane drove it). The judge reads them back with :meth:`samples`.
        """
        clean: list[Sample] = []
        for r in rows:
            base = (int(r[0]), float(r[1]), float(r[2]), bool(r[3]))
            clean.append(base + (str(r[4]),) if len(r) > 4 and r[4] is not None else base)
        if not clean:
            return
        with self._lock:
            self._samples.setdefault((phase, version, flow), []).extend(clean)
            if self._db is not None:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO samples(phase, version, flow, block, t, value_ms, ok, stratum) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    [(phase, version, flow, r[0], r[1], r[2], int(r[3]),
                      r[4] if len(r) > 4 else None) for r in clean])
                self._db.execute("COMMIT")

    # -- reading ------------------------------------------------------------------------
    def values(self, prefix: str = "") -> dict[str, float]:
        with self._lock:
            return {k: v for k, v in sorted(self._values.items()) if k.startswith(prefix)}

    def get(self, name: str) -> float | None:
        with self._lock:
            return self._values.get(name)

    def series(self, name: str | None = None) -> dict[str, list[tuple[float, float]]]:
        with self._lock:
            if name is not None:
                return {name: list(self._series.get(name, []))}
            return {k: list(v) for k, v in sorted(self._series.items())}

    def samples(self, phase: str, flow: str, version: str) -> list[Sample]:
        """The raw samples :meth:`add_samples` kept (empty when there are none)."""
        with self._lock:
            return list(self._samples.get((phase, version, flow), []))

    def sample_keys(self) -> list[tuple[str, str, str]]:
        """Every (phase, version, flow) that has samples, sorted."""
        with self._lock:
            return sorted(self._samples)

    def __len__(self) -> int:
        return len(self._values)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @classmethod
    def open(cls, path: Path) -> SignalStore:
        """Read a stored run's signals (read-only; the file is not changed)."""
        from plantstage.errors import SpecError

        if not path.exists():
            raise SpecError("no signals recorded here", where=str(path),
                            hint="give a run folder that holds signals.sqlite")
        store = cls()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            store._values = {n: v for n, v in db.execute(
                "SELECT name, value FROM signal_values ORDER BY name")}
            for n, t, v in db.execute("SELECT name, t, value FROM signal_points ORDER BY name, t"):
                store._series.setdefault(n, []).append((t, v))
            has_samples = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                     "AND name = 'samples'").fetchone()
            if has_samples:  # runs recorded before samples were kept have none
                cols = {r[1] for r in db.execute("PRAGMA table_info(samples)")}
                stratum = "stratum" if "stratum" in cols else "NULL"
                for ph, ver, fl, b, t, v, ok, st in db.execute(
                        f"SELECT phase, version, flow, block, t, value_ms, ok, {stratum} "
                        "FROM samples ORDER BY rowid"):
                    row: Sample = (int(b), float(t), float(v), bool(ok))
                    store._samples.setdefault((ph, ver, fl), []).append(
                        row + (str(st),) if st is not None else row)
        except sqlite3.DatabaseError as exc:
            raise SpecError(f"not a signal store: {exc}", where=str(path)) from None
        finally:
            db.close()
        return store

