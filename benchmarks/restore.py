"""plantstage's restore drill vs plain ``pg_restore -j N`` of the same dump, same run.

    .venv/bin/python benchmarks/restore.py [--scale 1.0] [--repeat 3]
                                           [--url postgresql://root@127.0.0.1:5432]

1. builds a PostgreSQL database of an order-processing shape by ``generate_series``: four
   tables (about 700 k rows at scale 1) with foreign keys, secondary indexes, a sequence per
   table, a view and a trigger;
2. dumps it once with ``pg_dump -Fc`` (what the backup step takes);
3. restores that dump as the rollback drill does — the staging adapter's ``restore(path)``:
   ``pg_restore --no-owner --exit-on-error -j N`` (N = ``os.cpu_count()``) into the empty
   database the backup step made ready (``prepare_restore``, untimed here as there), the old
   database dropped beside it, then the new one renamed — and, as the peer, the same dump with
   plain ``pg_restore -j N`` into a fresh database, both timed end to end;
4. before each side an untimed ``CHECKPOINT`` flushes what the previous one wrote (``DROP
   DATABASE`` checkpoints, and must not pay for the other side's pages);
5. the peer is timed twice: ``pg_restore`` alone into a database created beforehand (untimed:
   the strictest baseline) and ``dropdb --force; createdb; pg_restore`` (what a user runs in a
   drill, where the broken database must go first);
6. repeats ``--repeat`` times, alternating which side goes first (the machine is shared:
   load drifts, and both sides should see the same drift), and prints each run, the medians
   and the ratios; the goal is plantstage ÷ plain ≤ 1.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from plantstage import engines  # noqa: E402

SCHEMA = """
CREATE TABLE customers (id BIGSERIAL PRIMARY KEY, code TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                        email TEXT, credit_limit NUMERIC(12,2), created_at TIMESTAMP NOT NULL);
CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, customer_id BIGINT NOT NULL REFERENCES customers,
                     number TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
                     created_at TIMESTAMP NOT NULL);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_created ON orders (created_at);
CREATE TABLE order_lines (id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL REFERENCES orders,
                          item TEXT NOT NULL, qty INTEGER NOT NULL, unit_price NUMERIC(12,2));
CREATE INDEX order_lines_order ON order_lines (order_id);
CREATE INDEX order_lines_item ON order_lines (item);
CREATE TABLE order_events (id BIGSERIAL PRIMARY KEY, order_id BIGINT NOT NULL REFERENCES orders,
                           kind TEXT NOT NULL, payload TEXT, at TIMESTAMP NOT NULL);
CREATE INDEX order_events_order ON order_events (order_id, at);
CREATE VIEW open_orders AS SELECT id, number FROM orders WHERE status = 'open';
CREATE FUNCTION touch_order() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO order_events (order_id, kind, at) VALUES (NEW.id, 'created', now());
     RETURN NEW; END $$;
CREATE TRIGGER orders_created AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch_order();
"""

FILL = """
INSERT INTO customers (code, name, email, credit_limit, created_at)
  SELECT 'C' || g, 'Customer ' || g || ' Ltd', 'buyer' || g || '@example.com',
         (g % 50 + 1) * 1000, timestamp '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, {customers}) g;
ALTER TABLE orders DISABLE TRIGGER orders_created;
INSERT INTO orders (customer_id, number, status, created_at)
  SELECT 1 + g % {customers}, 'SO-' || g, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'shipped' END,
         timestamp '2024-01-01' + g * interval '30 seconds'
  FROM generate_series(1, {orders}) g;
ALTER TABLE orders ENABLE TRIGGER orders_created;
INSERT INTO order_lines (order_id, item, qty, unit_price)
  SELECT 1 + g % {orders}, 'IT-' || (g::bigint * 7919 % 20000), 1 + g % 9, (g % 700) + 3.5
  FROM generate_series(1, {lines}) g;
INSERT INTO order_events (order_id, kind, payload, at)
  SELECT 1 + g % {orders}, CASE WHEN g % 3 = 0 THEN 'shipped' ELSE 'picked' END,
         repeat('x', 40 + g % 60), timestamp '2024-01-01' + g * interval '10 seconds'
  FROM generate_series(1, {events}) g;
"""


def sizes(scale: float) -> dict[str, int]:
    base = {"customers": 50_000, "orders": 150_000, "lines": 300_000, "events": 200_000}
    return {k: max(10, int(v * scale)) for k, v in base.items()}


def admin(server: str) -> sa.Engine:
    return sa.create_engine(engines.normalize_url(server + "/postgres"),
                            isolation_level="AUTOCOMMIT")


def recreate(server: str, name: str) -> None:
    eng = admin(server)
    with eng.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()


def drop(server: str, name: str) -> None:
    eng = admin(server)
    with eng.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def checkpoint(server: str) -> None:
    """Flush what the previous side wrote (untimed): DROP DATABASE checkpoints, and must not
    pay for another side's dirty pages."""
    eng = admin(server)
    with eng.connect() as c:
        c.execute(sa.text("CHECKPOINT"))
    eng.dispose()


def build(url: str, scale: float) -> int:
    eng = sa.create_engine(engines.normalize_url(url))
    with eng.begin() as c:
        c.exec_driver_sql(SCHEMA)
        c.exec_driver_sql(FILL.format(**sizes(scale)).replace("%", "%%"))
    with eng.connect() as c:
        c.exec_driver_sql("ANALYZE")
        n = sum(c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("customers", "orders", "order_lines", "order_events"))
    eng.dispose()
    return n


def libpq_env(server: str) -> dict[str, str]:
    u = engines.normalize_url(server + "/postgres")
    env = dict(os.environ, PGHOST=u.host or "127.0.0.1", PGPORT=str(u.port or 5432))
    if u.username:
        env["PGUSER"] = u.username
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return env


def plain(server: str, name: str, dump: Path, jobs: int, *, with_create: bool) -> float:
    """The peer: plain ``pg_restore -j N`` of the dump into a fresh database."""
    env = libpq_env(server)
    if not with_create:
        recreate(server, name)
    t0 = time.perf_counter()
    if with_create:
        subprocess.run(["dropdb", "--force", "--if-exists", name], env=env, check=True)
        subprocess.run(["createdb", name], env=env, check=True)
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-j", str(jobs), "-d", name,
                    str(dump)], env=env, check=True)
    return time.perf_counter() - t0


def ours(server: str, name: str, dump: Path) -> float:
    """plantstage: the staging adapter's restore, as the rollback drill calls it."""
    adapter = engines.adapter_for(f"{server}/{name}")
    adapter.prepare_restore()  # untimed, as the peer's empty database (the backup step does it)
    t0 = time.perf_counter()
    returned = adapter.restore(dump)
    wall = time.perf_counter() - t0
    assert returned <= wall + 1e-3, (returned, wall)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--url", default="postgresql://root@127.0.0.1:5432",
                    help="the PostgreSQL server (no database name)")
    args = ap.parse_args()
    server = args.url.rstrip("/")
    jobs = max(1, os.cpu_count() or 1)
    src, dst_ps, dst_pg = "ps_bench_restore_src", "ps_bench_restore_ps", "ps_bench_restore_pg"
    recreate(server, src)
    t0 = time.perf_counter()
    rows = build(f"{server}/{src}", args.scale)
    print(f"built {rows:,} rows in 4 tables (scale {args.scale}) in "
          f"{time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        adapter = engines.adapter_for(f"{server}/{src}")
        t0 = time.perf_counter()
        dump = adapter.backup(Path(tmp))
        print(f"pg_dump -Fc: {dump.stat().st_size / 1e6:.1f} MB in "
              f"{time.perf_counter() - t0:.1f} s; pg_restore -j {jobs} (os.cpu_count())")
        recreate(server, dst_ps)  # the drill replaces a database that exists
        ps_times, pg_times, pg_full = [], [], []
        for i in range(args.repeat):
            sides = [("plantstage", lambda: ours(server, dst_ps, dump)),
                     ("pg_restore", lambda: plain(server, dst_pg, dump, jobs,
                                                  with_create=False)),
                     ("dropdb+createdb+pg_restore",
                      lambda: plain(server, dst_pg, dump, jobs, with_create=True))]
            if i % 2:
                sides.reverse()
            got = {}
            for label, fn in sides:
                checkpoint(server)
                got[label] = fn()
            ps_times.append(got["plantstage"])
            pg_times.append(got["pg_restore"])
            pg_full.append(got["dropdb+createdb+pg_restore"])
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in got.items())
                  + f"; ratio {got['plantstage'] / got['pg_restore']:.2f}x")
    ps, pg, full = (statistics.median(x) for x in (ps_times, pg_times, pg_full))
    print(f"median: plantstage restore {ps:.2f} s, pg_restore -j {jobs} {pg:.2f} s, "
          f"dropdb+createdb+pg_restore {full:.2f} s ({rows / ps:,.0f} rows/s)")
    paired = statistics.median(a / b for a, b in zip(ps_times, pg_times, strict=True))
    print(f"ratio plantstage / pg_restore: {ps / pg:.2f}x of the medians, {paired:.2f}x the "
          f"median of the runs' ratios (goal <= 1.1); "
          f"vs dropdb+createdb+pg_restore: {ps / full:.2f}x")
    for name in (src, dst_ps, dst_pg):
        drop(server, name)


if __name__ == "__main__":
    main()
