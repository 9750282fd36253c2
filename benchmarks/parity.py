"""Schema parity of 500 tables / 5,000 columns: plantstage vs Alembic's compare_metadata.

Both tools do the same work in the same run: reflect a "production" and a "staging" SQLite
database (500 tables, 10 columns each, a foreign key and an index per table; staging misses one
index, has one changed column type and one changed column default) and report the
differences; column defaults are compared by both (Alembic with ``compare_server_default``).
plantstage's number is its whole schema layer (both reflections + comparison); Alembic's is
what a user scripts instead:
``MetaData.reflect`` on production, then ``compare_metadata`` against staging.

    .venv/bin/python benchmarks/parity.py [--tables 500]

Goal: plantstage under 10 s.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from plantstage.parity._compare import compare_layer
from plantstage.parity._model import LayerFacts
from plantstage.parity.collectors import schema
from plantstage.spec.parity import ParitySpec


def build(path: Path, tables: int, drift: bool) -> None:
    con = sqlite3.connect(path)
    stmts = []
    for t in range(tables):
        cols = ["id INTEGER PRIMARY KEY", "tenant_id INTEGER NOT NULL",
                f"parent_id INTEGER REFERENCES t{max(t - 1, 0):03d}(id)",
                "code VARCHAR(64) NOT NULL", "qty NUMERIC(12, 2) DEFAULT 0",
                "created_at DATETIME DEFAULT CURRENT_TIMESTAMP", "active BOOLEAN DEFAULT 1",
                "note TEXT", "ref VARCHAR(32) DEFAULT 'none'", "amount INTEGER"]
        if drift and t == tables // 2:
            cols[-1] = "amount BIGINT"
        if drift and t == tables // 3:
            cols[-2] = "ref VARCHAR(32) DEFAULT 'n/a'"
        stmts.append(f"CREATE TABLE t{t:03d} ({', '.join(cols)})")
        if not (drift and t == 7):
            stmts.append(f"CREATE INDEX ix_t{t:03d}_tenant ON t{t:03d} (tenant_id, code)")
    con.executescript(";\n".join(stmts) + ";")
    con.close()


def plantstage_schema(prod: str, stage: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    sides = []
    for url in (prod, stage):
        lf = LayerFacts("schema")
        eng = sa.create_engine(url)
        with eng.connect() as c:
            schema.reflect(c, lf, "db")
        eng.dispose()
        sides.append(lf)
    found, _ = compare_layer("schema", sides[0], sides[1], ("production", "staging"),
                             ParitySpec(), {"db": 1})
    drift = sum(1 for f in found if f.status == "drift")
    return time.perf_counter() - t0, drift


def alembic_compare(prod: str, stage: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    md = sa.MetaData()
    pe = sa.create_engine(prod)
    md.reflect(pe)
    se = sa.create_engine(stage)
    with se.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True,
                                                   "compare_server_default": True})
        diffs = compare_metadata(ctx, md)
    pe.dispose()
    se.dispose()
    return time.perf_counter() - t0, len(diffs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        p, s = Path(d) / "prod.db", Path(d) / "stage.db"
        build(p, args.tables, drift=False)
        build(s, args.tables, drift=True)
        prod, stage = f"sqlite:///{p}", f"sqlite:///{s}"
        ours, ours_n = plantstage_schema(prod, stage)
        theirs, theirs_n = alembic_compare(prod, stage)
    cols = args.tables * 10
    print(f"schema parity, {args.tables} tables / {cols} columns (SQLite vs SQLite)")
    print(f"  plantstage parity (schema layer): {ours:6.2f} s  ({ours_n} drift findings)")
    print(f"  alembic compare_metadata:         {theirs:6.2f} s  ({theirs_n} differences)")
    print(f"  ratio plantstage / alembic:       {ours / theirs:6.2f}")
    print(f"  goal < 10 s: {'met' if ours < 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
