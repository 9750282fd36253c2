"""Cost probes on real databases: a query per row costs proportionally more statements than one
query for all rows; the probe's own reads are not counted; embedded SQLite is said to be
unmeasured; counters that arrive late (PostgreSQL's statistics) are added to the phase."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from plantstage.engines import adapter_for, normalize_url
from plantstage.signals.cost import (
    UNMEASURED_SQLITE,
    MariaDBStatusProbe,
    PostgresStatsProbe,
    cost_probe_for,
    finish_phase,
    probe_for,
    unmeasured_reason,
)

N = 60


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def mariadb_database():
    if not _reachable(3306):
        pytest.skip("MariaDB is not running at 127.0.0.1:3306")
    name = f"ps_cost_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def _app(url: str) -> sa.Engine:
    # NullPool: the "app" closes its connection after each piece of work, and a PostgreSQL
    # backend publishes its statistics as it exits, so the probe never waits in these tests.
    return sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool,
                            isolation_level="AUTOCOMMIT")


def _setup(app: sa.Engine) -> None:
    with app.connect() as c:
        c.exec_driver_sql("CREATE TABLE parts (id INTEGER PRIMARY KEY, code VARCHAR(20))")
        c.exec_driver_sql("INSERT INTO parts (id, code) VALUES "
                          + ", ".join(f"({i}, 'P{i}')" for i in range(1, 201)))


def _one_query(app: sa.Engine) -> None:
    with app.connect() as c:
        ids = ", ".join(str(i) for i in range(1, N + 1))
        assert len(c.exec_driver_sql(f"SELECT code FROM parts WHERE id IN ({ids})").all()) == N


def _n_plus_one(app: sa.Engine) -> None:
    with app.connect() as c:
        for i in range(1, N + 1):
            c.exec_driver_sql(f"SELECT code FROM parts WHERE id = {i}").one()


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def _measure(probe, app: sa.Engine, work) -> dict[str, float]:
    probe.settle()
    before = probe.read()
    work(app)
    probe.settle()
    return _delta(before, probe.read())


def test_postgresql_n_plus_one_costs_a_statement_per_row(pg_database):
    app = _app(pg_database)
    _setup(app)
    probe = cost_probe_for(pg_database)
    assert isinstance(probe, PostgresStatsProbe)
    try:
        idle = _measure(probe, app, lambda _a: None)
        one = _measure(probe, app, _one_query)
        loop = _measure(probe, app, _n_plus_one)
    finally:
        probe.close()
        app.dispose()
    # The probe's own reads are not counted.
    assert idle["db_statements"] == 0 and idle["db_rows_read"] == 0
    if probe.statements:  # pg_stat_statements: the statements themselves
        assert one["db_statements"] <= 3 and loop["db_statements"] >= N
    else:  # cumulative statistics: one table scan per statement that reads the table
        assert idle["pg_xact_commit"] == 0
        assert one["db_statements"] == 1
        assert loop["db_statements"] == N and loop["pg_idx_scan"] == N
    assert loop["db_statements"] >= N * one["db_statements"]
    assert loop["db_rows_written"] == 0


@pytest.mark.skipif(not os.environ.get("PLANTSTAGE_TEST_PGSS"),
                    reason="set PLANTSTAGE_TEST_PGSS to a PostgreSQL server URL (its postgres "
                    "database) with pg_stat_statements preloaded and created")
def test_postgresql_with_pg_stat_statements_counts_statements_exactly():
    server = os.environ["PLANTSTAGE_TEST_PGSS"].rsplit("/", 1)[0]
    name = f"ps_cost_{uuid.uuid4().hex[:8]}"
    admin = _app(f"{server}/postgres")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    app = _app(url)
    try:
        _setup(app)
        probe = cost_probe_for(url)
        try:
            assert probe.statements and not probe.lags and probe.settle() == 0.0
            idle = _measure(probe, app, lambda _a: None)
            one = _measure(probe, app, _one_query)
            loop = _measure(probe, app, _n_plus_one)
        finally:
            probe.close()
    finally:
        app.dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    assert idle["db_statements"] == 0
    assert (one["db_statements"], one["db_rows_read"]) == (1, N)
    assert (loop["db_statements"], loop["db_rows_read"]) == (N, N)


def test_postgresql_counts_only_the_staging_database(pg_database):
    other = pg_database.rsplit("/", 1)[0] + "/test"
    app = _app(pg_database)
    _setup(app)
    probe = cost_probe_for(pg_database)
    try:
        noise = _app(other)
        d = _measure(probe, noise, lambda e: [e.connect().close() for _ in range(5)])
        noise.dispose()
    finally:
        probe.close()
        app.dispose()
    assert d["db_statements"] == 0 and d["db_rows_read"] == 0


def test_mariadb_n_plus_one_costs_a_statement_per_row(mariadb_database):
    app = _app(mariadb_database)
    _setup(app)
    probe = cost_probe_for(mariadb_database)
    assert isinstance(probe, MariaDBStatusProbe)
    try:
        one = _measure(probe, app, _one_query)
        loop = _measure(probe, app, _n_plus_one)
    finally:
        probe.close()
        app.dispose()
    # Server-wide counters: other clients of the server may add to both, never take away.
    assert loop["db_statements"] >= N and loop["mysql_com_select"] >= N
    assert one["mysql_com_select"] < N / 2
    assert loop["db_rows_read"] >= N


def test_embedded_sqlite_has_no_probe_and_says_so(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/app.db"
    assert cost_probe_for(url) is None
    assert unmeasured_reason(url) == UNMEASURED_SQLITE
    assert unmeasured_reason("postgresql://h/db") is None
    signals: dict[str, float] = {}
    ctx = SimpleNamespace(staging_db=adapter_for(url), sections={}, signals=signals,
                          signal=lambda k, v: signals.__setitem__(k, v), cleanups=[])
    assert probe_for(ctx) is None
    out = finish_phase(ctx, "baseline", {})
    assert out["cost"] == "not measured: embedded SQLite hides round-trip cost"
    assert signals == {"cost.baseline.unmeasured": 1.0}
    assert ctx.sections["cost"]["unmeasured"] == UNMEASURED_SQLITE


class _LaggingProbe:
    """A probe whose counters trail the work, as PostgreSQL's statistics do."""

    source = "test"
    lags = True

    def __init__(self):
        self.value = 100.0
        self.last = {"db_statements": self.value}
        self.settled = 0

    def read(self):
        self.last = {"db_statements": self.value}
        return dict(self.last)

    def settle(self, timeout: float = 0.0) -> float:
        self.settled += 1
        self.value = 130.0  # what the backends published once idle
        return 0.0

    def close(self):
        pass


def test_late_counters_are_added_to_the_phase():
    signals = {"workload.candidate.iterations": 10.0,
               "cost.candidate.db_statements": 200.0,
               "cost.candidate.db_statements.per_iteration": 20.0}

    def signals_from(values):
        signals.update(values)

    db = SimpleNamespace(app_url=lambda: "postgresql://127.0.0.1/x")
    ctx = SimpleNamespace(staging_db=db, sections={}, signals=signals, signals_from=signals_from,
                          signal=lambda k, v: signals.__setitem__(k, v),
                          _plantstage_cost_probe=_LaggingProbe())
    out = finish_phase(ctx, "candidate", {})
    assert signals["cost.candidate.db_statements"] == 230.0
    assert signals["cost.candidate.db_statements.per_iteration"] == 23.0
    assert signals["cost.candidate.late_statements"] == 30.0
    assert out["cost"] == {"db_statements": 23.0}
    assert ctx.sections["cost"]["phases"]["candidate"]["db_statements"] == 23.0
