"""Subsets are referentially complete: self-referencing BOMs, composite keys, cycles, relations."""

from datetime import datetime

import pytest
import sqlalchemy as sa

from plantstage.data._subset import plan_subset
from plantstage.spec.masking import Subset

pytestmark = pytest.mark.filterwarnings("ignore:Cannot correctly sort tables")

DDL = """
CREATE TABLE tenants (id INTEGER PRIMARY KEY, code TEXT UNIQUE);
CREATE TABLE parts (id INTEGER PRIMARY KEY, tenant_id INTEGER REFERENCES tenants(id),
                    parent_id INTEGER REFERENCES parts(id), made TIMESTAMP);
CREATE TABLE stock (tenant_id INTEGER REFERENCES tenants(id), part_id INTEGER REFERENCES parts(id),
                    qty INTEGER, PRIMARY KEY (tenant_id, part_id));
CREATE TABLE moves (id INTEGER PRIMARY KEY, tenant_id INTEGER, part_id INTEGER,
                    ref TEXT,
                    FOREIGN KEY (tenant_id, part_id) REFERENCES stock(tenant_id, part_id));
CREATE TABLE a (id INTEGER PRIMARY KEY, tenant_id INTEGER REFERENCES tenants(id),
                b_id INTEGER REFERENCES b(id));
CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id));
CREATE TABLE docs (id INTEGER PRIMARY KEY, tenant_id INTEGER REFERENCES tenants(id),
                   number TEXT);
"""
ROWS = """
INSERT INTO tenants VALUES (1, 'one'), (2, 'two');
INSERT INTO parts VALUES (1, 1, NULL, '2024-01-01'), (2, 1, 1, '2024-06-01'),
  (3, 1, 2, '2024-06-02'), (4, 2, NULL, '2024-06-03');
INSERT INTO stock VALUES (1, 1, 5), (1, 3, 7), (2, 4, 9);
INSERT INTO moves VALUES (1, 1, 3, 'D-1'), (2, 2, 4, NULL), (3, 1, 1, 'D-9');
INSERT INTO a VALUES (1, 1, 1), (2, 2, 2);
INSERT INTO b VALUES (1, 2), (2, 2);
INSERT INTO docs VALUES (1, 2, 'D-1'), (2, 1, 'D-2');
"""


def db(tmp_path) -> tuple[sa.Engine, sa.MetaData, list[str]]:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with eng.begin() as c:
        for stmt in (DDL + ROWS).split(";"):
            if stmt.strip():
                c.exec_driver_sql(stmt)
    md = sa.MetaData()
    md.reflect(eng)
    return eng, md, [t.name for t in md.sorted_tables]


def test_tenant_subset_is_complete_through_cycles_and_relations(tmp_path):
    eng, md, tables = db(tmp_path)
    plan = plan_subset(eng, md, tables, Subset.model_validate(
        {"tenants": {"codes": ["one"]},
         "relations": [{"from": "moves.ref", "to": "docs.number"}]}))
    assert plan.keep["parts"] == {(1,), (2,), (3,)}
    assert plan.keep["stock"] == {(1, 1), (1, 3)}  # composite key
    assert plan.keep["moves"] == {(1,), (3,)}  # follows its composite parent
    # a(1) of tenant one needs b(1), which needs a(2) of tenant two: the cycle is closed.
    assert plan.keep["a"] == {(1,), (2,)} and plan.keep["b"] == {(1,), (2,)}
    assert plan.keep["tenants"] == {(1,), (2,)}  # a(2) belongs to tenant two
    # the relation pulls doc 'D-1' (tenant two) in; 'D-9' dangles and is ignored
    assert (1,) in plan.keep["docs"]


def test_parents_are_kept_for_a_date_window(tmp_path):
    eng, md, tables = db(tmp_path)
    plan = plan_subset(eng, md, tables, Subset.model_validate(
        {"window": {"since": datetime(2024, 6, 2), "columns": {"parts": "made"}}}))
    # parts 3 and 4 are in the window; 3's BOM ancestors 2 and 1 come with it
    assert plan.keep["parts"] == {(1,), (2,), (3,), (4,)}
    only_new = plan_subset(eng, md, tables, Subset.model_validate(
        {"window": {"since": datetime(2024, 6, 3), "columns": {"parts": "made"}}}))
    assert (3,) not in only_new.keep["parts"] and (4,) in only_new.keep["parts"]
    # stock rows follow kept parts only: (1,3) references part 3, not kept; moves follow stock
    assert only_new.keep["stock"] == {(2, 4)}
    assert only_new.keep["moves"] == {(2,)}


def test_every_kept_reference_resolves(tmp_path):
    eng, md, tables = db(tmp_path)
    plan = plan_subset(eng, md, tables, Subset.model_validate({"tenants": {"codes": ["two"]}}))
    with eng.connect() as c:
        for t in tables:
            for fkc in md.tables[t].foreign_key_constraints:
                cols = [x.name for x in fkc.columns]
                pcols = tuple(e.column.name for e in fkc.elements)
                parent = fkc.referred_table.name
                pkeys = plan.keep[parent]
                assert pcols == plan.identity[parent]
                ident = plan.identity[t]
                for row in c.execute(sa.select(md.tables[t])).mappings():
                    if tuple(row[i] for i in ident) in plan.keep[t]:
                        vals = tuple(row[x] for x in cols)
                        assert None in vals or vals in pkeys, (t, vals)
