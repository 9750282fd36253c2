"""The rollback drill's accounting by column: rows lost, values wiped and columns gone are
counted apart, on SQLite and PostgreSQL, from order-independent per-column fingerprints."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.rehearsal.steps.rollback import account

N = 450


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/staging.sqlite"
    else:
        url = request.getfixturevalue("pg_database")
    eng = engines.connect_staging(url)
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE orders (id integer primary key, lot varchar(20), "
                          "qty_done integer, price numeric(12, 3))"))
        c.execute(sa.text("INSERT INTO orders VALUES (:id, :lot, :q, :p)"),
                  [{"id": i, "lot": f"L{i % 37}", "q": i % 11, "p": f"{i}.250"}
                   for i in range(1, N + 1)])
        c.execute(sa.text("CREATE TABLE notes (id integer primary key, body varchar(40))"))
    yield eng
    eng.dispose()


def _snap(eng, old):
    present = engines.table_columns(eng)
    return engines.column_snapshot(
        eng, {t: [c for c in cs if c in present.get(t, [])] for t, cs in old.items()
              if t in present})


def _run(db, sql: list[str], *, setup: list[str] = ()):
    """Back up, apply ``setup`` (the release's upgrade), snapshot, apply ``sql`` (the
    rollback), snapshot, account."""
    old = engines.table_columns(db)
    backup = _snap(db, old)
    with db.begin() as c:
        for s in setup:
            c.execute(sa.text(s))
    before = _snap(db, old)
    with db.begin() as c:
        for s in sql:
            c.execute(sa.text(s))
    return account(before, _snap(db, old), old, reference=backup)


def test_clean_downgrade_loses_nothing(db):
    loss = _run(db, ["INSERT INTO notes VALUES (1, 'added by the old version')"])
    assert (loss["rows_lost"], loss["values_lost"], loss["columns_lost"]) == (0, 0, 0)
    assert loss["problems"] == []


def test_wiped_values_are_counted_not_zero(db):
    loss = _run(db, ["UPDATE orders SET lot = NULL"])
    assert (loss["rows_lost"], loss["values_lost"], loss["columns_lost"]) == (0, N, 0)
    assert [p["message"] for p in loss["problems"]] == [
        f"orders.lot: {N} values wiped on downgrade"]


def test_values_set_to_one_default_are_wiped_values(db):
    loss = _run(db, ["UPDATE orders SET qty_done = 0"])
    zeros = len([i for i in range(1, N + 1) if i % 11 == 0])
    assert loss["values_lost"] == N - zeros and loss["rows_lost"] == 0


def test_dropped_column_is_a_column_lost(db):
    loss = _run(db, ["ALTER TABLE orders DROP COLUMN qty_done"])
    assert (loss["rows_lost"], loss["values_lost"], loss["columns_lost"]) == (0, 0, 1)
    assert loss["problems"][0]["message"] == "column orders.qty_done missing after downgrade"


def test_renamed_column_not_renamed_back(db):
    loss = _run(db, [], setup=["ALTER TABLE orders RENAME COLUMN qty_done TO qty_good"])
    assert loss["columns_lost"] == 1 and loss["values_lost"] == 0
    assert loss["problems"][0]["message"] == (
        "column orders.qty_done missing after downgrade (the release renamed or dropped it)")


def test_renamed_column_renamed_back_keeps_its_values(db):
    loss = _run(db, ["ALTER TABLE orders RENAME COLUMN qty_good TO qty_done"],
                setup=["ALTER TABLE orders RENAME COLUMN qty_done TO qty_good"])
    assert loss["problems"] == []


def test_renamed_column_recreated_empty_is_values_not_restored(db):
    loss = _run(db, ["ALTER TABLE orders DROP COLUMN qty_good",
                     "ALTER TABLE orders ADD COLUMN qty_done integer"],
                setup=["ALTER TABLE orders RENAME COLUMN qty_done TO qty_good"])
    assert (loss["columns_lost"], loss["values_lost"]) == (0, N)
    assert "orders.qty_done: 450 values not restored by the downgrade" in \
        loss["problems"][0]["message"]


def test_lost_rows_are_rows_not_values(db):
    loss = _run(db, ["DELETE FROM orders WHERE id <= 100"])
    assert (loss["rows_lost"], loss["values_lost"], loss["columns_lost"]) == (100, 0, 0)
    assert loss["problems"][0]["message"] == (
        f"orders: 100 rows lost on downgrade ({N} → {N - 100} rows)")


def test_dropped_table_counts_rows_and_columns(db):
    loss = _run(db, ["DROP TABLE orders"])
    assert (loss["rows_lost"], loss["columns_lost"]) == (N, 4)
    assert loss["problems"][0]["message"] == f"table orders missing after downgrade ({N} rows)"


def test_values_moved_between_rows_fail_without_a_count(db):
    loss = _run(db, ["UPDATE orders SET lot = CASE WHEN id = 1 THEN 'L2' "
                     "WHEN id = 2 THEN 'L1' ELSE lot END"])
    assert loss["values_lost"] == 0 and loss["tables_changed"] == 1
    assert "rows changed on downgrade" in loss["problems"][0]["message"]


def test_fingerprints_do_not_depend_on_row_order(tmp_path):
    snaps = []
    for name, order in (("a", range(1, 50)), ("b", reversed(range(1, 50)))):
        eng = engines.connect_staging(f"sqlite:///{tmp_path}/{name}.sqlite")
        with eng.begin() as c:
            c.execute(sa.text("CREATE TABLE t (id integer primary key, v varchar(9))"))
            c.execute(sa.text("INSERT INTO t VALUES (:i, :v)"),
                      [{"i": i, "v": f"v{i % 7}"} for i in order])
        snaps.append(engines.column_snapshot(eng))
        eng.dispose()
    assert snaps[0] == snaps[1]


def test_values_missing_counts_a_change_inside_one_bucket():
    sketch = [0] * engines.SKETCH_BUCKETS
    sketch[3] = 2
    before = {"values": 2, "digest": "01", "sketch": sketch}
    assert engines.values_missing(before, {**before, "digest": "02"}) == 1
    assert engines.values_missing(before, dict(before)) == 0


def test_drill_without_a_verified_backup_restores_nothing_and_says_why():
    from types import SimpleNamespace

    from plantstage.rehearsal.steps.rollback import RollbackDrill

    ctx = SimpleNamespace(staging_db=object(), backup_snapshot=None, failed_steps=["backup"])
    out = RollbackDrill().run(ctx)
    assert "the backup did not verify" in out["skipped"]
    ctx.failed_steps = []
    assert "no backup was taken" in RollbackDrill().run(ctx)["skipped"]
