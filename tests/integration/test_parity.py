"""`plantstage parity` as a user runs it: a faithful staging, planted drift of each kind,
unreadable inputs, the rehearsal's first step, and proof that production is only read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from plantstage.artifacts import digest
from plantstage.rehearsal.processes import ManagedProcess, free_port
from tests.conftest import (
    EXAMPLE,
    requires_mariadb,
    requires_mosquitto,
    requires_postgres,
    run_cli,
)

RELEASES = EXAMPLE / "releases"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _release_copy(tmp: Path, name: str) -> Path:
    """A private copy of a release: no app ever runs inside examples/sample-plant/releases."""
    dest = tmp / f"release-{name}"
    if not dest.exists():
        shutil.copytree(RELEASES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def prod_copy(production_db: Path, tmp_path_factory) -> Path:
    """A copy of the sample plant's production database, for the 'running production' app."""
    d = tmp_path_factory.mktemp("prodcopy") / "production.sqlite"
    shutil.copyfile(production_db, d)
    return d


@pytest.fixture(scope="module")
def running(prod_copy: Path, tmp_path_factory):
    """running(release) → URL of `python -m sampleplant serve` of that release (real process)."""
    tmp = tmp_path_factory.mktemp("apps")
    procs: dict[str, ManagedProcess] = {}

    def start(release: str) -> str:
        if release not in procs:
            port = free_port()
            p = ManagedProcess(
                f"production erp {release}",
                [sys.executable, "-m", "sampleplant", "serve", "--host", "127.0.0.1",
                 "--port", str(port)],
                cwd=str(_release_copy(tmp, release)),
                env={"DATABASE_URL": f"sqlite:///{prod_copy}", "PYTHONDONTWRITEBYTECODE": "1"},
                port=port, health_path="/health", log_path=tmp / f"{release}.log")
            p.start()
            p.wait_healthy(30)
            procs[release] = p
        return f"http://127.0.0.1:{procs[release].port}"

    yield start
    for p in procs.values():
        p.stop()


def make_plant(tmp: Path, production_db: Path, *, erp_url: str | None = None,
               edit_spec=None) -> tuple[Path, Path]:
    """The sample plant's spec and config in tmp, with production bound to a copy of its DB.

    Returns (spec dir, production database file)."""
    plant = tmp / "plant"
    shutil.copytree(EXAMPLE / "config", plant / "config")
    for module in EXAMPLE.glob("*.py"):  # its plugin (flows, smoke checks) beside the spec
        shutil.copyfile(module, plant / module.name)
    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    for rel in data["releases"]:
        rel["artifact"]["path"] = str(EXAMPLE / rel["artifact"]["path"])
        # pin what is on disk now: these tests are about parity, not about release digests
        rel["artifact"]["sha256"] = digest(rel["artifact"]["path"])
    data["paths"] = {"allow_outside": [str(EXAMPLE / "releases")]}
    prod = tmp / "production.sqlite"
    shutil.copyfile(production_db, prod)
    data["environments"]["production"]["bindings"]["erp-db"]["url"] = f"sqlite:///{prod}"
    if erp_url:
        data["environments"]["production"]["bindings"]["erp"]["url"] = erp_url
    if edit_spec:
        edit_spec(data)
    (plant / "plantstage.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return plant, prod


def run_parity(plant: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = run_cli("parity", str(plant), "--out", str(out), *extra, timeout=120)
    doc = json.loads((out / "parity.json").read_text()) if (out / "parity.json").exists() else {}
    return r, doc


def findings(doc: dict) -> dict[tuple[str, str], dict]:
    return {(row["layer"], row["key"]): row for layer in doc["layers"] for row in layer["rows"]}


def test_faithful_staging_is_clean_and_production_is_not_written(tmp_path, production_db,
                                                                 running):
    plant, prod = make_plant(tmp_path, production_db, erp_url=running("1.0.0"))
    before = _sha(prod)
    r, doc = run_parity(plant, tmp_path / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _sha(prod) == before  # no collector wrote to production
    f = findings(doc)
    versions = next(x for x in doc["layers"] if x["name"] == "versions")
    assert versions["counts"]["drift"] == 0
    # the only unknown: the sample plant's production broker (mqtt.plant.invalid) is not there
    assert [x["key"] for x in versions["rows"] if x["status"] == "unknown"] == \
        ["mqtt-broker.version"]
    assert "unreachable" in f[("versions", "mqtt-broker.version")]["reason"]
    assert f[("topology", "mqtt.mes-line->erp")]["status"] == "unknown"
    assert f[("topology", "erp.scale")]["status"] == "allowed"  # declared scale-down
    assert f[("topology", "mes-line.fidelity")]["status"] == "allowed"
    assert f[("config", "erp-settings:server.workers")]["status"] == "allowed"
    assert f[("config", "erp-settings:integrations.wms.url")]["status"] == "allowed"
    assert doc["counts"]["drift"] == 0 and doc["blocking"] == 0
    schema = next(x for x in doc["layers"] if x["name"] == "schema")
    assert schema["counts"]["same"] > 50 and schema["status"] == "same"
    # secret values never leave the machine's memory: not in the output, not in parity.json
    for secret in ("prod-example-3f9a1c", "staging-wms-token-19cd"):
        assert secret not in r.stdout and secret not in json.dumps(doc)
    assert "erp.scale" in r.stdout and "allowed" in r.stdout


def test_each_planted_drift_is_found_in_its_layer_with_its_severity(tmp_path, production_db,
                                                                    running):
    def plant_drift(data):
        data["environments"]["staging"]["bindings"]["wms"]["scale"] = 2  # scale-up: tier 2

    # production was hot-fixed to 1.1.0 behind the spec's back: a different app version
    plant, prod = make_plant(tmp_path, production_db, erp_url=running("1.1.0"),
                             edit_spec=plant_drift)
    stage_cfg = plant / "config" / "staging"
    erp = yaml.safe_load((stage_cfg / "erp.yaml").read_text())
    erp["confirmations"]["late_tolerance_min"] = 60  # a changed config key
    erp["integrations"]["historian"] = {"url": "opc.tcp://historian.plant.invalid:4840"}
    (stage_cfg / "erp.yaml").write_text(yaml.safe_dump(erp))
    roles = yaml.safe_load((stage_cfg / "roles.yaml").read_text())
    roles["roles"]["operator"].append("inventory.adjust")  # an extra grant
    (stage_cfg / "roles.yaml").write_text(yaml.safe_dump(roles))
    # staging's database, missing an index production has
    stage_db = tmp_path / "staging.sqlite"
    shutil.copyfile(prod, stage_db)
    eng = sa.create_engine(f"sqlite:///{stage_db}")
    with eng.begin() as c:
        index = c.execute(sa.text("SELECT name, tbl_name FROM sqlite_master WHERE type='index' "
                                  "AND sql IS NOT NULL AND sql NOT LIKE '%UNIQUE%' "
                                  "ORDER BY name LIMIT 1")).one()
        cols = [r[2] for r in c.execute(sa.text(f"PRAGMA index_info('{index[0]}')"))]
        c.execute(sa.text(f'DROP INDEX "{index[0]}"'))
    eng.dispose()
    before = _sha(prod)
    r, doc = run_parity(plant, tmp_path / "out", "--staging-db", f"sqlite:///{stage_db}")
    assert r.returncode == 1, r.stdout + r.stderr
    assert _sha(prod) == before
    f = findings(doc)
    expect = {
        ("schema", f"index.{index[1]}({', '.join(cols)})"): "critical",
        ("config", "erp-settings:confirmations.late_tolerance_min"): "critical",
        ("access", "permissions.operator"): "critical",
        ("versions", "erp.version"): "critical",
        ("topology", "edge.erp->historian"): "critical",
        ("topology", "wms.scale"): "high",
    }
    for key, severity in expect.items():
        assert key in f, f"{key} not reported; got {sorted(k for k in f)}"
        assert f[key]["status"] == "drift", f[key]
        assert f[key]["severity"] == severity and f[key]["blocking"], f[key]
    assert f[("versions", "erp.version")]["production"] == "1.1.0"
    assert f[("versions", "erp.version")]["staging"] == "1.0.0"
    assert "undeclared edge" in f[("topology", "edge.erp->historian")]["reason"]
    assert "+inventory.adjust" in f[("access", "permissions.operator")]["reason"]
    # the declared scale-downs are still allowed, not drift
    assert f[("topology", "erp.scale")]["status"] == "allowed"
    assert f[("config", "erp-settings:database.pool_size")]["status"] == "allowed"
    assert "BLOCKING DRIFT" in r.stdout


def test_unreachable_service_and_unparsable_config_are_unknown(tmp_path, production_db):
    plant, _ = make_plant(tmp_path, production_db)  # production erp: erp.plant.invalid
    (plant / "config" / "staging" / "erp.yaml").write_text("server:\n  workers: [2\n")
    r, doc = run_parity(plant, tmp_path / "out")
    assert r.returncode == 1, r.stdout + r.stderr  # an unreadable config file blocks
    assert "BLOCKING UNKNOWN" in r.stdout
    f = findings(doc)
    # the example declares its fictional production app may be unknown: reported, not blocking
    version = f[("versions", "erp.version")]
    assert version["status"] == "unknown" and not version["blocking"]
    assert "unreachable" in version["reason"] and "may be unknown" in version["reason"]
    cfg = f[("config", "erp-settings")]
    assert cfg["status"] == "unknown" and "erp.yaml:" in cfg["reason"] and cfg["blocking"]
    assert not any(k[0] == "config" and k[1].startswith("erp-settings:") for k in f)
    edge = f[("topology", "edge.erp->")]
    assert edge["status"] == "unknown" and edge["blocking"]
    assert {(x["layer"], x["key"]) for x in f.values() if x["blocking"]} == \
        {("config", "erp-settings"), ("topology", "edge.erp->")}


def test_check_names_a_missing_parity_file_with_its_spec_line(tmp_path, production_db):
    def artifact_config(data):
        data["parity"]["config"][0]["staging"] = "{artifact}/erp.yaml"  # no such file

    plant, _ = make_plant(tmp_path, production_db, edit_spec=artifact_config)
    r = run_cli("check", str(plant))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout + r.stderr
    missing = [ln for ln in out.splitlines() if "parity.config[0].staging" in ln]
    # one line per release staging may rehearse: the path follows the release
    releases = yaml.safe_load((plant / "plantstage.yaml").read_text())["releases"]
    assert len(missing) == len(releases), out
    assert all(any(f"(release {rel['name']})" in ln for ln in missing) for rel in releases)
    assert all(f"{plant / 'plantstage.yaml'}:" in ln and "no such file" in ln
               for ln in missing), out


def test_bad_input_exits_2(tmp_path, production_db):
    plant, _ = make_plant(tmp_path, production_db, edit_spec=lambda d: d["parity"]["config"][0]
                          .update(component="erp-typo"))
    r = run_cli("parity", str(plant), "--out", str(tmp_path / "o1"))
    assert r.returncode == 2 and "parity.config[0].component" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("parity", str(EXAMPLE), "--between", "production", "production",
                "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "--between" in r.stderr


def test_nothing_readable_exits_2(tmp_path, production_db):
    def unreadable(data):
        data["environments"]["production"]["bindings"]["erp-db"]["url"] = \
            f"sqlite:///{tmp_path}/missing.sqlite"
        data["parity"]["config"] = []
        data["parity"].pop("roles")
        data["parity"].pop("network")
        for rel in data["releases"]:  # staging's artifact cannot be read either
            rel["artifact"]["path"] = "no-such-artifact"  # beside the spec
        data["environments"]["staging"]["bindings"]["erp-db"]["url"] = \
            f"sqlite:///{tmp_path}/missing-too.sqlite"
        data["environments"]["staging"]["bindings"]["erp"]["url"] = "http://127.0.0.1:9/"

    plant, _ = make_plant(tmp_path, production_db, edit_spec=unreadable)
    r, doc = run_parity(plant, tmp_path / "out")
    assert r.returncode == 2, r.stdout + r.stderr
    assert doc["counts"]["unknown"] > 0 and doc["exit_code"] == 2


@pytest.mark.slow
def test_rehearsal_with_blocking_drift_is_no_go_before_migrations(tmp_path, production_db):
    plant, _ = make_plant(tmp_path, production_db)
    env_file = plant / "config" / "staging" / "erp.env"
    env_file.write_text(env_file.read_text().replace("ERP_TIMEZONE=Europe/Berlin",
                                                     "ERP_TIMEZONE=UTC"))
    out = tmp_path / "run"
    r = run_cli("rehearse", str(plant), "--release", "1.1.0", "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    ev = json.loads((out / "evidence.json").read_text())
    steps = {s["name"]: s for s in ev["steps"]}
    assert ev["steps"][0]["name"] == "parity" and steps["parity"]["status"] == "failed"
    assert "erp-env:ERP_TIMEZONE" in steps["parity"]["error"]
    for name in ("provision", "migrate", "deploy"):
        assert steps[name]["status"] == "skipped"
    assert ev["verdict"] == "NO-GO" and ev["signals"]["parity.drift.blocking"] == 1
    assert not (out / "staging.sqlite").exists()
    html = (out / "report.html").read_text()
    assert html.index('id="verdict"') < html.index('id="parity"') < html.index("<h2>Gates")
    assert "ERP_TIMEZONE" in html


# -- PostgreSQL: a read-only production role; an extra grant in staging ----------------------
def _pg_admin(db: str = "postgres") -> sa.Engine:
    return sa.create_engine(f"postgresql+psycopg://root@127.0.0.1:5432/{db}",
                            isolation_level="AUTOCOMMIT")


@pytest.fixture
def pg_pair(tmp_path):
    names = [f"ps_parity_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    role = f"ps_parity_ro_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as c:
        for n in names:
            c.execute(sa.text(f'CREATE DATABASE "{n}"'))
        c.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        yield names, role
    finally:
        with admin.connect() as c:
            for n in names:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
            c.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@requires_postgres
def test_postgres_extra_grant_and_read_only_production(tmp_path, production_db, pg_pair):
    (prod_db, stage_db), role = pg_pair
    release = _release_copy(tmp_path, "1.0.0")
    for db in (prod_db, stage_db):
        p = subprocess.run([sys.executable, "-m", "sampleplant", "migrate", "upgrade", "head"],
                           cwd=release, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                "DATABASE_URL": f"postgresql://root@127.0.0.1:5432/{db}"})
        assert p.returncode == 0, p.stderr
        eng = _pg_admin(db)
        with eng.connect() as c:
            c.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
            if db == stage_db:
                c.execute(sa.text(f'GRANT DELETE ON inventory_ledger TO "{role}"'))
            else:
                c.execute(sa.text("INSERT INTO tenants (code, name, archetype) "
                                  "VALUES ('t1', 'T1', 'process')"))
        eng.dispose()

    def bind(data):
        data["environments"]["production"]["bindings"]["erp-db"]["url"] = \
            f"postgresql://{role}@127.0.0.1:5432/{prod_db}"

    plant, _ = make_plant(tmp_path, production_db, edit_spec=bind)
    from plantstage import engines

    watcher = sa.create_engine(f"postgresql+psycopg://root@127.0.0.1:5432/{prod_db}")
    before = engines.snapshot(watcher)
    r, doc = run_parity(plant, tmp_path / "out", "--staging-db",
                        f"postgresql://root@127.0.0.1:5432/{stage_db}")
    assert engines.snapshot(watcher) == before  # production's rows are untouched
    watcher.dispose()
    assert r.returncode == 1, r.stdout + r.stderr
    f = findings(doc)
    grant = f[("access", f"grant.erp-db:{role}.inventory_ledger")]
    assert grant["status"] == "drift" and grant["severity"] == "critical"
    assert grant["production"] == "SELECT" and grant["staging"] == "DELETE, SELECT"
    layers = {x["name"]: x for x in doc["layers"]}
    assert layers["schema"]["status"] == "same" and layers["schema"]["counts"]["same"] > 50
    assert layers["access"]["counts"]["unknown"] == 0
    head = [x for x in layers["versions"]["rows"] if x["key"].startswith("erp-db")]
    assert head == [] or all(x["status"] != "unknown" for x in head)


# -- the broker: topics in use, observed read-only ---------------------------------------------
class _Traffic:
    """Publishes on a declared and an undeclared topic (QoS 1, acknowledged) until stopped."""

    def __init__(self, host: str, port: int, topics: list[str]):
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"ps-parity-test-{uuid.uuid4().hex[:8]}")
        self.client.connect(host, port)
        self.client.loop_start()
        self.topics = topics
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for t in self.topics:
                self.client.publish(t, b'{"qty": 1}', qos=1).wait_for_publish(5)
                self.sent += 1
            self.stop.wait(0.05)

    def __enter__(self) -> _Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.client.loop_stop()
        self.client.disconnect()


def _broker_plant(tmp_path, production_db, url: str, prefix: str = "plant"):
    def bind(data):
        b = data["parity"]["broker"]
        b["production"] = b["staging"] = url
        b["topics"] = [{"from": "mes-line", "to": "erp",
                        "topics": [f"{prefix}/+/confirmations", f"{prefix}/+/confirmations/ack"]}]

    plant, prod = make_plant(tmp_path, production_db, edit_spec=bind)
    stage_db = tmp_path / "staging.sqlite"
    shutil.copyfile(prod, stage_db)
    return plant, stage_db


def test_undeclared_topic_on_embedded_broker_is_topology_drift(tmp_path, production_db):
    from plantstage.brokers import EmbeddedBroker

    broker = EmbeddedBroker().start()
    try:
        plant, stage_db = _broker_plant(tmp_path, production_db, broker.url)
        with _Traffic(broker.host, broker.port, ["plant/acme-discrete/confirmations",
                                                 "plant/acme-discrete/recalls"]) as traffic:
            r, doc = run_parity(plant, tmp_path / "out", "--staging-db",
                                f"sqlite:///{stage_db}", "--broker-window", "1")
        # parity only listened: every message the broker received is one the test sent
        assert broker.messages_in == traffic.sent
    finally:
        broker.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    f = findings(doc)
    drift = f[("topology", "mqtt.topic:plant/acme-discrete/recalls")]
    assert drift["status"] == "drift" and drift["severity"] == "critical" and drift["blocking"]
    assert "undeclared topic" in drift["reason"]
    assert f[("topology", "mqtt.mes-line->erp")]["status"] == "same"
    # the embedded broker has no $SYS tree: its version is unknown, never "same"
    assert f[("versions", "mqtt-broker.version")]["status"] == "unknown"
    assert not [k for k, row in f.items() if row["status"] == "drift"
                and k[1] != "mqtt.topic:plant/acme-discrete/recalls"]


@requires_mosquitto
def test_undeclared_topic_on_mosquitto_is_topology_drift(tmp_path, production_db):
    # Other test runs share this Mosquitto: our topics carry their own prefix, and only
    # findings about them are asserted.
    prefix = f"ps-parity-{uuid.uuid4().hex[:8]}"
    plant, stage_db = _broker_plant(tmp_path, production_db, "mqtt://127.0.0.1:1883", prefix)
    with _Traffic("127.0.0.1", 1883, [f"{prefix}/t1/confirmations", f"{prefix}/t1/scrap"]):
        r, doc = run_parity(plant, tmp_path / "out", "--staging-db", f"sqlite:///{stage_db}",
                            "--broker-window", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    f = findings(doc)
    drift = f[("topology", f"mqtt.topic:{prefix}/t1/scrap")]
    assert drift["status"] == "drift" and drift["severity"] == "critical"
    assert f[("topology", "mqtt.mes-line->erp")]["status"] == "same"
    version = f[("versions", "mqtt-broker.version")]
    assert version["status"] == "same" and "mosquitto" in version["production"]


# -- MariaDB: an extra grant in staging; production opened read-only ----------------------------
def _my_admin() -> sa.Engine:
    return sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")


@pytest.fixture
def my_pair():
    tag = uuid.uuid4().hex[:8]
    dbs = (f"ps_parity_{tag}_prod", f"ps_parity_{tag}_stage")
    user = f"ps_parity_{tag}"
    admin = _my_admin()
    with admin.connect() as c:
        for n in dbs:
            c.execute(sa.text(f"CREATE DATABASE `{n}`"))
        c.execute(sa.text(f"CREATE USER '{user}'@'%'"))
    try:
        yield dbs, user
    finally:
        with admin.connect() as c:
            for n in dbs:
                c.execute(sa.text(f"DROP DATABASE IF EXISTS `{n}`"))
            c.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()


@requires_mariadb
def test_mariadb_extra_grant_and_read_only_production(tmp_path, production_db, my_pair):
    from plantstage import engines
    from plantstage.errors import ProductionWriteError

    (prod_db, stage_db), user = my_pair
    release = _release_copy(tmp_path, "1.0.0")
    for db in (prod_db, stage_db):
        p = subprocess.run([sys.executable, "-m", "sampleplant", "migrate", "upgrade", "head"],
                           cwd=release, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                                "DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{db}"})
        assert p.returncode == 0, p.stderr
    admin = _my_admin()
    with admin.connect() as c:
        for db in (prod_db, stage_db):
            c.execute(sa.text(f"GRANT SELECT ON `{db}`.* TO '{user}'@'%'"))
        c.execute(sa.text(f"GRANT DELETE ON `{stage_db}`.inventory_ledger TO '{user}'@'%'"))
        c.execute(sa.text(f"INSERT INTO `{prod_db}`.tenants (code, name, archetype) "
                          f"VALUES ('t1', 'T1', 'process')"))
    admin.dispose()
    prod_url = f"mysql://root@127.0.0.1:3306/{prod_db}"

    def bind(data):
        data["environments"]["production"]["bindings"]["erp-db"]["url"] = prod_url

    plant, _ = make_plant(tmp_path, production_db, edit_spec=bind)
    watcher = sa.create_engine(f"mysql+pymysql://root@127.0.0.1:3306/{prod_db}")
    before = engines.snapshot(watcher)
    r, doc = run_parity(plant, tmp_path / "out", "--staging-db",
                        f"mysql://root@127.0.0.1:3306/{stage_db}")
    assert engines.snapshot(watcher) == before  # production's rows are untouched
    watcher.dispose()
    assert r.returncode == 1, r.stdout + r.stderr
    f = findings(doc)
    grantee = f"'{user}'@'%'"
    extra = f[("access", f"grant.erp-db:{grantee}.inventory_ledger")]
    assert extra["status"] == "drift" and extra["severity"] == "critical" and extra["blocking"]
    assert extra["production"] is None and extra["staging"] == "DELETE"
    assert f[("access", f"grant.erp-db:{grantee}.*")]["status"] == "same"
    assert f[("access", f"grant.erp-db:{grantee}.*")]["production"] == "SELECT"
    layers = {x["name"]: x for x in doc["layers"]}
    assert layers["schema"]["status"] == "same" and layers["schema"]["counts"]["same"] > 50
    assert layers["access"]["counts"]["unknown"] == 0
    versions = [row for k, row in f.items() if k[0] == "versions"]
    assert ("versions", "erp-db.migration_head") in f, versions
    assert f[("versions", "erp-db.migration_head")]["status"] == "same"
    # The session itself is read-only, not just the statement guard: a write sent straight
    # through the driver is refused by MariaDB.
    ro = engines.connect_production(prod_url)
    try:
        with ro.connect() as c, pytest.raises(ProductionWriteError):
            c.execute(sa.text("DELETE FROM tenants"))
        raw = ro.raw_connection()
        try:
            with pytest.raises(Exception, match="READ ONLY"):
                raw.cursor().execute("DELETE FROM tenants")
        finally:
            raw.close()
    finally:
        ro.dispose()
