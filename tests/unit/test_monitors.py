"""Business transaction monitors: sampling a real SQLite database while it changes, the
phase's signals, errors with file:line, spec validation, the catalogue, the live gauges."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from plantstage.engines import adapter_for
from plantstage.errors import SpecError
from plantstage.gates.catalogue import catalogue, signal_catalogue, validate
from plantstage.signals import MetricsServer, SignalStore
from plantstage.spec import parse_spec_text
from plantstage.spec.monitors import Monitor
from plantstage.workload.monitors import MonitorError, MonitorSampler, sampler_for
from tests.unit.test_spec import MINIMAL


class _Store:
    """A store stand-in keeping what the sampler writes (the SignalStore is not under test
    here; the Prometheus test below uses the real one)."""

    def __init__(self) -> None:
        self.recorded: list[dict[str, float]] = []
        self.values: dict[str, float] = {}

    def points(self, values: dict[str, float]) -> None:
        self.recorded.append(dict(values))

    def set_many(self, values: dict[str, float]) -> None:
        self.values.update(values)

    def points_of(self, name: str) -> list[float]:
        return [p[name] for p in list(self.recorded) if name in p]


def _db(tmp_path: Path) -> tuple[str, sqlite3.Connection]:
    path = tmp_path / "staging.sqlite"
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE backlog (id INTEGER PRIMARY KEY, tenant TEXT, done INTEGER)")
    conn.commit()
    return f"sqlite:///{path}", conn


def _engine(url: str):
    return adapter_for(url).readonly_engine()


def _wait(cond, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_samples_a_database_that_changes_while_sampled(tmp_path):
    url, conn = _db(tmp_path)
    m = Monitor(name="open-items", query="SELECT COUNT(*) FROM backlog WHERE done = 0",
                unit="count", every=0.2)
    store = _Store()
    sampler = MonitorSampler([m], _engine(url), phase="candidate", store=store)
    sampler.probe()
    sampler.start()
    name = "monitor.candidate.open-items"
    try:
        # A writer that adds one open item each time the sampler has seen the last one, then
        # closes two: the sampled values are the database's states, in order.
        for k in range(1, 5):
            _wait(lambda k=k: (k - 1) in store.points_of(name), f"a sample of {k - 1}")
            conn.execute("INSERT INTO backlog (tenant, done) VALUES ('a', 0)")
            conn.commit()
        _wait(lambda: 4 in store.points_of(name), "a sample of 4")
        conn.execute("UPDATE backlog SET done = 1 WHERE id <= 2")
        conn.commit()
        _wait(lambda: store.points_of(name)[-1] == 2, "a sample of 2")
    finally:
        signals = sampler.stop()
    seen = store.points_of(name)
    assert seen[0] == 0 and max(seen) == 4 and seen[-1] == 2
    assert all(v in {0, 1, 2, 3, 4} for v in seen)
    up = seen[:seen.index(4) + 1]
    assert up == sorted(up)  # the count only grew until the writer closed items
    p = f"{name}."
    assert signals[p + "max"] == 4 and signals[p + "min"] == 0 and signals[p + "last"] == 2
    assert signals[p + "samples"] == len(seen) and signals[p + "errors"] == 0
    assert signals[p + "mean"] == pytest.approx(sum(seen) / len(seen))
    assert store.values == signals  # the phase's signals went to the store
    assert sampler.stop() == signals  # idempotent
    assert sampler.describe()["open-items"]["unit"] == "count"


def test_per_tenant_values_and_how_they_combine(tmp_path):
    url, conn = _db(tmp_path)
    conn.executemany("INSERT INTO backlog (tenant, done) VALUES (?, 0)",
                     [("a",), ("a",), ("b",), ("a",)])
    conn.commit()
    q = "SELECT COUNT(*) FROM backlog WHERE tenant = :tenant"
    for combine, expected in (("sum", 4.0), ("max", 3.0)):
        m = Monitor(name="open", query=q, combine=combine, every=0.2)
        assert m.per_tenant
        sampler = MonitorSampler([m], _engine(url), phase="baseline", tenants=["a", "b", "c"])
        sampler.probe()
        sampler.start()
        _wait(lambda s=sampler: s.latest()[0]["value"] is not None, "a first sample")
        live = sampler.latest()[0]
        out = sampler.stop()
        assert live["value"] == expected and live["tenants"] == {"a": 3.0, "b": 1.0, "c": 0.0}
        assert out["monitor.baseline.open.last"] == expected
        assert out["monitor.baseline.open.tenant.a.max"] == 3.0
        assert out["monitor.baseline.open.tenant.c.last"] == 0.0


def test_null_is_no_sample_and_a_failing_sample_is_counted_not_fatal(tmp_path):
    url, conn = _db(tmp_path)
    age = Monitor(name="oldest", query="SELECT MAX(id) FROM backlog WHERE done = 0", every=0.2)
    gone = Monitor(name="gone", query="SELECT COUNT(*) FROM scratch", every=0.2)
    conn.execute("CREATE TABLE scratch (x)")
    conn.commit()
    sampler = MonitorSampler([age, gone], _engine(url), phase="paired",
                             wheres={"gone": "plantstage.yaml:42"})
    sampler.probe()
    sampler.start()
    _wait(lambda: sampler.latest()[1]["value"] == 0, "a sample of the scratch table")
    conn.execute("DROP TABLE scratch")  # what a release's migration might do mid-phase
    conn.commit()
    _wait(lambda: sampler.latest()[1]["errors"] > 0, "a failed sample")
    out = sampler.stop()
    assert out["monitor.paired.oldest.samples"] == 0  # MAX over no rows: NULL, no value
    assert "monitor.paired.oldest.max" not in out  # no value: a gate on it cannot pass
    assert out["monitor.paired.gone.errors"] >= 1 and out["monitor.paired.gone.samples"] >= 1
    err = sampler.describe()["gone"]["error"]
    assert err.startswith("plantstage.yaml:42: ") and "no such table: scratch" in err


@pytest.mark.parametrize("query, words", [
    ("SELECT COUNT(*) FROM nowhere", "no such table: nowhere"),
    ("SELECT id FROM backlog", "returned 2 rows, not one"),
    ("SELECT 1, 2", "returned 2 columns, not one"),
    ("SELECT 'soon'", "returned 'soon', not a number"),
    # Past the spec's SELECT check, the read-only session refuses the write itself.
    ("WITH x AS (SELECT 1) DELETE FROM backlog", "readonly"),
])
def test_a_bad_query_is_one_line_naming_the_monitor_before_the_load(tmp_path, query, words):
    url, conn = _db(tmp_path)
    conn.executemany("INSERT INTO backlog (tenant, done) VALUES (?, 0)", [("a",), ("b",)])
    conn.commit()
    m = Monitor(name="broken", query=query)
    sampler = MonitorSampler([m], _engine(url), phase="baseline",
                             wheres={"broken": "plantstage.yaml:7"})
    with pytest.raises(MonitorError) as exc:
        sampler.probe()
    line = exc.value.one_line()
    assert line.startswith("plantstage.yaml:7: monitor 'broken': ") and words in line
    assert "\n" not in line and "hint:" in line
    assert conn.execute("SELECT COUNT(*) FROM backlog").fetchone()[0] == 2
    sampler.stop()


def test_the_query_for_the_database_in_use(tmp_path):
    url, _conn = _db(tmp_path)
    m = Monitor(name="clock", query={"postgresql": "SELECT extract(epoch from now())",
                                     "sqlite": "SELECT CAST(strftime('%s','now') AS REAL)"})
    s = MonitorSampler([m], _engine(url), phase="load")
    s.probe()
    s.stop()
    only_pg = Monitor(name="clock", query={"postgresql": "SELECT 1"})
    with pytest.raises(MonitorError) as exc:
        MonitorSampler([only_pg], _engine(url), phase="load", wheres={"clock": "x.yaml:3"})
    assert exc.value.one_line() == ("x.yaml:3: monitor 'clock' has no query for sqlite "
                                    "(hint: add a 'sqlite' or 'default' query)")


_MONITORS = """\
monitors:
  - name: backlog-age
    unit: s
    every: 2
    query: SELECT COALESCE(MAX(age), 0) FROM backlog
  - name: per-tenant
    query: "SELECT COUNT(*) FROM backlog WHERE tenant = :tenant"
"""


def _spec(extra: str):
    return parse_spec_text(MINIMAL + extra, Path("plantstage.yaml"))


def _spec_err(extra: str) -> SpecError:
    with pytest.raises(SpecError) as exc:
        _spec(extra)
    return exc.value


def test_the_spec_declares_monitors():
    loaded = _spec(_MONITORS)
    m = loaded.spec.monitors[0]
    assert (m.name, m.unit, m.every, m.per_tenant) == ("backlog-age", "s", 2.0, False)
    assert loaded.spec.monitors[1].per_tenant
    assert loaded.where("monitors", 1, "query").endswith("plantstage.yaml:25")  # its query


@pytest.mark.parametrize("extra, words", [
    ("monitors:\n  - {name: x, query: 'UPDATE t SET a = 1'}\n", "must be a SELECT"),
    ("monitors:\n  - {name: x, query: 'SELECT 1; DELETE FROM t'}\n", "one statement"),
    ("monitors:\n  - {name: x, query: {oracle: 'SELECT 1'}}\n", "'oracle' is not a dialect"),
    ("monitors:\n  - {name: x, query: 'SELECT 1', every: 0}\n", "every"),
    ("monitors:\n  - {name: x, query: 'SELECT 1'}\n  - {name: x, query: 'SELECT 2'}\n",
     "monitors: name 'x' is used twice (monitors[0] and monitors[1])"),
    ("monitors:\n  - {name: 'a.b', query: 'SELECT 1'}\n", "name"),
    ("monitors:\n  - {name: x, query: 'SELECT 1', units: s}\n", "units"),
])
def test_a_bad_monitor_is_a_spec_error_with_its_line(extra, words):
    err = _spec_err(extra)
    assert words in err.one_line()
    assert err.where and err.where.startswith("plantstage.yaml:")
    assert int(err.where.split(":")[1]) >= 19  # the monitors block (line 19 on), not the top


def test_gates_can_name_monitor_signals_and_check_lists_them():
    gate = ("gates:\n  - {name: g, signal: %s, max: 5}\n")
    for ok in ("monitor.candidate.backlog-age.max", "monitor.paired.backlog-age.mean",
               "monitor.baseline.per-tenant.tenant.acme.max", "monitor.load.per-tenant.errors"):
        validate(_spec(_MONITORS + gate % ok))
    for bad, words in (("monitor.candidate.nope.max", "no monitor 'nope'"),
                       ("monitor.candidate.backlog-age.p95", "stat one of last, max"),
                       ("monitor.soon.backlog-age.max", "monitor signals are"),
                       ("monitor.candidate.backlog-age.tenant.a.max", "stat one of")):
        with pytest.raises(SpecError, match=words):
            validate(_spec(_MONITORS + gate % bad))
    loaded = _spec(_MONITORS)
    assert catalogue(loaded.spec).monitors == {"backlog-age": False, "per-tenant": True}


def test_the_signal_catalogue_lists_each_monitor():
    names = [n for n, _ in signal_catalogue(_spec(_MONITORS))]
    assert "monitor.{baseline,paired,candidate}.backlog-age.{last,max,min,mean,samples,errors}" \
        in names
    assert "monitor.{baseline,paired,candidate}.per-tenant.tenant.<tenant>.<stat>" in names


def test_prometheus_serves_the_monitors_latest_values_as_gauges(tmp_path):
    url, conn = _db(tmp_path)
    conn.executemany("INSERT INTO backlog (tenant, done) VALUES (?, 0)",
                     [("a",), ("a",), ("b",)])
    conn.commit()
    loaded = _spec("monitors:\n  - {name: open, unit: count, every: 0.2, "
                   "query: 'SELECT COUNT(*) FROM backlog WHERE tenant = :tenant', "
                   "combine: sum}\n")
    store = SignalStore()
    sampler = sampler_for(loaded, lambda: _engine(url), "load", ["a", "b"], store)
    assert sampler is not None
    server = MetricsServer(store, 0)
    try:
        server.watch(sampler)
        sampler.probe()
        sampler.start()
        _wait(lambda: sampler.latest()[0]["value"] is not None, "a first sample")
        text = httpx.get(server.url, timeout=5).text
        conn.execute("INSERT INTO backlog (tenant, done) VALUES ('b', 0)")
        conn.commit()
        _wait(lambda: sampler.latest()[0]["value"] == 4, "the new row sampled")
        later = httpx.get(server.url, timeout=5).text
        sampler.stop()
        server.unwatch(sampler)
        after = httpx.get(server.url, timeout=5).text
    finally:
        sampler.stop()
        server.stop()
    assert 'plantstage_monitor{monitor="open",phase="load",tenant="",unit="count"} 3.0' in text
    assert 'plantstage_monitor{monitor="open",phase="load",tenant="a",unit="count"} 2.0' in text
    assert 'plantstage_monitor{monitor="open",phase="load",tenant="b",unit="count"} 2.0' in later
    assert 'plantstage_monitor{monitor="open",phase="load",tenant="",unit="count"} 4.0' in later
    assert "plantstage_monitor{" not in after
    # The phase's signals are in the store (and so in evidence and /metrics as signals).
    assert 'plantstage_signal{signal="monitor.load.open.max"} 4.0' in after


def test_a_sampler_stops_cleanly_while_a_query_runs(tmp_path):
    url, _conn = _db(tmp_path)
    slow = Monitor(name="slow", every=0.2, query=(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
        "SELECT COUNT(*) FROM n"))
    s = MonitorSampler([slow], _engine(url), phase="candidate")
    s.start()
    started = threading.Event()
    threading.Timer(0.05, started.set).start()
    started.wait()
    out = s.stop()
    assert out["monitor.candidate.slow.errors"] == 0
    assert not s._thread.is_alive()  # noqa: SLF001 - joined, no sample after the signals


def test_the_rehearsal_probes_before_the_baseline_only(tmp_path):
    """A query that fails on production's schema is the spec's mistake (the baseline step fails
    naming its line); after the migration it may be the release's doing: counted, not fatal."""
    from types import SimpleNamespace

    from plantstage.rehearsal.steps.load import monitors_for
    from plantstage.workload.plan import Lane

    url, _conn = _db(tmp_path)
    loaded = _spec("monitors:\n  - {name: renamed, every: 0.2, "
                   "query: 'SELECT COUNT(*) FROM backlog WHERE gone = 1'}\n")
    ctx = SimpleNamespace(staging_db=adapter_for(url), loaded=loaded,
                          signal_store=lambda: None)
    lanes = [Lane("a", "all", None, None, None)]
    with pytest.raises(MonitorError, match="no such column: gone") as exc:
        monitors_for(ctx, "baseline", lanes)
    assert exc.value.where.endswith("plantstage.yaml:20")
    sampler = monitors_for(ctx, "candidate", lanes)
    sampler.start()
    _wait(lambda: sampler.latest()[0]["errors"] > 0, "a failed sample")
    out = sampler.stop()
    assert out["monitor.candidate.renamed.errors"] >= 1
    assert out["monitor.candidate.renamed.samples"] == 0
    assert "no such column: gone" in sampler.describe()["renamed"]["error"]


def test_on_postgresql_the_dialects_query_runs_read_only(pg_database):
    import sqlalchemy as sa

    rw = sa.create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://"))
    with rw.begin() as c:
        c.execute(sa.text("CREATE TABLE backlog (id INT PRIMARY KEY, created TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO backlog VALUES (1, now() - INTERVAL '3 seconds')"))
    rw.dispose()
    age = Monitor(name="age", every=0.2, query={
        "sqlite": "SELECT 0",
        "postgresql": "SELECT EXTRACT(EPOCH FROM now() - MIN(created)) FROM backlog"})
    sampler = MonitorSampler([age], _engine(pg_database), phase="candidate")
    sampler.probe()
    sampler.start()
    _wait(lambda: sampler.latest()[0]["value"] is not None, "a first sample")
    out = sampler.stop()
    assert out["monitor.candidate.age.max"] >= 3.0
    # The session itself refuses writes (default_transaction_read_only).
    writes = Monitor(name="w", query="WITH x AS (DELETE FROM backlog RETURNING 1) "
                     "SELECT COUNT(*) FROM x")
    bad = MonitorSampler([writes], _engine(pg_database), phase="candidate",
                         wheres={"w": "plantstage.yaml:9"})
    with pytest.raises(MonitorError, match="read-only transaction"):
        bad.probe()
    bad.stop()
