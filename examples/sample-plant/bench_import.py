"""Measure sales-order import latency of two releases on a generated SQLite database.

    python bench_import.py [--releases 1.1.0 1.1.0-slow-import] [--requests 30]

Generates a scale-1.0 database in a temp dir, migrates it to head, starts each
release as a real server and posts 20-order x 10-line imports.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
TENANT = "acme-discrete"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(release: str, url: str, n: int) -> list[float]:
    env = dict(os.environ, DATABASE_URL=url, PYTHONDONTWRITEBYTECODE="1")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sampleplant", "serve", "--port", str(port)],
                            cwd=HERE / "releases" / release, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=60) as c:
            customers = [x["code"] for x in c.get(f"/api/{TENANT}/customers?limit=100").json()]
            finished = c.get(f"/api/{TENANT}/items?kind=finished&limit=100").json()
            items = [x["code"] for x in finished]
            times = []
            for r in range(n):
                orders = [{"external_ref": f"BENCH-{release}-{r}-{o}",
                           "customer_code": customers[(r * 20 + o) % len(customers)],
                           "lines": [{"item_code": items[(o * 10 + k + r) % len(items)],
                                      "qty": 3 + k, "unit_price": "12.50"} for k in range(10)]}
                          for o in range(20)]
                t0 = time.perf_counter()
                resp = c.post(f"/api/{TENANT}/sales-orders/import", json={"orders": orders})
                times.append(time.perf_counter() - t0)
                assert resp.json() == {"imported": 20, "lines": 200}, resp.text
            return times
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--releases", nargs="+", default=["1.1.0", "1.1.0-slow-import"])
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.db"
        url = f"sqlite:///{template}"
        subprocess.run([sys.executable, str(HERE / "generate.py"), "--url", url], check=True)
        subprocess.run([sys.executable, "-m", "sampleplant", "migrate", "upgrade", "head"],
                       cwd=HERE / "releases" / "1.1.0", check=True,
                       env=dict(os.environ, DATABASE_URL=url, PYTHONDONTWRITEBYTECODE="1"))
        p95 = {}
        for release in args.releases:
            db = Path(tmp) / f"{release}.db"
            shutil.copyfile(template, db)
            times = sorted(run(release, f"sqlite:///{db}", args.requests))
            p95[release] = times[max(0, int(round(0.95 * len(times))) - 1)]
            print(f"{release}: p50={statistics.median(times) * 1000:.0f}ms "
                  f"p95={p95[release] * 1000:.0f}ms over {len(times)} imports")
        if len(p95) == 2:
            a, b = args.releases
            print(f"p95 ratio {b}/{a} = {p95[b] / p95[a]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
