"""Time `plantstage demo` end to end, as a new user runs it (the goal: under 60 s here).

    python benchmarks/demo.py [--runs 3]

The first run of a checkout also generates the sample plant's production database; that is
timed separately so the numbers say what each part costs. There is no peer tool that runs a
whole release rehearsal, so the comparison printed is against the goal.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    prod = ROOT / "examples" / "sample-plant" / ".plantstage" / "production.sqlite"
    if not prod.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c",
                        "from plantstage.spec.loader import load_spec; "
                        "from plantstage.verbs import prepare_production as p; "
                        "p(load_spec('examples/sample-plant'))"],
                       check=True)
        print(f"generate production database (first run only): {time.perf_counter() - t0:.1f} s")
    times = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "plantstage", "demo", "--out",
                                str(Path(tmp) / "run")], capture_output=True, text=True)
            dt = time.perf_counter() - t0
        verdict = "GO" if r.returncode == 0 else f"exit {r.returncode}"
        print(f"run {i + 1}: {dt:.1f} s ({verdict})")
        times.append(dt)
    med = statistics.median(times)
    print(f"plantstage demo: median {med:.1f} s over {len(times)} runs; goal {GOAL_S:.0f} s; "
          f"ratio to goal {med / GOAL_S:.2f}")


if __name__ == "__main__":
    main()
