"""Business transaction monitors, sampled in the background while a load phase runs.

Each monitor of the spec (``monitors:``, plantstage.spec.monitors) is a read-only query on the
staging database returning one number. A :class:`MonitorSampler` runs every query once before
the phase (:meth:`~MonitorSampler.probe`: a bad query is a one-line error naming its
``file:line`` before any load starts), then samples them from a thread at each monitor's
interval until :meth:`~MonitorSampler.stop`, which returns the phase's signals
``monitor.<phase>.<name>.{last,max,min,mean,samples,errors}`` (and per tenant, for a query with
``:tenant``). Once the phase runs, a failing sample is counted (``.errors``), never fatal: the
release under test may well be what breaks the query, and the load must still finish.

A thread rather than a task on the load's event loop: the queries are blocking DB-API calls,
and the loop is the load generator's hot path (a slow query there would delay iterations and
show up as latency the app never caused).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from plantstage.errors import PlantstageError
from plantstage.spec.monitors import Combine, Monitor

_HINT = ("a monitor runs read-only on the staging database and returns one row of one number "
         "(docs/monitors.md)")


class MonitorError(PlantstageError):
    """A monitor's query cannot be run, or does not return one number. Raised only when the
    queries are tried before the baseline, on the current version's schema: the spec does not
    fit the app, so the rehearsal could not run (exit 2) — it says nothing of the release."""

    stops_run = True


@dataclass
class _Track:
    """The values one monitor (or one tenant of it) returned in a phase."""

    values: list[float] = field(default_factory=list)
    errors: int = 0
    last: float | None = None

    def add(self, v: float | None) -> None:
        if v is not None:
            self.values.append(v)
            self.last = v

    def stats(self) -> dict[str, float]:
        out = {"samples": float(len(self.values)), "errors": float(self.errors)}
        if self.values:
            out.update(last=self.values[-1], max=max(self.values), min=min(self.values),
                       mean=sum(self.values) / len(self.values))
        return out


def _number(row_set: list[Sequence[Any]]) -> float | None:
    """The one number a query returned (None for NULL or no row); ValueError otherwise."""
    if not row_set:
        return None
    if len(row_set) > 1:
        raise ValueError(f"returned {len(row_set)} rows, not one")
    row = row_set[0]
    if len(row) != 1:
        raise ValueError(f"returned {len(row)} columns, not one")
    v = row[0]
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float | Decimal):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        raise ValueError(f"returned {str(v)[:40]!r}, not a number") from None


def _why(exc: BaseException) -> str:
    """One line of what went wrong (the driver's message, without SQLAlchemy's wrapping)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class MonitorSampler:
    """Samples the spec's monitors on ``engine`` for one phase (``phase`` names the signals).

    ``tenants`` are the tenants the phase drives (a query with ``:tenant`` runs once per
    tenant); ``wheres`` the ``file:line`` of each monitor's query, for errors; ``store`` (a
    SignalStore) receives each sample as a time-series point ``monitor.<phase>.<name>``.
    """

    def __init__(self, monitors: Iterable[Monitor], engine: sa.Engine, *, phase: str,
                 tenants: Sequence[str] = (), wheres: dict[str, str] | None = None,
                 store: Any = None, clock: Callable[[], float] = time.monotonic):
        self.monitors = list(monitors)
        self.engine = engine
        self.phase = phase
        self.tenants = list(tenants)
        self.wheres = wheres or {}
        self.store = store
        self._clock = clock
        dialect = engine.dialect.name
        self._sql: dict[str, sa.TextClause] = {}
        for m in self.monitors:
            q = m.query_for(dialect)
            if q is None:
                engine.dispose()
                raise MonitorError(f"monitor '{m.name}' has no query for {dialect}",
                                   where=self.wheres.get(m.name),
                                   hint=f"add a '{dialect}' or 'default' query")
            self._sql[m.name] = sa.text(q)
        self._tracks: dict[tuple[str, str | None], _Track] = {}
        self._first_error: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sa.Connection | None = None
        self.signals: dict[str, float] = {}

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection is replaced, not reported
                pass

    # -- one sample --------------------------------------------------------------------
    def _tenants(self, m: Monitor) -> list[str | None]:
        return list(self.tenants) if m.per_tenant else [None]

    def _query(self, conn: sa.Connection, m: Monitor, tenant: str | None) -> float | None:
        params = {"tenant": tenant} if tenant is not None else {}
        return _number([tuple(r) for r in conn.execute(self._sql[m.name], params).fetchall()])

    def _sample(self, m: Monitor) -> float | None:
        """Sample one monitor (every tenant); its value now (None: failed, or no value).
        Failures are counted."""
        values: dict[str | None, float | None] = {}
        failed: str | None = None
        try:
            # One connection for the whole phase (a connect per sample would cost more than
            # the query: SQLite re-reads the schema); each sample ends its transaction, so
            # between samples the monitor holds no lock and sees fresh data.
            if self._conn is None:
                self._conn = self.engine.connect()
            try:
                for t in self._tenants(m):
                    values[t] = self._query(self._conn, m, t)
            finally:
                self._conn.rollback()
        except Exception as exc:  # noqa: BLE001 - a sample that fails is counted, not fatal
            failed = _why(exc)
            self._close()
        with self._lock:
            if failed is not None:
                self._track(m.name, None).errors += 1
                self._first_error.setdefault(m.name, failed)
                return None
            for t, v in values.items():
                if t is not None:
                    self._track(m.name, t).add(v)
            combined = self._combine(m, values)
            self._track(m.name, None).add(combined)
        return combined

    @staticmethod
    def _combine(m: Monitor, values: dict[str | None, float | None]) -> float | None:
        got = [v for v in values.values() if v is not None]
        if not got:
            return None
        return sum(got) if m.combine == Combine.sum else max(got)

    def _track(self, name: str, tenant: str | None) -> _Track:
        key = (name, tenant)
        if key not in self._tracks:
            self._tracks[key] = _Track()
        return self._tracks[key]

    # -- the phase ---------------------------------------------------------------------
    def probe(self) -> None:
        """Run every query once (every tenant); raise :class:`MonitorError` naming the
        monitor's ``file:line`` on the first that fails or does not return one number."""
        for m in self.monitors:
            if m.per_tenant and not self.tenants:
                raise MonitorError(f"monitor '{m.name}' has :tenant in its query, but the "
                                   "phase drives no tenant", where=self.wheres.get(m.name),
                                   hint="declare estate tenants, or leave :tenant out")
            try:
                with self.engine.connect() as conn:
                    for t in self._tenants(m):
                        self._query(conn, m, t)
            except Exception as exc:  # noqa: BLE001 - turned into one line with file:line
                raise MonitorError(f"monitor '{m.name}': its query failed on staging: "
                                   f"{_why(exc)}", where=self.wheres.get(m.name),
                                   hint=_HINT) from None

    def start(self) -> None:
        """Start sampling in a background thread (idempotent)."""
        if self._thread is not None or not self.monitors:
            return
        self._thread = threading.Thread(target=self._loop, name="plantstage-monitors",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        due = {m.name: self._clock() for m in self.monitors}
        while not self._stop.is_set():
            points: dict[str, float] = {}
            for m in self.monitors:
                if self._clock() >= due[m.name]:
                    v = self._sample(m)
                    if v is not None:
                        points[f"monitor.{self.phase}.{m.name}"] = v
                    # The next sample on the interval's grid, skipping missed slots (a slow
                    # query delays the monitor, it never makes samples bunch up).
                    due[m.name] += m.every
                    if due[m.name] <= self._clock():
                        due[m.name] = self._clock() + m.every
            if points and self.store is not None:
                # One write per round, not per monitor: the store commits each write, under
                # the lock the load's own time series need too.
                self.store.points(points)
            self._stop.wait(max(0.0, min(due.values()) - self._clock()))

    def stop(self) -> dict[str, float]:
        """Stop sampling (idempotent); the phase's signals (also written to ``store``)."""
        self._stop.set()
        if self._thread is not None:
            # A query may be mid-flight: wait for it, so no sample lands after the signals.
            self._thread.join()
        self._close()
        self.engine.dispose()
        if self.signals or not self.monitors:
            return dict(self.signals)
        out: dict[str, float] = {}
        with self._lock:
            for m in self.monitors:
                p = f"monitor.{self.phase}.{m.name}"
                for k, v in self._track(m.name, None).stats().items():
                    out[f"{p}.{k}"] = v
                if m.per_tenant:
                    for t in self.tenants:
                        for k, v in self._track(m.name, t).stats().items():
                            if k != "errors":  # a failed sample fails for every tenant
                                out[f"{p}.tenant.{t}.{k}"] = v
        self.signals = out
        if self.store is not None:
            self.store.set_many(out)
        return dict(out)

    # -- what is shown -----------------------------------------------------------------
    def latest(self) -> list[dict[str, Any]]:
        """Each monitor's latest value (None before its first), unit, and per tenant."""
        with self._lock:
            out = []
            for m in self.monitors:
                tr = self._tracks.get((m.name, None))
                out.append({
                    "name": m.name, "unit": m.unit,
                    "value": tr.last if tr is not None else None,
                    "max": max(tr.values) if tr is not None and tr.values else None,
                    "errors": tr.errors if tr is not None else 0,
                    "tenants": {t: self._tracks[(m.name, t)].last for t in self.tenants
                                if (m.name, t) in self._tracks} if m.per_tenant else {}})
            return out

    def gauges(self) -> list[tuple[dict[str, str], float]]:
        """``(labels, value)`` of each latest value: labels ``monitor``, ``phase``, ``unit``
        and ``tenant`` (empty for the monitor's combined value)."""
        out = []
        for row in self.latest():
            base = {"monitor": row["name"], "phase": self.phase, "unit": row["unit"]}
            if row["value"] is not None:
                out.append(({**base, "tenant": ""}, row["value"]))
            for t, v in row["tenants"].items():
                if v is not None:
                    out.append(({**base, "tenant": t}, v))
        return out

    def describe(self) -> dict[str, Any]:
        """A compact summary for the step's results: per monitor its unit and stats, and the
        first error (with the query's ``file:line``) when samples failed."""
        out: dict[str, Any] = {}
        for m in self.monitors:
            p = f"monitor.{self.phase}.{m.name}."
            entry: dict[str, Any] = {k[len(p):]: round(v, 3) for k, v in self.signals.items()
                                     if k.startswith(p) and ".tenant." not in k}
            if m.unit:
                entry["unit"] = m.unit
            if m.name in self._first_error:
                where = self.wheres.get(m.name)
                entry["error"] = (f"{where}: " if where else "") + self._first_error[m.name]
            out[m.name] = entry
        return out


def sampler_for(loaded: Any, engine: Callable[[], sa.Engine], phase: str,
                tenants: Sequence[str], store: Any = None) -> MonitorSampler | None:
    """The sampler of a loaded spec's monitors on ``engine()`` (a read-only engine on
    staging, made only when the spec declares monitors), or None when it declares none."""
    monitors = getattr(loaded.spec, "monitors", None) or []
    if not monitors:
        return None
    wheres = {m.name: loaded.where("monitors", i, "query") for i, m in enumerate(monitors)}
    return MonitorSampler(monitors, engine(), phase=phase, tenants=tenants, wheres=wheres,
                          store=store)
