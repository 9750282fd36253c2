"""A refresh from a PostgreSQL production whose read-only role may read the tables but not the
sequences (a common grant: SELECT on the tables only). The sequences' values cannot be read;
the refresh goes on: it creates each sequence, sets an owned one from its column's largest
value, leaves a standalone one at its start value, and says so in one warning line per
sequence naming it and the GRANT that would let it read the value (real PostgreSQL; the role is
created by the test and dropped after)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.data import refresh_database
from tests.unit.test_data_objects import KEY, _exec, _spec, make_pg_production


@pytest.fixture
def readonly_production(pg_database):
    """The objects of test_data_objects in a scratch database, read through a role that has
    SELECT on its tables only; yields (the role's URL, the role's name)."""
    prod, _ = make_pg_production(pg_database)
    role = f"ps_ro_{uuid.uuid4().hex[:8]}"
    db = prod.rsplit("/", 1)[1]
    _exec(prod, f'CREATE ROLE "{role}" LOGIN; GRANT CONNECT ON DATABASE "{db}" TO "{role}"; '
                f'GRANT USAGE ON SCHEMA public TO "{role}"; '
                f'GRANT SELECT ON TABLE orders, order_log, open_orders TO "{role}";')
    try:
        yield prod.replace("://root@", f"://{role}@"), role
    finally:
        _exec(prod, f'DROP OWNED BY "{role}"; DROP ROLE "{role}";')


@pytest.mark.parametrize("pg_dump", [True, False], ids=["pg_dump", "catalogue"])
def test_unreadable_sequences_are_created_set_from_their_column_and_named(
        readonly_production, pg_dump, monkeypatch):
    if not pg_dump:
        from plantstage.engines import postgresql

        real = postgresql.shutil.which
        monkeypatch.setattr(postgresql.shutil, "which",
                            lambda name: None if name == "pg_dump" else real(name))
    prod, role = readonly_production
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        _exec(prod, "SELECT last_value FROM ir_sequence_001")  # the role really cannot
    stage = engines.adapter_for(prod.replace(f"://{role}@", "://root@") + "_stage")
    try:
        result = refresh_database(prod, stage, _spec(), key=KEY, key_source="test")
        assert result.ok, result.as_dict()
        warnings = [n for n in result.notes if n.startswith("warning: ")]
        by_name = {w.split()[2].rstrip(":"): w for w in warnings}
        for name in ("public.ir_sequence_001", "public.ir_sequence_002",
                     "public.ir_sequence_003"):
            assert f"no SELECT on it for {role}" in by_name[name]
            assert "left at its start value (it has no owning column)" in by_name[name]
            assert by_name[name].endswith(f"(hint: GRANT SELECT ON SEQUENCE {name} TO {role})")
        if pg_dump:  # the owned ones are set from their columns after the load
            assert "set from MAX(orders.id) = 3: next value 4" in by_name["public.orders_id_seq"]
            assert "set from MAX(order_log.id) = 3" in by_name["public.order_log_id_seq"]
        eng = stage.engine()
        try:
            with eng.begin() as c:
                nxt = [c.execute(sa.text(f"SELECT nextval('ir_sequence_00{i}')")).scalar()
                       for i in (1, 2, 3)]
                assert nxt == [1, 1, 1000]  # start values: production's could not be read
                row = c.execute(sa.text("INSERT INTO orders (state, code, total) VALUES "
                                        "('confirmed', 'D4', 1) RETURNING id")).one()
                assert row == (4,)  # the owned sequence is past production's keys
        finally:
            eng.dispose()
    finally:
        stage.drop()
