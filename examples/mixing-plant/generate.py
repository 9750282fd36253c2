"""Generate a production-like mixingplant database (SQLite), deterministically.

    python generate.py --url sqlite:////abs/production.sqlite [--seed 7] [--scale 1.0]

The schema is created by release 2.0.0's own migrations (``python -m mixingplant migrate up``),
then sites, materials, recipes with revisions, raw-material receipts, batches with their
consumption and stock adjustments are written in one transaction. The same seed gives the
same database, byte for byte in its rows. Invariants that hold by construction:

* ``stock.qty_g = SUM(material_ledger.qty_g)`` for every (site, material);
* each batch has exactly one ``produce`` row and its ``consume`` rows add up to it;
* no stock goes negative at the end;
* recipe codes repeat across revisions (R-…/1 retired, R-…/2 active), as in any plant that
  has changed a formula.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE_RELEASE = HERE / "releases" / "2.0.0"
EPOCH = datetime(2025, 3, 3, 6, 0, 0)

# code, name, country, finished paints, batches per finished paint
SITES = [
    ("gent", "Gent coatings plant", "BE", 70, 40),
    ("lyon", "Lyon decorative paints", "FR", 50, 35),
    ("porto", "Porto industrial coatings", "PT", 35, 30),
]
RAW = {
    "binder": ["Acrylic binder", "Alkyd resin", "Epoxy resin", "Polyurethane dispersion",
               "Vinyl acetate copolymer", "Styrene acrylic"],
    "pigment": ["Titanium dioxide", "Iron oxide red", "Iron oxide yellow", "Phthalo blue",
                "Phthalo green", "Carbon black", "Ultramarine", "Chrome-free orange"],
    "filler": ["Calcium carbonate", "Talc", "Kaolin", "Barium sulfate", "Silica"],
    "solvent": ["Water", "White spirit", "Butyl glycol", "Xylene", "Propylene glycol"],
    "additive": ["Dispersant", "Defoamer", "Thickener HEC", "Biocide", "Wetting agent",
                 "Coalescent", "Matting agent", "UV absorber"],
}
# share ranges (percent) of each component class in a paint
SHARES = {"binder": (18, 35), "pigment": (2, 22), "filler": (5, 25), "solvent": (15, 40),
          "additive": (0.2, 3)}
FINISHES = ["Matt", "Satin", "Gloss", "Eggshell", "Primer", "Topcoat", "Floor", "Facade"]
COLOURS = ["White", "Ivory", "Signal Red", "Ocean Blue", "Forest Green", "Anthracite",
           "Sand", "Sky", "Ochre", "Slate", "Terracotta", "Mint"]


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise SystemExit("generate.py: only sqlite:/// URLs are supported")
    return Path(url[len("sqlite:///"):])


def grams(rng: random.Random, low_kg: float, high_kg: float) -> int:
    return rng.randint(int(low_kg * 1000), int(high_kg * 1000))


def split(total: int, shares: list[int]) -> list[int]:
    # same rule as the app: round half-even, remainder to the largest share
    whole = sum(shares)
    parts = [round(total * s / whole) for s in shares]
    parts[shares.index(max(shares))] += total - sum(parts)
    return parts


def recipe_lines(rng: random.Random, raws: dict[str, list[str]]) -> list[tuple[str, int]]:
    """Components and shares in thousandths of a percent, adding up to exactly 100000."""
    picks = [("binder", 1), ("pigment", rng.randint(1, 2)), ("filler", 1), ("solvent", 1),
             ("additive", rng.randint(1, 3))]
    chosen: list[tuple[str, float]] = []
    for cls, n in picks:
        for code in rng.sample(raws[cls], n):
            chosen.append((code, rng.uniform(*SHARES[cls])))
    total = sum(s for _, s in chosen)
    milli = [max(1, int(s / total * 100000)) for _, s in chosen]
    milli[0] += 100000 - sum(milli)
    return [(code, m) for (code, _), m in zip(chosen, milli, strict=True)]


class Book:
    """One site's ledger rows and running balance per material."""

    def __init__(self, site: str, new_id: Callable[[], str]):
        self.site = site
        self.new_id = new_id
        self.rows: list[tuple] = []
        self.balance: dict[str, int] = defaultdict(int)

    def post(self, material: str, kind: str, qty: int, ref: str | None, when: str) -> None:
        self.rows.append((self.new_id(), self.site, material, kind, qty, ref, when))
        self.balance[material] += qty


def build(seed: int, scale: float) -> dict[str, list[tuple]]:
    rng = random.Random(seed)
    rows: dict[str, list[tuple]] = defaultdict(list)

    def new_id() -> str:
        return uuid.UUID(int=rng.getrandbits(128), version=4).hex

    def at(minutes: float) -> str:
        return (EPOCH + timedelta(minutes=minutes)).isoformat(timespec="seconds") + "+00:00"

    for site, name, country, n_finished, per_paint in SITES:
        rows["sites"].append((site, name, country))
        raws: dict[str, list[str]] = {}
        for cls, names in RAW.items():
            raws[cls] = []
            for i, label in enumerate(names, 1):
                code = f"RM-{cls[:3].upper()}-{i:02d}"
                raws[cls].append(code)
                rows["materials"].append((site, code, label, "raw"))
        book = Book(site, new_id)
        post, balance = book.post, book.balance

        finished = []
        for i in range(n_finished):
            code = f"FG-{i + 1:04d}"
            label = f"{rng.choice(COLOURS)} {rng.choice(FINISHES)} {rng.choice([1, 5, 10, 20])} L"
            rows["materials"].append((site, code, label, "finished"))
            finished.append(code)
            revisions = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
            for rev in range(1, revisions + 1):
                rid = f"{site}-R-{i + 1:04d}-{rev}"
                status = "active" if rev == revisions else "retired"
                rows["recipes"].append((rid, site, f"R-{code}", rev, code, status,
                                        at(-400 * 24 * 60 + rev * 60 * 24 * 30)))
                for n, (mat, milli) in enumerate(recipe_lines(rng, raws), 1):
                    rows["recipe_lines"].append((rid, n, site, mat, milli))
        active = {r[4]: r[0] for r in rows["recipes"] if r[1] == site and r[5] == "active"}
        lines_of: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for rid, _n, s, mat, milli in rows["recipe_lines"]:
            if s == site:
                lines_of[rid].append((mat, milli))

        # batches over ~120 days, in time order
        n_batches = int(len(finished) * per_paint * scale)
        minutes = sorted(rng.uniform(0, 120 * 24 * 60) for _ in range(n_batches))
        day_seq: dict[str, int] = defaultdict(int)
        consumed: dict[str, int] = defaultdict(int)
        batches = []
        for m in minutes:
            paint = rng.choice(finished)
            day = (EPOCH + timedelta(minutes=m)).strftime("%Y%m%d")
            day_seq[day] += 1
            batch_id = f"{site}-{day}-{day_seq[day]:04d}"
            qty = grams(rng, 250, 4000)
            rid = active[paint]
            when = at(m)
            batches.append((batch_id, site, rid, paint, qty, when, at(m + rng.uniform(0.1, 2))))
            comps = lines_of[rid]
            for (mat, _), part in zip(comps, split(qty, [x for _, x in comps]), strict=True):
                consumed[mat] += part
        # raw materials are received (in tanker / big-bag sizes) before they are used
        for cls in RAW:
            for mat in raws[cls]:
                need = consumed.get(mat, 0)
                received = 0
                while received < need * 1.15 + 500_000:
                    lot = grams(rng, 800, 24000)
                    post(mat, "receive", lot, f"PO-{site}-{rng.randint(10000, 99999)}",
                         at(rng.uniform(-30 * 24 * 60, 118 * 24 * 60)))
                    received += lot
        for b in batches:
            batch_id, _, rid, paint, qty, when, recorded = b
            rows["batches"].append(b)
            post(paint, "produce", qty, batch_id, recorded)
            comps = lines_of[rid]
            for (mat, _), part in zip(comps, split(qty, [x for _, x in comps]), strict=True):
                post(mat, "consume", -part, batch_id, recorded)
        # shipments are outside this app; count corrections are adjustments (±, in grams)
        for paint in finished:
            for _ in range(rng.randint(0, 4)):
                delta = rng.randint(-min(balance[paint], 40_000), 40_000)
                post(paint, "adjust", delta, "cycle count", at(rng.uniform(0, 120 * 24 * 60)))
        rows["material_ledger"].extend(book.rows)
        rows["stock"].extend((site, mat, qty) for mat, qty in sorted(balance.items()))
    return rows


ORDER = ["sites", "materials", "recipes", "recipe_lines", "batches", "material_ledger", "stock"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="sqlite:////absolute/path.sqlite")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    path = sqlite_path(args.url)
    t0 = time.perf_counter()
    if path.exists() and path.stat().st_size:
        with sqlite3.connect(path) as conn:
            if conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
                            ).fetchone()[0]:
                print(f"generate.py: {path} already has tables; remove it first",
                      file=sys.stderr)
                return 2
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-m", "mixingplant", "migrate", "up"], cwd=BASE_RELEASE,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    rows = build(args.seed, args.scale)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for table in ORDER:
            data = rows[table]
            marks = ", ".join("?" * len(data[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", data)
        conn.execute("COMMIT")
    finally:
        conn.close()
    counts = ", ".join(f"{t} {len(rows[t])}" for t in ORDER)
    print(f"generated {path} in {time.perf_counter() - t0:.1f} s: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
