import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from plantstage.signals import MetricsServer, SignalStore, compare, to_csv, to_openmetrics


def test_values_series_and_persistence(tmp_path):
    path = tmp_path / "signals.sqlite"
    seen = []
    store = SignalStore(path)
    store.subscribe(seen.append)
    store.set("workload.baseline.sales-order-import.p95_ms", 12.5)
    store.add("workload.baseline.business.orders_imported", 3)
    store.add("workload.baseline.business.orders_imported", 2)
    store.points({"workload.baseline.sales-order-import.throughput": 4.0}, t=100.0)
    store.points({"workload.baseline.sales-order-import.throughput": 6.0}, t=101.0)
    assert store.get("workload.baseline.business.orders_imported") == 5.0
    assert seen[0] == {"workload.baseline.sales-order-import.p95_ms": 12.5}
    store.close()
    again = SignalStore.open(path)
    assert again.values() == {"workload.baseline.business.orders_imported": 5.0,
                              "workload.baseline.sales-order-import.p95_ms": 12.5}
    assert again.series()["workload.baseline.sales-order-import.throughput"] == [
        (100.0, 4.0), (101.0, 6.0)]


def test_openmetrics_and_csv_are_lossless():
    store = SignalStore()
    store.set_many({"a.b-c.p95_ms": 1.5, "reconcile.x.mismatches": 0})
    store.points({"a.b-c.throughput": 2.0}, t=1700000000.0)
    text = to_openmetrics(store)
    assert text.rstrip().endswith("# EOF")
    samples = [(s.name, s.labels["signal"], s.value, s.timestamp)
               for fam in text_string_to_metric_families(text) for s in fam.samples]
    assert ("plantstage_signal", "a.b-c.p95_ms", 1.5, None) in samples
    assert any(n == "plantstage_series" and sig == "a.b-c.throughput" and v == 2.0
               for n, sig, v, _ in samples)
    lines = to_csv(store).splitlines()
    assert lines[0] == "kind,name,t,value"
    assert "value,a.b-c.p95_ms,,1.5" in lines
    assert "series,a.b-c.throughput,1700000000.000,2.0" in lines


def test_prometheus_endpoint_serves_the_live_store():
    store = SignalStore()
    server = MetricsServer(store, 0)
    try:
        store.set("workload.load.iterations", 7)
        body = httpx.get(server.url).text
        assert 'plantstage_signal{signal="workload.load.iterations"} 7.0' in body
    finally:
        server.stop()


def test_compare_pairs_old_and_new_per_signal():
    rows = compare({"workload.baseline.imp.p95_ms": 100.0, "workload.candidate.imp.p95_ms": 250.0,
                    "workload.candidate.new.count": 3.0, "other.x": 1.0})
    by = {r["signal"]: r for r in rows}
    assert by["imp.p95_ms"]["change"] == "+150%"
    assert by["new.count"]["old"] is None and by["new.count"]["new"] == 3.0
    assert "other.x" not in by and len(rows) == 2


def test_raw_samples_are_kept_and_read_back(tmp_path):
    import sqlite3

    store = SignalStore(tmp_path / "signals.sqlite")
    store.add_samples("paired", "old", "import", [(1, 1.0, 12.5, True), (3, 3.2, 30.0, False)])
    store.add_samples("paired", "new", "import", [(0, 0.1, 11.0, True)])
    store.add_samples("paired", "old", "import", [(5, 5.0, 9.0, 1)])
    store.add_samples("paired", "new", "other", [])  # nothing to keep
    assert store.samples("paired", "import", "old") == [
        (1, 1.0, 12.5, True), (3, 3.2, 30.0, False), (5, 5.0, 9.0, True)]
    assert store.samples("paired", "import", "new") == [(0, 0.1, 11.0, True)]
    store.add_samples("paired", "new", "import", [(2, 2.0, 8.0, True, "acme")])  # + stratum
    assert store.samples("paired", "import", "new")[-1] == (2, 2.0, 8.0, True, "acme")
    assert store.samples("candidate", "import", "new") == []
    assert store.sample_keys() == [("paired", "new", "import"), ("paired", "old", "import")]
    assert store.values() == {}  # samples are not signal values
    store.close()
    again = SignalStore.open(tmp_path / "signals.sqlite")
    assert again.samples("paired", "import", "old") == store.samples("paired", "import", "old")
    assert again.samples("paired", "import", "new") == store.samples("paired", "import", "new")
    # A recording made before samples were kept has none (and opens as before).
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript("CREATE TABLE signal_values (name TEXT PRIMARY KEY, value REAL, at REAL);"
                     "CREATE TABLE signal_points (name TEXT, t REAL, value REAL);"
                     "INSERT INTO signal_values VALUES ('a', 1.0, 0);")
    db.commit()
    db.close()
    legacy = SignalStore.open(old)
    assert legacy.values() == {"a": 1.0} and legacy.sample_keys() == []
