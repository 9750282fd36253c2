"""Refresh keeps every database object the app needs: sequences with their values, views,
functions and triggers, enum types, extensions (real PostgreSQL and MariaDB)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.data import refresh_database
from plantstage.engines.objects import read_objects
from plantstage.spec.masking import RefreshSpec

KEY = b"k" * 32


def _extension(url: str) -> str | None:
    eng = sa.create_engine(engines.normalize_url(url))
    try:
        with eng.connect() as c:
            names = {r[0] for r in c.execute(sa.text(
                "SELECT name FROM pg_available_extensions WHERE name IN ('citext', 'pgcrypto')"))}
    finally:
        eng.dispose()
    return "citext" if "citext" in names else ("pgcrypto" if names else None)


PG_SCHEMA = """
CREATE TYPE order_state AS ENUM ('draft', 'confirmed', 'done');
CREATE SEQUENCE ir_sequence_001;
CREATE SEQUENCE ir_sequence_002 INCREMENT BY 5;
CREATE SEQUENCE ir_sequence_003 START 1000;
CREATE TABLE orders (id serial PRIMARY KEY, ref text, state order_state NOT NULL DEFAULT 'draft',
                     code {code_type}, total numeric(12,2));
CREATE TABLE order_log (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES orders(id),
                        state order_state NOT NULL);
CREATE FUNCTION orders_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.ref IS NULL THEN
    NEW.ref := 'SO/' || lpad(nextval('ir_sequence_001')::text, 5, '0');
  END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION orders_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO order_log (order_id, state) VALUES (NEW.id, NEW.state);
  RETURN NULL;
END $$;
CREATE TRIGGER orders_number BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_number();
CREATE TRIGGER orders_log AFTER INSERT OR UPDATE ON orders
  FOR EACH ROW EXECUTE FUNCTION orders_log();
CREATE VIEW open_orders AS SELECT id, ref, total FROM orders WHERE state <> 'done';
INSERT INTO orders (state, code, total) VALUES ('draft', 'A1', 10), ('done', 'B2', 20.5),
                                               ('confirmed', 'C3', 7);
SELECT setval('ir_sequence_001', 42);
SELECT nextval('ir_sequence_002'), nextval('ir_sequence_002'), nextval('ir_sequence_002');
"""


def _exec(url: str, sql: str) -> None:
    eng = sa.create_engine(engines.normalize_url(url))
    try:
        with eng.begin() as c:
            c.exec_driver_sql(sql)
    finally:
        eng.dispose()


def _objects(url: str) -> dict[str, str]:
    eng = engines.connect_production(url)
    try:
        with eng.connect() as c:
            return {o.key: o.value for o in read_objects(c)}
    finally:
        eng.dispose()


def make_pg_production(url: str) -> tuple[str, str]:
    """Fill a scratch PostgreSQL database with the objects above; (url, extension)."""
    ext = _extension(url)
    if ext is None:
        pytest.skip("neither citext nor pgcrypto is available on this server")
    code_type = "citext" if ext == "citext" else "text"
    _exec(url, f'CREATE EXTENSION "{ext}";' + PG_SCHEMA.format(code_type=code_type))
    return url, ext


def _next_values(url: str) -> dict[str, int]:
    eng = engines.connect_production(url)
    try:
        with eng.connect() as c:
            return {o.name: o.detail["next"] for o in read_objects(c) if o.kind == "sequence"}
    finally:
        eng.dispose()


@pytest.fixture
def pg_production(pg_database):
    return make_pg_production(pg_database)


def _spec() -> RefreshSpec:
    return RefreshSpec.model_validate({"schema": "source", "rules": {
        "orders": {"*": "keep"}, "order_log": {"*": "keep"}}})


def test_postgresql_refresh_keeps_every_object_and_sequence_values(pg_production):
    prod, ext = pg_production
    stage = engines.adapter_for(f"{prod}_stage")
    try:
        values = _next_values(prod)
        result = refresh_database(prod, stage, _spec(), key=KEY, key_source="test")
        assert result.ok, result.as_dict()
        assert _next_values(prod) == values  # production untouched (pg_dump only reads)
        assert _next_values(stage.app_url()) == values
        assert any("pg_dump --schema-only" in n for n in result.notes), result.notes
        before, after = _objects(prod), _objects(stage.app_url())
        assert after == before  # same keys, same increments, definitions, labels, versions
        for key in ("sequence.ir_sequence_001", "sequence.ir_sequence_002",
                    "sequence.ir_sequence_003", "view.open_orders", "function.orders_number()",
                    "trigger.orders.orders_number", "trigger.orders.orders_log",
                    "enum.order_state", f"extension.{ext}"):
            assert key in after, key
        assert after["enum.order_state"] == "draft, confirmed, done"
        eng = stage.engine()
        try:
            with eng.begin() as c:
                # triggers were created after the load: the log holds production's 3 rows,
                # not 3 more written by the load
                assert c.execute(sa.text("SELECT COUNT(*) FROM order_log")).scalar() == 3
                nxt = [c.execute(sa.text(f"SELECT nextval('ir_sequence_00{i}')")).scalar()
                       for i in (1, 2, 3)]
                assert nxt == [43, 16, 1000]  # what production would hand out next
                c.execute(sa.text("SELECT setval('ir_sequence_001', 42)"))
                # the app's insert goes through the trigger function on staging
                row = c.execute(sa.text("INSERT INTO orders (state, code, total) VALUES "
                                        "('confirmed', 'D4', 1) RETURNING id, ref")).one()
                assert row == (4, "SO/00043")  # owned sequence past production's keys
                assert c.execute(sa.text("SELECT COUNT(*) FROM order_log")).scalar() == 4
                assert c.execute(sa.text("SELECT COUNT(*) FROM open_orders")).scalar() == 3
        finally:
            eng.dispose()
    finally:
        stage.drop()


def test_without_pg_dump_the_catalogue_carries_the_objects(pg_production, monkeypatch):
    from plantstage.engines import postgresql

    real = postgresql.shutil.which
    monkeypatch.setattr(postgresql.shutil, "which",
                        lambda name: None if name == "pg_dump" else real(name))
    prod, _ = pg_production
    stage = engines.adapter_for(f"{prod}_stage")
    try:
        result = refresh_database(prod, stage, _spec(), key=KEY, key_source="test")
        assert result.ok, result.as_dict()
        assert any("not pg_dump" in n and "pg_dump not found" in n
                   for n in result.notes), result.notes
        assert _objects(stage.app_url()) == _objects(prod)
        eng = stage.engine()
        try:
            with eng.begin() as c:
                assert c.execute(sa.text("SELECT COUNT(*) FROM order_log")).scalar() == 3
                row = c.execute(sa.text("INSERT INTO orders (state, code, total) VALUES "
                                        "('confirmed', 'D4', 1) RETURNING id, ref")).one()
                assert row == (4, "SO/00043")
                assert c.execute(sa.text("SELECT nextval('ir_sequence_002')")).scalar() == 16
        finally:
            eng.dispose()
    finally:
        stage.drop()


def test_postgresql_to_sqlite_names_what_it_cannot_carry(pg_production, tmp_path):
    prod, _ = pg_production
    stage = engines.adapter_for(f"sqlite:///{tmp_path / 'stage.db'}")
    result = refresh_database(prod, stage, _spec(), key=KEY, key_source="test")
    assert result.ok, result.as_dict()
    text = "\n".join(result.notes)
    assert "sqlite has no sequences: 3 standalone sequence(s) not carried" in text, text
    assert "ir_sequence_002" in text
    assert "view(s) not carried" in text and "open_orders" in text
    assert "trigger(s) not carried" in text and "function(s) not carried" in text


def test_postgresql_to_mariadb_carries_sequences_with_values(pg_production, mariadb_database):
    prod, _ = pg_production
    stage = engines.adapter_for(mariadb_database)
    result = refresh_database(prod, stage, _spec(), key=KEY, key_source="test")
    assert result.ok, result.as_dict()
    eng = stage.engine()
    try:
        with eng.connect() as c:
            nxt = [c.execute(sa.text(f"SELECT NEXTVAL(ir_sequence_00{i})")).scalar()
                   for i in (1, 2, 3)]
    finally:
        eng.dispose()
    assert nxt == [43, 16, 1000]
    assert any("view(s) not carried" in n for n in result.notes), result.notes


MARIADB_SCHEMA = [
    "CREATE SEQUENCE doc_numbers START WITH 1 INCREMENT BY 1 CACHE 0",
    "CREATE SEQUENCE inv_numbers START WITH 500 INCREMENT BY 10 CACHE 0",
    "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, ref VARCHAR(20), total DECIMAL(12,2))",
    "CREATE TABLE order_log (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT NOT NULL)",
    "CREATE TRIGGER orders_number BEFORE INSERT ON orders FOR EACH ROW "
    "SET NEW.ref = COALESCE(NEW.ref, CONCAT('SO/', NEXTVAL(doc_numbers)))",
    "CREATE TRIGGER orders_log AFTER INSERT ON orders FOR EACH ROW "
    "INSERT INTO order_log (order_id) VALUES (NEW.id)",
    "CREATE VIEW big_orders AS SELECT id, ref FROM orders WHERE total > 5",
    "CREATE FUNCTION doubled(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "INSERT INTO orders (total) VALUES (10), (3)",
    "SELECT SETVAL(doc_numbers, 77)",
    "SELECT NEXTVAL(inv_numbers)",
]


def test_mariadb_refresh_keeps_sequences_views_and_triggers(mariadb_database):
    eng = sa.create_engine(engines.normalize_url(mariadb_database))
    with eng.begin() as c:
        for sql in MARIADB_SCHEMA:
            c.exec_driver_sql(sql)
    eng.dispose()
    stage = engines.adapter_for(mariadb_database.rsplit("/", 1)[0]
                                + f"/ps_test_{uuid.uuid4().hex[:8]}")
    try:
        result = refresh_database(mariadb_database, stage, _spec(), key=KEY, key_source="test")
        assert result.ok, result.as_dict()
        before, after = _objects(mariadb_database), _objects(stage.app_url())
        assert after == before
        assert {"sequence.doc_numbers", "sequence.inv_numbers", "view.big_orders",
                "trigger.orders.orders_number", "trigger.orders.orders_log"} <= set(after)
        assert any(k.startswith("function.doubled(x int") for k in after), after
        eng = stage.engine()
        try:
            with eng.begin() as c:
                assert c.execute(sa.text("SELECT COUNT(*) FROM order_log")).scalar() == 2
                assert c.execute(sa.text("SELECT NEXTVAL(inv_numbers)")).scalar() == 510
                c.execute(sa.text("INSERT INTO orders (total) VALUES (9)"))
                assert c.execute(sa.text("SELECT ref FROM orders WHERE total = 9")).scalar() \
                    == "SO/78"
                assert c.execute(sa.text("SELECT COUNT(*) FROM big_orders")).scalar() == 2
                assert c.execute(sa.text("SELECT doubled(21)")).scalar() == 42
        finally:
            eng.dispose()
    finally:
        stage.drop()
