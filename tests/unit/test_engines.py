import sqlite3

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.errors import EngineError, ProductionWriteError


def _make_sqlite(path):
    db = sqlite3.connect(path)
    db.executescript("""
      CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT NOT NULL, price NUMERIC(12,2));
      CREATE TABLE ledger (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id),
                           qty INTEGER);
      INSERT INTO items VALUES (1, 'A', 1.50), (2, 'B', 2.00);
      INSERT INTO ledger VALUES (1, 1, 5), (2, 1, -2), (3, 2, 7);
    """)
    db.commit()
    db.close()


def test_production_sqlite_refuses_writes(tmp_path):
    path = tmp_path / "prod.db"
    _make_sqlite(path)
    eng = engines.connect_production(f"sqlite:///{path}")
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM ledger")).scalar() == 3
        with pytest.raises(ProductionWriteError):
            c.execute(sa.text("DELETE FROM ledger"))
    # Below the guard, the connection itself is read-only (mode=ro).
    raw = eng.raw_connection()
    try:
        with pytest.raises(sqlite3.OperationalError):
            raw.cursor().execute("DELETE FROM ledger")
    finally:
        raw.close()
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 3


def test_missing_production_file(tmp_path):
    with pytest.raises(EngineError):
        engines.connect_production(f"sqlite:///{tmp_path}/none.db")


def test_same_database_detection(tmp_path):
    a = f"sqlite:///{tmp_path}/a.db"
    assert engines.same_database(a, f"sqlite:///{tmp_path}/./a.db")
    assert not engines.same_database(a, f"sqlite:///{tmp_path}/b.db")


def test_snapshot_detects_lost_rows(tmp_path):
    path = tmp_path / "s.db"
    _make_sqlite(path)
    eng = engines.connect_staging(f"sqlite:///{path}")
    before = engines.snapshot(eng)
    with eng.begin() as c:
        c.execute(sa.text("DELETE FROM ledger WHERE id = 3"))
    diffs = engines.compare_snapshots(before, engines.snapshot(eng))
    assert diffs == [{"table": "ledger", "before": 3, "after": 2, "lost": 1, "changed": True}]


def test_unsupported_engine():
    with pytest.raises(EngineError):
        engines.adapter_for("oracle://h/db")


def test_sqlite_backup_and_restore(tmp_path):
    path = tmp_path / "s.db"
    _make_sqlite(path)
    adapter = engines.adapter_for(f"sqlite:///{path}")
    backup = adapter.backup(tmp_path)
    eng = adapter.engine()
    before = engines.snapshot(eng)
    with eng.begin() as c:
        c.execute(sa.text("DELETE FROM ledger"))
    eng.dispose()
    adapter.restore(backup)
    assert engines.compare_snapshots(before, engines.snapshot(adapter.engine())) == []


def test_production_postgresql_is_read_only(pg_database):
    rw = engines.connect_staging(pg_database)
    with rw.begin() as c:
        c.execute(sa.text("CREATE TABLE t (id int primary key)"))
        c.execute(sa.text("INSERT INTO t VALUES (1)"))
    rw.dispose()
    ro = engines.connect_production(pg_database)
    with ro.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM t")).scalar() == 1
        with pytest.raises(ProductionWriteError):
            c.execute(sa.text("INSERT INTO t VALUES (2)"))
    # The session itself is read-only too.
    raw = ro.raw_connection()
    try:
        with pytest.raises(Exception, match="read-only"):
            raw.cursor().execute("INSERT INTO t VALUES (3)")
    finally:
        raw.close()
    ro.dispose()


def test_copy_rows_sqlite_to_postgresql(tmp_path, pg_database):
    path = tmp_path / "p.db"
    _make_sqlite(path)
    src = engines.connect_production(f"sqlite:///{path}")
    dst = engines.connect_staging(pg_database)
    md = sa.MetaData()
    sa.Table("items", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("code", sa.String, nullable=False), sa.Column("price", sa.Numeric(12, 2)))
    sa.Table("ledger", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("item_id", sa.ForeignKey("items.id")), sa.Column("qty", sa.Integer))
    md.create_all(dst)
    counts = engines.copy_rows(src, dst)
    assert counts == {"items": 2, "ledger": 3}
    assert engines.compare_snapshots(engines.snapshot(src), engines.snapshot(dst)) == []
    with dst.begin() as c:  # sequences moved past the copied keys
        c.execute(sa.text("INSERT INTO ledger (item_id, qty) VALUES (1, 1)"))
    dst.dispose()


def test_migration_bookkeeping_by_name_and_by_shape():
    md = sa.MetaData()
    head = sa.Table("migration_head", md, sa.Column("version_num", sa.String(32), primary_key=True))
    rel = sa.Table("releases", md, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("version", sa.String(20)))
    assert engines.is_bookkeeping("flyway_schema_history")
    assert engines.is_bookkeeping("migration_head", head)  # any tool's one-column head table
    assert engines.is_bookkeeping("x", ["revision"])
    assert not engines.is_bookkeeping("releases", rel)
    assert not engines.is_bookkeeping("items", ["id", "name"])


def test_sqlite_readonly_engine_serves_many_threads_and_survives_dispose(tmp_path):
    """Flows read staging from many threads at once while the run may dispose the engine."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    import sqlalchemy as sa

    from plantstage.engines import adapter_for

    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (x INTEGER)")
        c.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    engine = adapter_for(f"sqlite:///{db}").readonly_engine()
    assert isinstance(engine.pool, sa.pool.NullPool)

    def read(i: int) -> int:
        with engine.connect() as conn:
            if i == 20:
                engine.dispose()  # what closing the run's resources does mid-phase
            return conn.execute(sa.text("SELECT SUM(x) FROM t")).scalar_one()

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(read, range(64))) == {sum(range(1000))}
