"""1.1.0's lot backfill, as a vendor ships it: a throttled pass over the inventory ledger after
the schema upgrade, batch by batch, paced so that the whole pass takes ``--seconds``.

Made slow on purpose (the sample's ledger is small): it stands for an ERP data step that runs
for minutes, so a rehearsal proves a step longer than 300 s runs to its end under the step's
own timeout (600 s in the spec). It reads every ledger row and changes nothing, so the stock
per tenant and item stays as the reconcile check expects.

    python lot_backfill.py --seconds 310        (DATABASE_URL names the database)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import sqlalchemy as sa


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=310.0, help="how long the pass takes")
    ap.add_argument("--batch", type=int, default=200, help="ledger rows per batch")
    args = ap.parse_args(argv)
    engine = sa.create_engine(os.environ["DATABASE_URL"])
    start = time.monotonic()
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT COUNT(*) FROM inventory_ledger")).scalar() or 0
        batches = max(1, -(-total // args.batch))
        pause = args.seconds / batches
        last_id, done = 0, 0
        for n in range(1, batches + 1):
            rows = conn.execute(sa.text(
                "SELECT id, lot_id FROM inventory_ledger WHERE id > :last ORDER BY id "
                "LIMIT :n"), {"last": last_id, "n": args.batch}).all()
            if rows:
                last_id = rows[-1][0]
                done += len(rows)
            # Pace the pass: batch n ends no earlier than n × pause seconds after the start.
            wait = start + n * pause - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if n % max(1, batches // 10) == 0 or n == batches:
                print(f"lot backfill: {done}/{total} ledger rows checked "
                      f"({time.monotonic() - start:.0f} s)", flush=True)
    print(f"lot backfill done: {done} ledger rows in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
