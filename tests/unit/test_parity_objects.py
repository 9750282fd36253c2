"""Parity's schema layer compares sequences, views, functions, triggers, enum types and
extensions (real PostgreSQL, MariaDB and SQLite)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.data import refresh_database
from plantstage.parity._compare import compare_layer
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors import schema as sch
from plantstage.spec.parity import ParitySpec
from tests.unit.test_data_objects import KEY, MARIADB_SCHEMA, _spec, make_pg_production

NAMES = ("production", "staging")
TIERS = {"erp-db": 1}


@pytest.fixture
def pg_production(pg_database):
    return make_pg_production(pg_database)


def _facts(url: str) -> LayerFacts:
    out = LayerFacts("schema")
    eng = engines.connect_production(url)
    try:
        with eng.connect() as c:
            sch.reflect(c, out, "erp-db")
    finally:
        eng.dispose()
    return out


def _compare(prod: str, stage: str):
    found, notes = compare_layer("schema", _facts(prod), _facts(stage), NAMES, ParitySpec(),
                                 TIERS)
    return {f.key: f for f in found}, notes


def _exec(url: str, *sql: str) -> None:
    eng = sa.create_engine(engines.normalize_url(url))
    try:
        with eng.begin() as c:
            for s in sql:
                c.exec_driver_sql(s)
    finally:
        eng.dispose()


def test_postgresql_objects_same_after_refresh_then_drift(pg_production):
    prod, ext = pg_production
    stage = engines.adapter_for(f"{prod}_stage")
    try:
        assert refresh_database(prod, stage, _spec(), key=KEY, key_source="test").ok
        url = stage.app_url()
        found, _ = _compare(prod, url)
        objects = {k: f for k, f in found.items()
                   if k.split(".")[0] in ("sequence", "view", "function", "trigger", "enum",
                                          "extension")}
        assert len(objects) >= 12
        assert {f.status for f in objects.values()} == {"same"}, \
            [(f.key, f.reason) for f in objects.values() if f.status != "same"]
        assert found["sequence.ir_sequence_002"].production == "increment 5"
        assert found["sequence.orders_id_seq"].production == "increment 1, owned by orders.id"
        assert found["trigger.orders.orders_log"].production == \
            "after insert or update for each row execute orders_log"
        assert found[f"extension.{ext}"].status == "same"

        _exec(url, "DROP SEQUENCE ir_sequence_002",
              "ALTER SEQUENCE ir_sequence_003 INCREMENT BY 2",
              "CREATE OR REPLACE VIEW open_orders AS SELECT id, ref, total FROM orders",
              "CREATE OR REPLACE FUNCTION orders_number() RETURNS trigger LANGUAGE plpgsql "
              "AS $$ BEGIN RETURN NEW; END $$",
              "DROP TRIGGER orders_log ON orders",
              "ALTER TYPE order_state ADD VALUE 'cancelled'")
        found, _ = _compare(prod, url)
        missing = found["sequence.ir_sequence_002"]
        assert (missing.status, missing.reason, missing.blocking) == (
            "drift", "missing in staging", True)
        assert (missing.production, missing.staging) == ("increment 5", None)
        assert found["sequence.ir_sequence_003"].staging == "increment 2"
        for key in ("sequence.ir_sequence_003", "view.open_orders",
                    "function.orders_number()", "trigger.orders.orders_log",
                    "enum.order_state"):
            assert found[key].status == "drift", key
        assert found["enum.order_state"].staging == "draft, confirmed, done, cancelled"
        assert found["trigger.orders.orders_number"].status == "same"
    finally:
        stage.drop()


def test_sqlite_staging_has_no_sequences_a_note_not_drift(pg_production, tmp_path):
    prod, _ = pg_production
    lite = f"sqlite:///{tmp_path / 'stage.db'}"
    assert refresh_database(prod, engines.adapter_for(lite), _spec(), key=KEY,
                            key_source="test").ok
    found, notes = _compare(prod, lite)
    assert not any(k.startswith(("sequence.", "enum.", "extension.", "function."))
                   for k in found)
    assert any("sqlite has no sequences" in n for n in notes), notes
    # views and triggers exist on both engines: the ones SQLite lacks are drift
    assert found["view.open_orders"].reason == "missing in staging"


def test_sqlite_views_and_triggers(tmp_path):
    def make(name: str, trigger_body: str) -> str:
        c = sqlite3.connect(tmp_path / name)
        c.executescript(f"""
          CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT);
          CREATE TABLE log (id INTEGER PRIMARY KEY, item_id INTEGER);
          CREATE VIEW stocked AS SELECT id, qty FROM items WHERE qty > 0;
          CREATE TRIGGER items_log AFTER INSERT ON items BEGIN {trigger_body}; END;
        """)
        c.close()
        return f"sqlite:///{tmp_path / name}"

    a = make("a.db", "INSERT INTO log (item_id) VALUES (NEW.id)")
    b = make("b.db", "INSERT INTO log (item_id) VALUES (NEW.id)")
    c = make("c.db", "INSERT INTO log (item_id) VALUES (NEW.id + 1)")
    found, notes = _compare(a, b)
    assert found["view.stocked"].status == "same"
    assert found["trigger.items.items_log"].status == "same"
    assert found["trigger.items.items_log"].production.startswith("after insert for each row")
    assert notes == ["sqlite has no sequences, functions, enums, extensions — not compared"]
    found, _ = _compare(a, c)
    assert found["trigger.items.items_log"].status == "drift"


def test_sqlite_refresh_keeps_views_and_triggers(tmp_path):
    c = sqlite3.connect(tmp_path / "prod.db")
    c.executescript("""
      CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC);
      CREATE TABLE order_log (id INTEGER PRIMARY KEY, order_id INTEGER);
      CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 5;
      CREATE TRIGGER orders_log AFTER INSERT ON orders
        BEGIN INSERT INTO order_log (order_id) VALUES (NEW.id); END;
      INSERT INTO orders (total) VALUES (10), (3);
    """)
    c.commit()
    c.close()
    prod, stage = f"sqlite:///{tmp_path / 'prod.db'}", f"sqlite:///{tmp_path / 'stage.db'}"
    result = refresh_database(prod, engines.adapter_for(stage), _spec(), key=KEY,
                              key_source="test")
    assert result.ok, result.as_dict()
    found, _ = _compare(prod, stage)
    assert found["view.big_orders"].status == found["trigger.orders.orders_log"].status == "same"
    c = sqlite3.connect(tmp_path / "stage.db")
    assert c.execute("SELECT COUNT(*) FROM order_log").fetchone()[0] == 2  # not fired by the load
    c.execute("INSERT INTO orders (total) VALUES (8)")
    assert c.execute("SELECT COUNT(*) FROM order_log").fetchone()[0] == 3
    assert c.execute("SELECT COUNT(*) FROM big_orders").fetchone()[0] == 2
    c.close()


def test_mariadb_dropped_sequence_is_drift(mariadb_database):
    _exec(mariadb_database, *MARIADB_SCHEMA)
    stage = engines.adapter_for(mariadb_database + "_stage")
    try:
        assert refresh_database(mariadb_database, stage, _spec(), key=KEY,
                                key_source="test").ok
        url = stage.app_url()
        found, notes = _compare(mariadb_database, url)
        assert found["sequence.inv_numbers"].status == "same"
        assert found["view.big_orders"].status == "same"
        assert any("mysql has no enums, extensions" in n for n in notes), notes
        _exec(url, "DROP SEQUENCE inv_numbers", "DROP TRIGGER orders_log")
        found, _ = _compare(mariadb_database, url)
        f = found["sequence.inv_numbers"]
        assert (f.status, f.reason, f.production) == ("drift", "missing in staging",
                                                       "increment 10")
        assert found["trigger.orders.orders_log"].status == "drift"
    finally:
        stage.drop()
