"""Generate a production-like sampleplant database.

    python generate.py --url sqlite:////abs/plant.db [--tenants 4] [--seed 7] [--scale 1.0]

The schema is created by release 1.0.0's own migrations, then every table is
filled in one transaction with Core executemany inserts. Output is
deterministic for a given seed; invariants (on_hand == SUM(ledger), one
'confirmation' ledger row per message) hold by construction.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from faker import Faker
from sqlalchemy import MetaData, create_engine, event, inspect, text

HERE = Path(__file__).resolve().parent
BASE_RELEASE = HERE / "releases" / "1.0.0"
EPOCH = datetime(2024, 1, 2, 6, 0, 0)

# code, name, archetype,
#   finished/component/raw item counts, work orders, sales orders, typical work-order size
TENANTS = [
    ("acme-discrete", "Acme Discrete Manufacturing", "high-volume-discrete",
     60, 120, 100, 1700, 380, (50, 400)),
    ("bluechem-process", "BlueChem Process Industries", "process",
     40, 60, 80, 950, 260, (500, 5000)),
    ("cobalt-multiplant", "Cobalt Multi-Plant Group", "multi-plant",
     55, 110, 95, 1250, 320, (20, 300)),
    ("delta-integrated", "Delta Integrated Systems", "heavily-integrated",
     45, 100, 85, 1100, 600, (10, 200)),
]
NOUNS = {
    "finished": ["Pump Assembly", "Valve Unit", "Gearbox", "Control Cabinet", "Drive Module",
                 "Sensor Kit", "Compressor", "Heat Exchanger", "Mixer", "Conveyor Section",
                 "Resin Blend", "Coating"],
    "component": ["Housing", "Shaft", "Impeller", "Bracket", "PCB", "Seal Set", "Rotor", "Stator",
                  "Flange", "Cable Harness", "Premix", "Base Solution"],
    "raw": ["Steel Sheet", "Aluminium Bar", "Copper Wire", "ABS Granulate", "Bolt M8", "O-Ring",
            "Epoxy", "Solvent", "Pigment", "Resistor", "Bearing", "Gasket Material"],
}
PREFIX = {"finished": "FG", "component": "CM", "raw": "RM"}


def normalize(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def money(value: float) -> Decimal:
    return Decimal(str(round(value, 2)))


class Rows:
    """Row buffers with explicit ids so that references need no round-trips."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict]] = defaultdict(list)

    def add(self, table: str, **row: object) -> int:
        rows = self.data[table]
        if "id" not in row and table not in ("supplier_items", "on_hand"):
            row["id"] = len(rows) + 1
        rows.append(row)
        return row.get("id", 0)  # type: ignore[return-value]


def build(n_tenants: int, seed: int, scale: float) -> Rows:
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rows = Rows()
    n_msg = 0

    def n(x: int, floor: int) -> int:
        return max(floor, int(round(x * scale)))

    for t_index, spec in enumerate(TENANTS[:n_tenants]):
        code, name, archetype, n_fg, n_cm, n_rm, n_wo, n_so, wo_size = spec
        tid = rows.add("tenants", code=code, name=name, archetype=archetype)
        balance: dict[int, int] = defaultdict(int)
        clock = EPOCH + timedelta(minutes=t_index * 7)

        def ledger(item_id: int, qty: int, source: str, ref: str | None, at: datetime,
                   tid: int = tid, balance: dict[int, int] = balance) -> None:
            rows.add("inventory_ledger", tenant_id=tid, item_id=item_id, qty=qty, source=source,
                     ref=ref, created_at=at)
            balance[item_id] += qty

        items: dict[str, list[int]] = {}
        cost: dict[int, float] = {}
        counts = (("raw", n(n_rm, 6)), ("component", n(n_cm, 6)), ("finished", n(n_fg, 4)))
        for kind, count in counts:
            items[kind] = []
            for i in range(count):
                base = {"raw": 2, "component": 15, "finished": 120}[kind] * rng.uniform(0.4, 4)
                iid = rows.add(
                    "items", tenant_id=tid, code=f"{PREFIX[kind]}-{10000 + i * 7 + t_index}",
                    name=f"{rng.choice(NOUNS[kind])} {fake.bothify('?##').upper()}", kind=kind,
                    unit_cost=money(base), unit_price=money(base * rng.uniform(1.2, 1.9)))
                items[kind].append(iid)
                cost[iid] = base
        bom: dict[int, list[tuple[int, int]]] = {}
        for parent_kind, child_kind, lo, hi, qmax in (("finished", "component", 2, 5, 4),
                                                     ("component", "raw", 1, 3, 6)):
            for parent in items[parent_kind]:
                bom[parent] = [(c, rng.randint(1, qmax))
                               for c in rng.sample(items[child_kind], rng.randint(lo, hi))]
                for child, qty_per in bom[parent]:
                    rows.add("bom_lines", tenant_id=tid, parent_item_id=parent,
                             component_item_id=child, qty_per=qty_per)
        customers = []
        for i in range(n(100, 5)):
            company = fake.company()
            customers.append(rows.add(
                "customers", tenant_id=tid, code=f"C{t_index + 1}{i + 1:04d}", name=company,
                email=fake.company_email(), phone=fake.phone_number(),
                credit_limit=money(rng.choice([5, 10, 25, 50, 100, 250]) * 1000)))
        for i in range(n(30, 3)):
            sid = rows.add("suppliers", tenant_id=tid, code=f"S{t_index + 1}{i + 1:03d}",
                           name=fake.company(), contact_name=fake.name(), email=fake.email(),
                           phone=fake.phone_number())
            for iid in rng.sample(items["raw"] + items["component"], 6):
                rows.add("supplier_items", supplier_id=sid, item_id=iid,
                         price=money(cost[iid] * rng.uniform(0.8, 1.1)))
        if rows.data["supplier_items"]:  # keep (supplier, item) unique
            uniq = {(r["supplier_id"], r["item_id"]): r for r in rows.data["supplier_items"]}
            rows.data["supplier_items"] = list(uniq.values())

        # production: work orders with their historic confirmations + backflush
        producible = items["finished"] + items["component"]
        for w in range(n(n_wo, 8)):
            clock += timedelta(minutes=rng.randint(20, 240))
            item_id = rng.choice(producible)
            qty = rng.randint(*wo_size)
            closed = rng.random() < 0.85
            number = f"WO-{t_index + 1}{w + 1:06d}"
            wo_id = rows.add("work_orders", tenant_id=tid, number=number, item_id=item_id, qty=qty,
                             qty_done=0, status="closed" if closed else "released",
                             created_at=clock)
            parts = rng.randint(1, 4) if closed else rng.randint(0, 2)
            remaining, done, sent = qty, 0, clock
            for p in range(parts):
                last = closed and p == parts - 1
                good = remaining if last else rng.randint(1, max(1, remaining // 2))
                remaining -= good
                done += good
                scrap = int(good * rng.uniform(0, 0.03))
                sent += timedelta(minutes=rng.randint(15, 600))
                n_msg += 1
                msg = f"MES-{seed:02d}-{rng.getrandbits(48):012x}-{n_msg:07d}"
                posted = sent + timedelta(seconds=rng.randint(1, 90))
                rows.add("production_confirmations", tenant_id=tid, message_id=msg,
                         work_order_id=wo_id, good_qty=good, scrap_qty=scrap, sent_at=sent,
                         posted_at=posted)
                ledger(item_id, good, "confirmation", msg, posted)
                for comp, qty_per in bom[item_id]:
                    ledger(comp, -qty_per * (good + scrap), "consumption", msg, posted)
            rows.data["work_orders"][-1]["qty_done"] = done

        # purchasing: receipts cover consumption (plus safety stock), spread over the year
        for iid in items["raw"] + items["component"]:
            need = max(0, -balance[iid]) + rng.randint(50, 2000)
            chunks = rng.randint(3, 14)
            for k in range(chunks):
                qty = need // chunks + (need % chunks if k == 0 else 0)
                at = EPOCH + timedelta(days=rng.randint(0, 300), minutes=rng.randint(0, 1440))
                ledger(iid, qty, "receipt", f"GRN-{t_index + 1}{rng.getrandbits(28):08d}", at)

        # sales: shipped orders consume finished stock, open orders reserve the rest
        open_lines: list[dict] = []
        prefix = "EDI850-" if archetype == "heavily-integrated" else "PO-"
        for o in range(n(n_so, 6)):
            at = EPOCH + timedelta(days=rng.randint(0, 330), minutes=rng.randint(0, 1440))
            status = rng.choices(["shipped", "open", "cancelled"], [70, 25, 5])[0]
            ref = f"{prefix}{t_index + 1}{o + 1:06d}"
            oid = rows.add("sales_orders", tenant_id=tid, external_ref=ref,
                           customer_id=rng.choice(customers), status=status, created_at=at)
            n_lines = rng.randint(1, min(5, len(items["finished"])))
            for iid in rng.sample(items["finished"], n_lines):
                qty = rng.randint(1, max(2, wo_size[1] // 4))
                if status == "shipped":
                    qty = min(qty, max(1, balance[iid]))
                    if balance[iid] >= qty:
                        ledger(iid, -qty, "shipment", ref, at + timedelta(days=2))
                rows.add("sales_order_lines", order_id=oid, item_id=iid, qty=qty,
                         unit_price=money(cost[iid] * rng.uniform(1.3, 1.8)), reserved_qty=0)
                if status == "open":
                    open_lines.append(rows.data["sales_order_lines"][-1])

        # cycle counts
        for _ in range(n(60, 3)):
            iid = rng.choice(items["raw"] + items["component"])
            delta = rng.randint(-5, 5) or 1
            if balance[iid] + delta >= 0:
                at = EPOCH + timedelta(days=rng.randint(0, 330))
                ledger(iid, delta, "adjustment", "cycle count", at)
        # open orders reserve what is left on hand, first come first served
        reserved: dict[int, int] = defaultdict(int)
        for line in open_lines:
            iid = line["item_id"]
            line["reserved_qty"] = max(0, min(line["qty"], balance[iid] - reserved[iid]))
            reserved[iid] += line["reserved_qty"]
        for iid, qty in sorted(balance.items()):
            rows.add("on_hand", tenant_id=tid, item_id=iid, qty=qty)
    return rows


ORDER = ["tenants", "items", "bom_lines", "customers", "suppliers", "supplier_items",
         "work_orders", "production_confirmations", "inventory_ledger", "on_hand", "sales_orders",
         "sales_order_lines"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--tenants", type=int, default=4, choices=range(1, len(TENANTS) + 1))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    url = normalize(args.url)
    engine = create_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: object, _rec: object) -> None:
            for pragma in ("busy_timeout=10000", "journal_mode=WAL", "foreign_keys=ON"):
                dbapi_conn.execute(f"PRAGMA {pragma}")  # type: ignore[attr-defined]
    try:
        existing = inspect(engine).get_table_names()
    except Exception as exc:
        print(f"generate: error: cannot connect: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if existing:
        print(f"generate: error: target database is not empty ({len(existing)} tables, "
              f"e.g. {existing[0]})", file=sys.stderr)
        return 2
    env = dict(os.environ, DATABASE_URL=args.url, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "sampleplant", "migrate", "upgrade", "head"],
                          cwd=BASE_RELEASE, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"generate: error: migration failed: {proc.stderr.strip()}", file=sys.stderr)
        return 1
    rows = build(args.tenants, args.seed, args.scale)
    meta = MetaData()
    meta.reflect(engine, only=ORDER)
    with engine.begin() as conn:
        for table in ORDER:
            if rows.data[table]:
                conn.execute(meta.tables[table].insert(), rows.data[table])
        if engine.dialect.name == "postgresql":
            for table in ORDER:
                if "id" in meta.tables[table].c:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                      f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"))
    engine.dispose()
    counts = " ".join(f"{t}={len(rows.data[t])}" for t in ORDER)
    print(f"generated {counts} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
