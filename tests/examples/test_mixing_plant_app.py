"""The mixing plant example app on its own: migrations, batch completions in decimal kg, API,
the MQTT consumer and the WMS outbox — and what each defective release really does."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from plantstage.artifacts import digest
from tests.conftest import requires_postgres
from tests.examples.mixing_plant import EXAMPLE, app_cli, generate, load_release

GOOD = "2.1.0"


def completion(batch_id: str, value: str = "2.750", site: str = "gent",
               material: str = "FG-0001", **extra: object) -> bytes:
    body = {"batchId": batch_id, "site": site, "material": material,
            "quantity": {"value": value, "uom": "kg"},
            "completedAt": "2025-07-01T08:15:00+00:00", **extra}
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mixing") / "production.sqlite"
    out = generate(path, "--scale", "0.3")
    assert out.returncode == 0, out.stderr
    return path


@pytest.fixture
def plant_db(production: Path, tmp_path: Path) -> Path:
    """A fresh copy of the generated database (schema 0001)."""
    copy = tmp_path / "plant.sqlite"
    with sqlite3.connect(production) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    return copy


def scalar(path: Path, sql: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchone()[0]


STOCK_MATCHES_LEDGER = """
    SELECT COUNT(*) FROM stock s LEFT JOIN (SELECT site, material, SUM(qty_g) AS t
        FROM material_ledger GROUP BY site, material) l
      ON l.site = s.site AND l.material = s.material
    WHERE s.qty_g <> COALESCE(l.t, 0)"""
BATCHES_BALANCE = """
    SELECT COUNT(*) FROM (SELECT ref FROM material_ledger WHERE kind IN ('produce', 'consume')
                          GROUP BY ref HAVING SUM(qty_g) <> 0)"""


# -- generator ------------------------------------------------------------------------------

def test_generator_is_deterministic_and_consistent(production: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.sqlite"
    assert generate(again, "--scale", "0.3").returncode == 0
    dump = "SELECT * FROM material_ledger ORDER BY entry_id"
    with sqlite3.connect(production) as a, sqlite3.connect(again) as b:
        assert a.execute(dump).fetchall() == b.execute(dump).fetchall()
    assert scalar(production, "SELECT COUNT(*) FROM material_ledger") > 5_000
    assert scalar(production, STOCK_MATCHES_LEDGER) == 0
    assert scalar(production, BATCHES_BALANCE) == 0
    assert scalar(production, "SELECT COUNT(*) FROM stock WHERE qty_g < 0") == 0
    # recipe codes repeat across revisions, as production data does
    assert scalar(production, "SELECT COUNT(*) FROM (SELECT site, code FROM recipes "
                              "GROUP BY site, code HAVING COUNT(*) > 1)") > 0
    # the generator refuses to write over a database that has tables
    refused = generate(production)
    assert refused.returncode == 2 and "already has tables" in refused.stderr


# -- migrations -----------------------------------------------------------------------------

def test_migrations_up_and_down_on_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    up = app_cli(GOOD, url, "migrate", "up")
    assert up.returncode == 0, up.stderr
    assert "schema 0002" in up.stdout
    assert app_cli(GOOD, url, "migrate", "status").stdout.strip() == "0002"
    down = app_cli(GOOD, url, "migrate", "down", "1")
    assert down.returncode == 0, down.stderr
    assert app_cli(GOOD, url, "migrate", "status").stdout.strip() == "0001"
    assert app_cli(GOOD, url, "migrate", "down", "0").returncode == 0
    assert app_cli(GOOD, url, "migrate", "status").stdout.strip() == "none"
    assert scalar(tmp_path / "empty.sqlite",
                  "SELECT COUNT(*) FROM sqlite_master WHERE name = 'batches'") == 0


def test_genealogy_migration_is_reversible_on_production_data(plant_db: Path) -> None:
    url = f"sqlite:///{plant_db}"
    rows = scalar(plant_db, "SELECT COUNT(*) FROM material_ledger")
    assert app_cli(GOOD, url, "migrate", "up").returncode == 0
    assert scalar(plant_db, "SELECT COUNT(*) FROM batch_inputs") == 0
    down = app_cli(GOOD, url, "migrate", "down", "1")
    assert down.returncode == 0, down.stderr
    assert scalar(plant_db, "SELECT COUNT(*) FROM material_ledger") == rows
    cols = [r[1] for r in sqlite3.connect(plant_db).execute("PRAGMA table_info(material_ledger)")]
    assert "lot" not in cols


def test_unique_recipe_code_migration_fails_on_production_data_and_changes_nothing(
        plant_db: Path, tmp_path: Path) -> None:
    release = "2.1.0-migration-fails-on-data"
    empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    assert app_cli(release, empty, "migrate", "up").returncode == 0  # fine on a dev database
    url = f"sqlite:///{plant_db}"
    out = app_cli(release, url, "migrate", "up")
    assert out.returncode == 1
    assert "0002_lot_genealogy up failed" in out.stderr and "UNIQUE" in out.stderr
    assert app_cli(release, url, "migrate", "status").stdout.strip() == "0001"
    assert scalar(plant_db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'batch_inputs'") == 0


def test_release_without_down_file_cannot_be_reverted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite'}"
    assert app_cli("2.1.0-no-downgrade", url, "migrate", "up").returncode == 0
    out = app_cli("2.1.0-no-downgrade", url, "migrate", "down", "1")
    assert out.returncode == 1 and "cannot be reverted" in out.stderr
    assert app_cli(GOOD, url, "migrate", "status").stdout.strip() == "0002"


def test_bad_migrate_arguments_exit_2_without_traceback(tmp_path: Path) -> None:
    out = app_cli(GOOD, f"sqlite:///{tmp_path / 'p.sqlite'}", "migrate", "down", "head")
    assert out.returncode == 2 and "Traceback" not in out.stderr


@requires_postgres
def test_migrations_and_batches_on_postgresql(pg_database: str) -> None:
    assert app_cli("2.0.0", pg_database, "migrate", "up").returncode == 0
    up = app_cli(GOOD, pg_database, "migrate", "up")
    assert up.returncode == 0, up.stderr
    mp = load_release(GOOD)
    db = mp.db.connect(pg_database)
    try:
        db.execute("INSERT INTO sites VALUES ('gent', 'Gent', 'BE')")
        for code, kind in (("FG-0001", "finished"), ("RM-A", "raw"), ("RM-B", "raw")):
            db.execute("INSERT INTO materials VALUES ('gent', ?, ?, ?)", (code, code, kind))
        db.execute("INSERT INTO recipes VALUES ('r1', 'gent', 'R-FG-0001', 1, 'FG-0001', "
                   "'active', '2025-01-01')")
        db.execute("INSERT INTO recipe_lines VALUES ('r1', 1, 'gent', 'RM-A', 62500)")
        db.execute("INSERT INTO recipe_lines VALUES ('r1', 2, 'gent', 'RM-B', 37500)")
        assert mp.plant.record_batch(db, mp.plant.parse_completion(completion("b1"))) == \
            "recorded"
        assert db.one("SELECT qty_g FROM stock WHERE material = 'FG-0001'") == (2750,)
        assert db.one("SELECT qty_g FROM stock WHERE material = 'RM-A'") == (-1719,)
    finally:
        db.close()
    assert app_cli(GOOD, pg_database, "migrate", "down", "0").returncode == 0


# -- quantities and batch completions -------------------------------------------------------

@pytest.mark.parametrize("release", ["2.0.0", GOOD])
def test_decimal_kg_is_kept_to_the_gram(release: str) -> None:
    plant = load_release(release).plant
    assert plant.parse_completion(completion("b", "2.750")).qty_g == 2750
    assert plant.parse_completion(completion("b", "1234.567")).qty_g == 1_234_567
    with pytest.raises(plant.Rejected, match="gram"):
        plant.parse_completion(completion("b", "2.7505"))
    with pytest.raises(plant.Rejected):
        plant.parse_completion(completion("b", "lots"))


def test_grams_split_by_recipe_shares_add_up_exactly() -> None:
    db = load_release(GOOD).db
    parts = db.split_by_shares(2750, [62500, 25000, 12500])
    assert sum(parts) == 2750
    assert parts == [1718, 688, 344]  # 1718.75, 687.5, 343.75 rounded; the rest to the largest
    assert db.grams_to_kg(2750) == "2.750" and db.grams_to_kg(-5) == "-0.005"
    assert db.kg_to_grams("0.001") == 1


def test_new_release_accepts_grams_and_input_lots_and_old_payloads() -> None:
    plant = load_release(GOOD).plant
    batch = plant.parse_completion(completion("b", "2750", inputLots=[
        {"material": "RM-BIN-01", "lot": "L-77", "quantity": {"value": "1.5", "uom": "kg"}}]))
    assert batch.input_lots == (("RM-BIN-01", "L-77", 1500),)
    grams = json.loads(completion("b"))
    grams["quantity"] = {"value": "2750", "uom": "g"}
    assert plant.parse_completion(json.dumps(grams)).qty_g == 2750
    assert plant.parse_completion(completion("b")).input_lots == ()  # the line's payload today


def test_defect_truncates_decimal_kg_to_whole_kg() -> None:
    plant = load_release("2.1.0-truncates-kg").plant
    assert plant.parse_completion(completion("b", "2.750")).qty_g == 2000


def test_defect_rejects_the_payload_the_line_sends_today() -> None:
    plant = load_release("2.1.0-rejects-old-payload").plant
    with pytest.raises(plant.Rejected, match="inputLots"):
        plant.parse_completion(completion("b"))


def _first_active_paint(path: Path) -> tuple[str, str]:
    return sqlite3.connect(path).execute(
        "SELECT site, material FROM recipes WHERE status = 'active' ORDER BY id LIMIT 1"
    ).fetchone()


def test_a_batch_posts_produce_and_consume_once(plant_db: Path) -> None:
    url = f"sqlite:///{plant_db}"
    assert app_cli(GOOD, url, "migrate", "up").returncode == 0
    mp = load_release(GOOD)
    site, paint = _first_active_paint(plant_db)
    db = mp.db.connect(url)
    try:
        msg = mp.plant.parse_completion(completion("t-1", "2.750", site, paint))
        assert mp.plant.record_batch(db, msg) == "recorded"
        assert mp.plant.record_batch(db, msg) == "duplicate"  # QoS 1 redelivery
        with pytest.raises(mp.plant.Rejected, match="no active recipe"):
            mp.plant.record_batch(db, mp.plant.parse_completion(
                completion("t-2", "1", site, "RM-BIN-01")))
    finally:
        db.close()
    assert scalar(plant_db, "SELECT qty_g FROM batches WHERE batch_id = 't-1'") == 2750
    assert scalar(plant_db, "SELECT SUM(qty_g) FROM material_ledger WHERE ref = 't-1'") == 0
    assert scalar(plant_db, "SELECT COUNT(*) FROM material_ledger WHERE ref = 't-1' "
                            "AND kind = 'produce'") == 1
    assert scalar(plant_db, STOCK_MATCHES_LEDGER) == 0


# -- HTTP API -------------------------------------------------------------------------------

@pytest.mark.parametrize("release", ["2.0.0", GOOD])
def test_api(plant_db: Path, release: str) -> None:
    url = f"sqlite:///{plant_db}"
    assert app_cli(release, url, "migrate", "up").returncode == 0
    mp = load_release(release)
    client = mp.app.create_app(url).test_client()
    status = client.get("/status")
    assert status.status_code == 200 and status.mimetype == "text/plain"
    assert status.get_data(as_text=True).startswith(f"mixingplant {mp.VERSION} schema 000")
    assert status.headers["X-Mixingplant-Version"] == mp.VERSION
    assert client.get("/health").status_code == 404  # no JSON health endpoint here
    sites = client.get("/api/sites").get_json()
    assert [s["code"] for s in sites] == ["gent", "lyon", "porto"]
    site, paint = _first_active_paint(plant_db)
    recipes = client.get(f"/api/sites/{site}/recipes").get_json()
    assert recipes and all(sum(float(line["percent"]) for line in r["lines"]) == pytest.approx(100)
                           for r in recipes)
    before = client.get(f"/api/sites/{site}/stock/{paint}").get_json()["quantity"]
    assert before["uom"] == "kg" and before["value"].count(".") == 1
    r = client.post(f"/api/sites/{site}/adjustments",
                    json={"material": paint, "quantity": {"value": "2.750", "uom": "kg"},
                          "reason": "test"})
    assert r.status_code == 201 and r.get_json()["quantity"] == {"value": "2.750", "uom": "kg"}
    after = client.get(f"/api/sites/{site}/stock/{paint}").get_json()["quantity"]
    from decimal import Decimal
    assert Decimal(after["value"]) - Decimal(before["value"]) == Decimal("2.750")
    assert client.post(f"/api/sites/{site}/adjustments", json={"material": "nope", "quantity": {
        "value": "1", "uom": "kg"}}).status_code == 422
    assert client.get("/api/sites/nowhere/materials").status_code == 404
    batch_id = sqlite3.connect(plant_db).execute(
        "SELECT batch_id FROM batches WHERE site = ? LIMIT 1", (site,)).fetchone()[0]
    b = client.get(f"/api/sites/{site}/batches/{batch_id}").get_json()
    total = sum(Decimal(c["quantity"]["value"]) for c in b["consumed"])
    assert total == Decimal(b["quantity"]["value"])


def test_status_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    mp = load_release(GOOD)
    client = mp.app.create_app(f"sqlite:///{tmp_path}/missing/dir/x.sqlite").test_client()
    assert client.get("/status").status_code == 503


# -- the consumer and the WMS outbox, end to end over MQTT and HTTP -------------------------

class _Wms(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).received.append({"path": self.path, **body})
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_consumer_records_mqtt_batches_and_tells_the_wms(plant_db: Path) -> None:
    import paho.mqtt.client as mqtt

    from plantstage.brokers.embedded import EmbeddedBroker

    url = f"sqlite:///{plant_db}"
    assert app_cli(GOOD, url, "migrate", "up").returncode == 0
    site, paint = _first_active_paint(plant_db)
    broker = EmbeddedBroker().start()
    wms = ThreadingHTTPServer(("127.0.0.1", 0), _Wms)
    threading.Thread(target=wms.serve_forever, daemon=True).start()
    _Wms.received = []
    mp = load_release(GOOD)
    wms_outbox = mp.integrations.WmsOutbox(f"http://127.0.0.1:{wms.server_port}")
    consumer = mp.integrations.BatchConsumer(broker.url, url, wms_outbox)
    integrations = mp.integrations.Integrations(consumer, wms_outbox)
    integrations.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="line-test")
    try:
        deadline = time.monotonic() + 10
        while consumer.stats["connects"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        topic = f"mix/{site}/batches/done"
        for i, value in enumerate(["2.750", "0.125", "2.750"]):
            batch_id = "mq-1" if i == 2 else f"mq-{i}"  # the third is a redelivery
            pub.publish(topic, completion(batch_id, value, site, paint), qos=1).wait_for_publish()
        pub.publish(topic, b"{not json", qos=1).wait_for_publish()
        while (consumer.stats["recorded"] < 2 or len(_Wms.received) < 2) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.loop_stop()
        integrations.stop()
        broker.stop()
        wms.shutdown()
    assert consumer.stats["recorded"] == 2 and consumer.stats["rejected"] == 1
    assert consumer.stats["duplicate"] == 1
    assert scalar(plant_db, "SELECT qty_g FROM batches WHERE batch_id = 'mq-0'") == 2750
    assert scalar(plant_db, "SELECT qty_g FROM batches WHERE batch_id = 'mq-1'") == 125
    got = sorted(_Wms.received, key=lambda m: m["reference"])
    assert [m["path"] for m in got] == ["/v2/goods-movements"] * 2
    assert [m["quantity"] for m in got] == [{"value": "2.750", "uom": "kg"},
                                            {"value": "0.125", "uom": "kg"}]


# -- the spec beside the app ----------------------------------------------------------------

def _plantstage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plantstage", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_spec_checks_and_lists_the_plugin_signals() -> None:
    r = _plantstage("check", str(EXAMPLE))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "batch-completion.batches_lost" in r.stdout
    assert "reconcile.batches-balance.mismatches" in r.stdout


def test_spec_pins_each_release_by_its_digest() -> None:
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    releases = {r["name"]: r["artifact"] for r in spec["releases"]}
    # Every release folder is some release's artifact (a release may reuse another's folder:
    # 2.1.0-by-restore is 2.1.0 rehearsed with another rollback kind).
    used = {Path(a["path"]).name for a in releases.values()}
    assert used == {p.name for p in (EXAMPLE / "releases").iterdir()}
    for name, artifact in releases.items():
        # what `plantstage digest releases/NAME` prints
        assert digest(EXAMPLE / artifact["path"]) == artifact["sha256"], \
            f"{name} changed: pin `plantstage digest {artifact['path']}` in the spec"
