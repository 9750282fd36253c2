"""Masked refresh vs PostgreSQL's own unmasked copy, on the same ≥1M-row database, same run.

    .venv/bin/python benchmarks/refresh.py [--scale 1.0] [--repeat 3]
                                           [--url postgresql://root@127.0.0.1:5432]

1. builds a production-like sample-plant database on PostgreSQL (schema by release 1.0.0's
   migrations, rows by ``generate_series`` — about 1.3 M rows over 12 tables at scale 1);
2. copies it unmasked with ``pg_dump -Fc | pg_restore`` (the peer: what a user would run);
3. refreshes it with plantstage using the sample plant's masking rules (schema from the
   source, rows masked in transit, COPY in, then the verification: row counts, foreign keys,
   leak scan);
4. times both sides without creating the empty target database (DROP/CREATE DATABASE waits
   for a checkpoint of whatever the previous run left dirty, seconds that depend on the
   machine, not on the copy) and, separately, with it;
5. repeats ``--repeat`` times, alternating which side goes first (the machine is shared:
   load drifts, and both sides should see the same drift), and prints each run, the medians
   (rows/s of both, the masked/unmasked ratio) and plantstage's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sample-plant"
sys.path.insert(0, str(ROOT / "src"))

from plantstage import engines  # noqa: E402
from plantstage.data import refresh_database  # noqa: E402
from plantstage.spec.loader import load_spec  # noqa: E402
from plantstage.spec.masking import SchemaSource  # noqa: E402

FILL = """
INSERT INTO tenants (id, code, name, archetype)
  SELECT g, 'tenant-' || g, 'Tenant Company ' || g, 'high-volume-discrete'
  FROM generate_series(1, 4) g;
INSERT INTO items (id, tenant_id, code, name, kind, unit_cost, unit_price)
  SELECT g, 1 + g % 4, 'IT-' || g, 'Item ' || g, 'raw', (g % 900) + 1.25, (g % 900) * 1.6 + 2
  FROM generate_series(1, {items}) g;
INSERT INTO bom_lines (id, tenant_id, parent_item_id, component_item_id, qty_per)
  SELECT g, 1 + g % 4, 1 + g % {items}, 1 + (g + 4) % {items}, 1 + g % 5
  FROM generate_series(1, {bom}) g;
INSERT INTO customers (id, tenant_id, code, name, email, phone, credit_limit)
  SELECT g, 1 + g % 4, 'C' || g, 'Customer Holding ' || g || ' GmbH',
         'buyer' || g || '@customer' || (g % 97) || '.com',
         '(0' || (g % 90 + 10) || ') ' || lpad((g * 7919 % 10000000)::text, 7, '0'),
         (g % 50 + 1) * 1000
  FROM generate_series(1, {customers}) g;
INSERT INTO suppliers (id, tenant_id, code, name, contact_name, email, phone)
  SELECT g, 1 + g % 4, 'S' || g, 'Supplier Works ' || g, 'Contact Person ' || g,
         'sales' || g || '@supplier' || (g % 89) || '.com',
         '+49 30 ' || lpad((g * 104729 % 10000000)::text, 7, '0')
  FROM generate_series(1, {suppliers}) g;
INSERT INTO supplier_items (supplier_id, item_id, price)
  SELECT 1 + g % {suppliers}, 1 + g % {items}, (g % 500) + 0.99
  FROM generate_series(1, {supplier_items}) g ON CONFLICT DO NOTHING;
INSERT INTO work_orders (id, tenant_id, number, item_id, qty, qty_done, status, created_at)
  SELECT g, 1 + g % 4, 'WO-' || g, 1 + g % {items}, 100, 100, 'closed',
         timestamp '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, {work_orders}) g;
INSERT INTO production_confirmations (id, tenant_id, message_id, work_order_id, good_qty,
                                      scrap_qty, sent_at, posted_at)
  SELECT g, 1 + g % 4, 'MES-' || g, 1 + (g - 1) % {work_orders}, 50, 1,
         timestamp '2024-01-01' + g * interval '1 minute',
         timestamp '2024-01-01' + g * interval '1 minute' + interval '30 seconds'
  FROM generate_series(1, {confirmations}) g;
INSERT INTO inventory_ledger (id, tenant_id, item_id, qty, source, ref, created_at)
  SELECT g, 1 + g % 4, 1 + g % {items}, (g % 21) - 10, 'confirmation', 'MES-' || g,
         timestamp '2024-01-01' + g * interval '20 seconds'
  FROM generate_series(1, {ledger}) g;
INSERT INTO on_hand (tenant_id, item_id, qty)
  SELECT 1 + g % 4, g, 100 FROM generate_series(1, {items}) g;
INSERT INTO sales_orders (id, tenant_id, external_ref, customer_id, status, created_at)
  SELECT g, 1 + g % 4, 'PO-' || g, 1 + g % {customers}, 'shipped',
         timestamp '2024-01-01' + g * interval '3 minutes'
  FROM generate_series(1, {orders}) g;
INSERT INTO sales_order_lines (id, order_id, item_id, qty, unit_price, reserved_qty)
  SELECT g, 1 + g % {orders}, 1 + g % {items}, 1 + g % 9, (g % 700) + 3.5, 0
  FROM generate_series(1, {lines}) g;
"""


def sizes(scale: float) -> dict[str, int]:
    base = {"items": 20_000, "bom": 30_000, "customers": 50_000, "suppliers": 10_000,
            "supplier_items": 60_000, "work_orders": 200_000, "confirmations": 200_000,
            "ledger": 500_000, "orders": 50_000, "lines": 150_000}
    return {k: max(10, int(v * scale)) for k, v in base.items()}


def admin(server: str) -> sa.Engine:
    return sa.create_engine(engines.normalize_url(server + "/postgres"),
                            isolation_level="AUTOCOMMIT")


def recreate(server: str, name: str) -> str:
    with admin(server).connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return f"{server}/{name}"


def build(url: str, scale: float) -> int:
    env = dict(os.environ, DATABASE_URL=url)
    subprocess.run([sys.executable, "-m", "sampleplant", "migrate", "upgrade", "head"],
                   cwd=EXAMPLE / "releases" / "1.0.0", env=env, check=True, capture_output=True)
    eng = sa.create_engine(engines.normalize_url(url))
    with eng.begin() as c:
        for stmt in FILL.format(**sizes(scale)).split(";"):
            if stmt.strip():
                c.exec_driver_sql(stmt.replace("%", "%%"))
    with eng.connect() as c:
        tables = [t for t in sa.inspect(eng).get_table_names() if t != "alembic_version"]
        rows = sum(c.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar() for t in tables)
    eng.dispose()
    print(f"production: {rows:,} rows over {len(tables)} tables")
    return rows


def pg_copy(src: str, dst: str) -> float:
    u_src, u_dst = sa.engine.make_url(src), sa.engine.make_url(dst)
    env = dict(os.environ, PGHOST=u_src.host or "127.0.0.1", PGPORT=str(u_src.port or 5432),
               PGUSER=u_src.username or "root")
    t0 = time.perf_counter()
    dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0", "-d", u_src.database], env=env,
                            stdout=subprocess.PIPE)
    subprocess.run(["pg_restore", "--no-owner", "-d", u_dst.database], env=env,
                   stdin=dump.stdout, check=True)
    dump.stdout.close()
    if dump.wait() != 0:
        raise SystemExit("pg_dump failed")
    return time.perf_counter() - t0


def ours_copy(prod: str, server: str) -> tuple[float, float, object]:
    """Seconds in all, of which creating the (empty) target database, and the result."""
    spec = load_spec(EXAMPLE).spec.refresh
    spec = spec.model_copy(update={"schema_from": SchemaSource.source})
    target = engines.adapter_for(f"{server}/ps_bench_masked")
    create, spent = target.create, [0.0]

    def timed_create() -> None:
        t = time.perf_counter()
        create()
        spent[0] += time.perf_counter() - t

    target.create = timed_create  # type: ignore[method-assign]
    t0 = time.perf_counter()
    result = refresh_database(prod, target, spec, key=b"benchmark-key-0123456789abcdef",
                              key_source="benchmark")
    return time.perf_counter() - t0, spent[0], result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--url", default="postgresql://root@127.0.0.1:5432")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of both sides (alternating which goes first); medians reported")
    args = ap.parse_args()
    prod = recreate(args.url, "ps_bench_prod")
    rows = build(prod, args.scale)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    runs = []
    for i in range(args.repeat):
        # Alternate the order: on a shared machine, load drifts; both sides see the same drift.
        order = ("peer", "ours") if i % 2 == 0 else ("ours", "peer")
        got: dict[str, tuple[float, float]] = {}
        for side in order:
            if side == "peer":
                t0 = time.perf_counter()
                peer_db = recreate(args.url, "ps_bench_peer")
                created = time.perf_counter() - t0
                got["peer"] = (pg_copy(prod, peer_db), created)
            else:
                total, created, result = ours_copy(prod, args.url)
                assert result.ok and result.rows >= rows, result.as_dict()["signals"]
                got["ours"] = (total - created, created)
        (peer_s, peer_c), (ours_s, ours_c) = got["peer"], got["ours"]
        runs.append((peer_s, ours_s, peer_s / ours_s,
                     (peer_s + peer_c) / (ours_s + ours_c)))
        print(f"run {i + 1}: pg_dump|pg_restore {peer_s:6.2f} s  plantstage {ours_s:6.2f} s  "
              f"ratio {peer_s / ours_s:.2f}   (creating the empty database: {peer_c:.2f} s / "
              f"{ours_c:.2f} s; ratio with it {runs[-1][3]:.2f}; load "
              f"{os.getloadavg()[0]:.1f})", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The refresh's worker processes (and pg_dump / pg_restore): the largest one's peak.
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    peer_s = statistics.median(r[0] for r in runs)
    ours_s = statistics.median(r[1] for r in runs)
    ratio = statistics.median(r[2] for r in runs)
    ratio_created = statistics.median(r[3] for r in runs)
    ours, peer = rows / ours_s, rows / peer_s
    print(f"medians of {len(runs)} runs:")
    print(f"pg_dump | pg_restore (unmasked): {peer_s:6.2f} s  {peer:>10,.0f} rows/s")
    print(f"plantstage refresh (masked):     {ours_s:6.2f} s  {ours:>10,.0f} rows/s  "
          f"(incl. verification; {result.signals()['refresh.masked_columns']:.0f} columns "
          f"masked, leaks {sum(result.leaks.values())}, "
          f"{result.leak_values:,} sensitive values checked)")
    print(f"ratio masked/unmasked: {ratio:.2f}   (median of per-run ratios; goal ≥ 0.50; "
          "both sides without creating the empty database)")
    print(f"ratio with the empty database's creation timed on both sides: {ratio_created:.2f}")
    print(f"plantstage peak RSS: {peak_mb:.0f} MB (before the refresh: {rss0 / 1024:.0f} MB), "
          f"largest worker process {child_mb:.0f} MB (goal < 500 MB)")
    for name in ("ps_bench_prod", "ps_bench_peer", "ps_bench_masked"):
        with admin(args.url).connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
