"""Tables whose foreign keys form a cycle (a customer's main contact, a contact's customer):
the refresh copies them without SQLAlchemy's cycle warning (it printed once per pass, four
times a refresh) and says the cycle once in its notes (SQLite, and real PostgreSQL)."""

from __future__ import annotations

import warnings

import sqlalchemy as sa

from plantstage import engines
from plantstage.data import refresh_database
from plantstage.spec.masking import RefreshSpec

CYCLE = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(40), main_contact_id INTEGER);
CREATE TABLE contacts (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                       phone VARCHAR(20));
{alter}
INSERT INTO customers VALUES (1, 'a', NULL), (2, 'b', NULL);
INSERT INTO contacts VALUES (10, 1, 'x'), (11, 2, 'y');
UPDATE customers SET main_contact_id = 10 + id - 1;
"""
FK = ("ALTER TABLE customers ADD CONSTRAINT customers_main_contact FOREIGN KEY "
      "(main_contact_id) REFERENCES contacts(id);")


def _spec() -> RefreshSpec:
    return RefreshSpec.model_validate({"schema": "source", "rules": {
        "customers": {"*": "keep", "name": "keep"}, "contacts": {"*": "keep", "phone": "keep"}}})


def _refresh_quietly(prod: str, stage) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = refresh_database(prod, stage, _spec(), key=b"k" * 32, key_source="test")
    assert result.ok, result.as_dict()
    assert not [w for w in caught if issubclass(w.category, sa.exc.SAWarning)], \
        [str(w.message) for w in caught]
    assert result.fk_violations == {}
    eng = stage.engine()
    try:
        with eng.connect() as c:
            assert c.execute(sa.text("SELECT COUNT(*) FROM customers c JOIN contacts k "
                                     "ON k.id = c.main_contact_id")).scalar() == 2
    finally:
        eng.dispose()
    return [n for n in result.notes if "cycle" in n]


def test_sqlite_cycle_is_copied_without_warnings_and_named_once(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "prod.db")
    # SQLite cannot ALTER a foreign key in: the cycle is declared in the first table.
    db.executescript(CYCLE.format(alter="").replace(
        "main_contact_id INTEGER)", "main_contact_id INTEGER REFERENCES contacts(id))"))
    db.commit()
    db.close()
    notes = _refresh_quietly(f"sqlite:///{tmp_path / 'prod.db'}",
                             engines.adapter_for(f"sqlite:///{tmp_path / 'stage.db'}"))
    assert notes == ["foreign keys in a cycle (contacts.customer_id → customers, "
                     "customers.main_contact_id → contacts): tables are copied in an order "
                     "that sets them aside; every foreign key is checked after the load"]


def test_postgresql_cycle_is_copied_without_warnings(pg_database):
    eng = sa.create_engine(engines.normalize_url(pg_database))
    with eng.begin() as c:
        c.exec_driver_sql(CYCLE.format(alter=FK))
    eng.dispose()
    stage = engines.adapter_for(f"{pg_database}_stage")
    try:
        assert len(_refresh_quietly(pg_database, stage)) == 1
    finally:
        stage.drop()
