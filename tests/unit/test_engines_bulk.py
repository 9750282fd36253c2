"""bulk_load per engine: COPY on PostgreSQL, executemany on SQLite and MariaDB."""

from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from plantstage import engines

ROWS = [(i, f"n{i}", Decimal(f"{i}.25"), datetime(2024, 1, 1, 8, i % 60)) for i in range(1, 301)]


def _roundtrip(url: str) -> None:
    adapter = engines.adapter_for(url)
    eng = adapter.engine()
    md = sa.MetaData()
    t = sa.Table("bulk_t", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(20)), sa.Column("price", sa.Numeric(12, 2)),
                 sa.Column("at", sa.DateTime))
    md.drop_all(eng)
    md.create_all(eng)
    try:
        with eng.begin() as c:
            adapter.bulk_load(c, t, ["id", "name", "price", "at"], ROWS)
        with eng.connect() as c:
            got = [tuple(r) for r in c.execute(sa.select(t).order_by(t.c.id))]
        assert got == ROWS
        adapter.after_bulk_load(eng, md)
        with eng.begin() as c:  # the key sequence moved past the loaded keys
            c.execute(t.insert().values(name="new", price=1, at=datetime(2024, 1, 2)))
    finally:
        md.drop_all(eng)
        eng.dispose()


def test_sqlite(tmp_path):
    _roundtrip(f"sqlite:///{tmp_path / 'b.db'}")


def test_postgresql(pg_database):
    _roundtrip(pg_database)


def test_mariadb(mariadb_database):
    _roundtrip(mariadb_database)


def test_refresh_marker_is_bookkeeping():
    assert "plantstage_refresh" in engines.MIGRATION_BOOKKEEPING


@pytest.mark.parametrize("stmt", ["COPY t FROM STDIN", "INSERT INTO t VALUES (1)"])
def test_production_refuses_writes(tmp_path, stmt):
    p = tmp_path / "p.db"
    sa.create_engine(f"sqlite:///{p}").connect().close()
    with pytest.raises(Exception):  # noqa: B017 - guard or read-only driver, either refuses
        with engines.connect_production(f"sqlite:///{p}").connect() as c:
            c.exec_driver_sql(stmt)
