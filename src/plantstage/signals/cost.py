"""Deterministic cost signals: how much database work the workload made, per phase and version.

Latency moves with whatever else the machine does; the number of statements and rows a business
transaction costs does not. A *cost probe* reads monotonic counters of the staging database's
work; the workload engine reads it at every phase's start and end and at every block boundary of
the paired phase, and records the deltas as ``cost.<phase>.<counter>`` (per version in the paired
phase: ``cost.paired.<old|new>.<counter>``), each also ``.per_iteration``.

Counter names are engine-neutral where the engine can say it, with engine-specific extras:

* ``db_statements`` — statements the app ran; ``db_rows_read``, ``db_rows_written`` — rows;
* PostgreSQL with ``pg_stat_statements`` loaded (exact, updated as each statement ends, for
  the staging database only): statements are its ``calls``, rows its ``rows`` (read for
  queries, written for INSERT/UPDATE/DELETE/MERGE/COPY); extras ``pg_blocks_hit``,
  ``pg_blocks_read`` (shared buffers the statements touched);
* PostgreSQL without it: the cumulative statistics of the staging database (``pg_stat_database``
  and ``pg_stat_user_tables``). They count no statements, so ``db_statements`` is the number of
  table scans (``seq_scan + idx_scan`` over the database's tables) — one per table a statement
  reads, so a query per row still shows as a scan per row; extras ``pg_xact_commit``,
  ``pg_xact_rollback``, ``pg_seq_scan``, ``pg_idx_scan``. PostgreSQL 15 publishes a backend's
  statistics at most once a second while it works, and an idle backend's last changes only
  after 10 s: the probe waits for them (:meth:`PostgresStatsProbe.settle`) before a phase
  starts and after it ends, so phase totals are exact; block boundaries inside the paired phase
  are read without waiting, so per-version figures there can lag by up to a second of work;
* MariaDB / MySQL: ``SHOW GLOBAL STATUS``: ``Questions`` (statements), ``Rows_read``
  (MySQL: ``Innodb_rows_read``), ``Innodb_rows_inserted/updated/deleted`` where the server
  has them, else ``Handler_write/update/delete``; extras ``mysql_com_*``,
  ``mysql_handler_*``. These counters are **server-wide**: anything
  else the server runs during a phase counts too, so give staging a server of its own;
* embedded SQLite: no probe. Round trips to an embedded database cost next to nothing, so a
  query per row hides there; the rehearsal records ``cost.<phase>.unmeasured`` and the report
  says so ("not measured: embedded SQLite hides round-trip cost").

The probe's own queries are left out of the counts (each read runs exactly one statement,
which is subtracted).
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

import sqlalchemy as sa

UNMEASURED_SQLITE = "not measured: embedded SQLite hides round-trip cost"
#: PostgreSQL 15's interval before an idle backend publishes its pending statistics
#: (PGSTAT_IDLE_INTERVAL, 10 s), with a margin.
PG_IDLE_FLUSH_S = 10.5


class CostProbe(Protocol):
    """Monotonic counters of database work (see the module's docstring)."""

    #: What the counters cover, for the report ("pg_stat_statements", "server-wide" …).
    source: str

    def read(self) -> dict[str, float]: ...

    def close(self) -> None: ...


# -- PostgreSQL ------------------------------------------------------------------------------
_PGSS_SQL = """
SELECT COALESCE(SUM(calls), 0),
       COALESCE(SUM(rows) FILTER (WHERE NOT {written}), 0),
       COALESCE(SUM(rows) FILTER (WHERE {written}), 0),
       COALESCE(SUM(shared_blks_hit), 0), COALESCE(SUM(shared_blks_read), 0)
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %(db)s)
""".format(written="query ~* '^\\s*(insert|update|delete|merge|copy)\\M'")

# One statement: flush this backend's own statistics promptly (so each read adds exactly one
# transaction to the counts, subtracted below) and read the database's and its tables' counters.
_STATS_SQL = """
SELECT pg_stat_force_next_flush(),
       d.xact_commit, d.xact_rollback,
       COALESCE(SUM(t.seq_scan), 0), COALESCE(SUM(t.idx_scan), 0),
       COALESCE(SUM(t.seq_tup_read), 0) + COALESCE(SUM(t.idx_tup_fetch), 0),
       COALESCE(SUM(t.n_tup_ins), 0) + COALESCE(SUM(t.n_tup_upd), 0)
         + COALESCE(SUM(t.n_tup_del), 0)
FROM pg_stat_database d LEFT JOIN pg_stat_user_tables t ON TRUE
WHERE d.datname = current_database()
GROUP BY d.xact_commit, d.xact_rollback
"""

_ACTIVITY_SQL = """
SELECT COUNT(*) FILTER (WHERE state IS DISTINCT FROM 'idle'),
       EXTRACT(EPOCH FROM clock_timestamp() - MAX(state_change))
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
"""


class PostgresStatsProbe:
    """PostgreSQL: ``pg_stat_statements`` when it is loaded, else the cumulative statistics.

    One connection to the staging database, kept open (a new backend per read would add its
    own work to the counts). ``stats_fetch_consistency = none``: every read sees the counters
    as they are, not a snapshot cached for the transaction.
    """

    def __init__(self, url: str, *, prefer_statements: bool = True):
        from plantstage.engines import normalize_url

        self.url = normalize_url(url)
        self.engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool,
                                       isolation_level="AUTOCOMMIT")
        self._conn: sa.Connection | None = None
        self.reads = 0
        #: Transactions this probe ran on the database (reads and settle's polls), subtracted.
        self.own = 0
        self.last: dict[str, float] | None = None
        conn = self._connection()
        #: PostgreSQL 15 and later (shared-memory statistics; earlier servers have a collector
        #: process that publishes about twice a second, and none of the settings used here).
        self.v15 = int(conn.exec_driver_sql("SHOW server_version_num").scalar()) >= 150000
        if self.v15:
            conn.exec_driver_sql("SET stats_fetch_consistency = none")
        self.statements = prefer_statements and self._pgss_works(conn)
        #: Where pg_stat_statements is read: the staging database (the probe's own reads then
        #: count and are subtracted) or, when the extension is created only there, the
        #: server's maintenance database ``postgres`` (filtered to staging: nothing to subtract).
        self._pgss: sa.Engine | None = None
        self._pgss_conn: sa.Connection | None = None
        if prefer_statements and not self.statements and self.url.database != "postgres":
            self._pgss = sa.create_engine(self.url.set(database="postgres"),
                                          poolclass=sa.pool.NullPool,
                                          isolation_level="AUTOCOMMIT")
            try:
                self._pgss_conn = self._pgss.connect()
                self.statements = self._pgss_works(self._pgss_conn)
            except sa.exc.DBAPIError:
                self.statements = False
            if not self.statements:
                self._close_pgss()
        self._stats_sql = _STATS_SQL if self.v15 else \
            _STATS_SQL.replace("pg_stat_force_next_flush()", "NULL")
        if self.v15:
            # What this connection did so far is published now, before the first read.
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        self.source = ("pg_stat_statements" if self.statements
                       else "pg_stat_database / pg_stat_user_tables")

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        return self._conn

    @staticmethod
    def _pgss_works(conn: sa.Connection) -> bool:
        """The view exists in this database and the library is loaded (reading it fails when
        the extension was created without ``shared_preload_libraries``)."""
        if conn.exec_driver_sql("SELECT to_regclass('pg_stat_statements')").scalar() is None:
            return False
        try:
            conn.exec_driver_sql("SELECT 1 FROM pg_stat_statements LIMIT 1").fetchall()
        except sa.exc.DBAPIError:
            return False
        return True

    def read(self) -> dict[str, float]:
        conn = self._connection()
        own = self.reads  # statements of earlier reads, counted already
        own_xacts = self.own
        self.reads += 1
        self.own += 1
        if self.statements:
            if self._pgss_conn is not None:
                conn, own = self._pgss_conn, 0
            calls, rows_r, rows_w, hit, rd = conn.exec_driver_sql(
                _PGSS_SQL, {"db": self.url.database}).one()
            # Each earlier read was one call returning one row (a query: rows read).
            out = {"db_statements": float(calls) - own, "db_rows_read": float(rows_r) - own,
                   "db_rows_written": float(rows_w), "pg_blocks_hit": float(hit),
                   "pg_blocks_read": float(rd)}
        else:
            _f, commit, rollback, seq, idx, rows_r, rows_w = \
                conn.exec_driver_sql(self._stats_sql).one()
            out = {"db_statements": float(seq) + float(idx), "db_rows_read": float(rows_r),
                   "db_rows_written": float(rows_w), "pg_xact_commit": float(commit) - own_xacts,
                   "pg_xact_rollback": float(rollback), "pg_seq_scan": float(seq),
                   "pg_idx_scan": float(idx)}
        self.last = out
        return out

    @property
    def lags(self) -> bool:
        """Whether the counters can trail the work (the statistics path: see :meth:`settle`)."""
        return not self.statements

    def settle(self, timeout: float = PG_IDLE_FLUSH_S + 1.0) -> float:
        """Wait until the database's other backends have published their statistics; returns
        the seconds waited (0 with ``pg_stat_statements``, which never lags).

        A backend that works publishes at most once a second; one that goes idle within a
        second of its last publication holds its last changes for 10 s. So: wait until no
        other client backend of the database is busy and the last one to change state has
        been idle for :data:`PG_IDLE_FLUSH_S` (or ``timeout`` passed).
        ``PLANTSTAGE_COST_SETTLE=0`` in the environment skips the wait (faster; phase totals
        may then miss or gain about a second of work at each edge).
        """
        if not self.lags or os.environ.get("PLANTSTAGE_COST_SETTLE", "1") == "0":
            return 0.0
        t0 = time.monotonic()
        conn = self._connection()
        while True:
            busy, idle_for = conn.exec_driver_sql(_ACTIVITY_SQL).one()
            self.own += 1
            waited = time.monotonic() - t0
            if busy == 0 and (idle_for is None or float(idle_for) >= PG_IDLE_FLUSH_S):
                return waited
            left = timeout - waited
            if left <= 0:
                return waited
            step = 0.2 if busy else max(0.05, PG_IDLE_FLUSH_S - float(idle_for or 0))
            time.sleep(min(left, step))

    def _close_pgss(self) -> None:
        if self._pgss_conn is not None:
            self._pgss_conn.close()
            self._pgss_conn = None
        if self._pgss is not None:
            self._pgss.dispose()
            self._pgss = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._close_pgss()
        self.engine.dispose()


# -- MariaDB / MySQL ------------------------------------------------------------------------
_MARIADB_VARS = {
    "Questions": "db_statements",
    "Com_select": "mysql_com_select",
    "Com_insert": "mysql_com_insert",
    "Com_insert_select": "mysql_com_insert_select",
    "Com_update": "mysql_com_update",
    "Com_delete": "mysql_com_delete",
    "Com_replace": "mysql_com_replace",
    "Handler_read_key": "mysql_handler_read_key",
    "Handler_read_next": "mysql_handler_read_next",
    "Handler_write": "mysql_handler_write",
    "Handler_update": "mysql_handler_update",
    "Handler_delete": "mysql_handler_delete",
}
#: Rows read: MariaDB's ``Rows_read``, else MySQL's ``Innodb_rows_read``.
_ROWS_READ = ("Rows_read", "Innodb_rows_read")
#: Rows written: InnoDB's row counters where the server has them (MySQL, older MariaDB), else
#: the handler's writes, updates and deletes (which also count internal temporary tables).
_ROWS_WRITTEN = (("Innodb_rows_inserted", "Innodb_rows_updated", "Innodb_rows_deleted"),
                 ("Handler_write", "Handler_update", "Handler_delete"))
_MARIADB_SQL = ("SHOW GLOBAL STATUS WHERE Variable_name IN ("
                + ", ".join(f"'{v}'" for v in [*_MARIADB_VARS, *_ROWS_READ,
                                               *_ROWS_WRITTEN[0]]) + ")")


class MariaDBStatusProbe:
    """MariaDB / MySQL: ``SHOW GLOBAL STATUS`` — counters of the whole server, updated as each
    statement ends (no lag); the probe's own ``SHOW`` (one question per read) is subtracted."""

    source = "SHOW GLOBAL STATUS (server-wide)"
    lags = False

    def __init__(self, url: str):
        from plantstage.engines import normalize_url

        self.engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool,
                                       isolation_level="AUTOCOMMIT")
        self._conn: sa.Connection | None = None
        self.reads = 0
        self.last: dict[str, float] | None = None

    def read(self) -> dict[str, float]:
        if self._conn is None or self._conn.closed:
            self._conn = self.engine.connect()
        own = self.reads
        self.reads += 1
        status = {name: float(value) for name, value
                  in self._conn.exec_driver_sql(_MARIADB_SQL).fetchall()}
        out = {_MARIADB_VARS[k]: v for k, v in status.items() if k in _MARIADB_VARS}
        if "db_statements" in out:
            out["db_statements"] -= own
        for name in _ROWS_READ:
            if name in status:
                out["db_rows_read"] = status[name]
                break
        for names in _ROWS_WRITTEN:
            if all(n in status for n in names):
                out["db_rows_written"] = sum(status[n] for n in names)
                break
        self.last = out
        return out

    def settle(self, timeout: float = 0.0) -> float:
        return 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()


# -- choosing a probe -------------------------------------------------------------------------
def unmeasured_reason(url: str) -> str | None:
    """Why the database behind ``url`` gets no cost probe (None when it can have one)."""
    from plantstage.engines import normalize_url

    backend = normalize_url(url).get_backend_name()
    if backend == "sqlite":
        return UNMEASURED_SQLITE
    if backend not in ("postgresql", "mysql"):
        return f"not measured: no cost probe for {backend}"
    return None


def cost_probe_for(url: str) -> CostProbe | None:
    """The cost probe of the staging database at ``url``; None for embedded SQLite (and any
    engine without one). Connects now: a database that cannot be reached raises."""
    from plantstage.engines import normalize_url

    backend = normalize_url(url).get_backend_name()
    if backend == "postgresql":
        return PostgresStatsProbe(url)
    if backend == "mysql":
        return MariaDBStatusProbe(url)
    return None


_CTX_ATTR = "_plantstage_cost_probe"


def _staging_url(ctx: Any) -> str | None:
    db = getattr(ctx, "staging_db", None)
    return db.app_url() if db is not None else None


def probe_for(ctx: Any) -> CostProbe | None:
    """The run's cost probe (one per run, closed when the run ends), settled so that the work
    before the phase about to start is counted before its first read. None when staging's
    database has no probe (:func:`finish_phase` then records the phase as unmeasured) or the
    probe cannot connect (the phase then simply has no cost signals)."""
    url = _staging_url(ctx)
    if url is None:
        return None
    probe = getattr(ctx, _CTX_ATTR, None)
    if probe is None:
        try:
            probe = cost_probe_for(url)
        except Exception:  # noqa: BLE001 - cost signals are extra; never fail a phase for them
            probe = None
        if probe is None:
            return None
        setattr(ctx, _CTX_ATTR, probe)
        cleanups = getattr(ctx, "cleanups", None)
        if cleanups is not None:
            cleanups.append(probe.close)
    try:
        probe.settle()
    except Exception:  # noqa: BLE001
        pass
    return probe


def _iterations(signals: dict[str, float], phase: str) -> float:
    return float(signals.get(f"workload.{phase}.iterations", 0.0))


def finish_phase(ctx: Any, phase: str, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """After a load phase: make the phase's cost signals final and summarise them.

    * embedded SQLite (or an engine without a probe): ``cost.<phase>.unmeasured`` = 1 and the
      step's results say ``cost: not measured: …``;
    * a probe whose counters lag (PostgreSQL without ``pg_stat_statements``): wait for the
      backends to publish what they did, and add what arrived after the phase's last read to
      the phase totals (``cost.<phase>.late_statements`` says how much that was).

    Also fills the report's ``cost`` section (per phase, per iteration). Never raises.
    """
    out = out if out is not None else {}
    try:
        return _finish_phase(ctx, phase, out)
    except Exception as exc:  # noqa: BLE001 - a report line must not fail the phase
        out["cost"] = f"cost signals incomplete: {type(exc).__name__}: {str(exc)[:120]}"
        return out


def _finish_phase(ctx: Any, phase: str, out: dict[str, Any]) -> dict[str, Any]:
    url = _staging_url(ctx)
    if url is None:
        return out
    sections = getattr(ctx, "sections", None)
    section = sections.setdefault("cost", {"phases": {}}) if sections is not None else \
        {"phases": {}}
    reason = unmeasured_reason(url)
    probe = getattr(ctx, _CTX_ATTR, None)
    if reason is None and probe is None:
        reason = "not measured: the cost probe could not read the staging database"
    if reason is not None:
        ctx.signal(f"cost.{phase}.unmeasured", 1.0)
        out["cost"] = reason
        section["unmeasured"] = reason
        section["phases"][phase] = {}
        return out
    section["source"] = probe.source
    if getattr(probe, "lags", False) and probe.last is not None:
        before = dict(probe.last)
        probe.settle()
        after = probe.read()
        late = {k: v - before[k] for k, v in after.items() if k in before and v > before[k]}
        if late:
            n = _iterations(ctx.signals, phase)
            fixed: dict[str, float] = {}
            for counter, d in late.items():
                name = f"cost.{phase}.{counter}"
                if name in ctx.signals:
                    fixed[name] = ctx.signals[name] + d
                    fixed[f"{name}.per_iteration"] = fixed[name] / n if n else 0.0
            fixed[f"cost.{phase}.late_statements"] = late.get("db_statements", 0.0)
            ctx.signals_from(fixed)
    prefix = f"cost.{phase}."
    per = {k[len(prefix):-len(".per_iteration")]: v for k, v in ctx.signals.items()
           if k.startswith(prefix) and k.endswith(".per_iteration")}
    for column in (phase, f"{phase}.old", f"{phase}.new") if phase == "paired" else (phase,):
        section["phases"].setdefault(column, {})
    for k, v in sorted(per.items()):
        version, _, counter = k.partition(".")
        column, counter = (f"{phase}.{version}", counter) if counter else (phase, k)
        section["phases"].setdefault(column, {})[counter] = round(v, 3)
    out["cost"] = {k: round(v, 3) for k, v in sorted(per.items())
                   if k.startswith("db_") and k.count(".") == 0}
    return out


__all__ = ["UNMEASURED_SQLITE", "CostProbe", "MariaDBStatusProbe", "PostgresStatsProbe",
           "cost_probe_for", "finish_phase", "probe_for", "unmeasured_reason"]
