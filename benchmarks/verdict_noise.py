"""Does the verdict hold on a noisy machine? Rehearse the sample plant's good release several
times, and its defective releases, while bursty CPU burners load the machine as neighbours on a
shared CI runner do.

    python benchmarks/verdict_noise.py [--good-runs 5] [--burners 2] [--seed 1]
                                       [--defects 1.1.0-lost-at-switch,...|all]
                                       [--staging-db URL] [--json FILE] [--keep DIR]

Each burner is a separate process that spins one core for a random 3–10 s, then idles for a
random 3–10 s, and again (seeded: the same seed gives the same pattern). Steady load is not the
test: a busy neighbour that comes and goes is what moves one phase and not the other.

Prints one line per rehearsal (verdict, seconds, the gates that failed or could not decide) and
then ``good GO x/N, defects NO-GO y/M`` with the INCONCLUSIVE counts. Exit codes are read as
plantstage documents them: 0 GO, 1 NO-GO, 5 INCONCLUSIVE, anything else an error.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sample-plant"
GOOD = "1.1.0"
DEFECTS = ["1.1.0-lost-at-switch", "1.1.0-retry-storm", "1.1.0-renames-column"]
VERDICTS = {0: "GO", 1: "NO-GO", 5: "INCONCLUSIVE"}


def burn(seed: int, busy: tuple[float, float], idle: tuple[float, float]) -> None:
    """Spin one core for a random busy time, idle for a random idle time, forever."""
    rng = random.Random(seed)
    while True:
        end = time.perf_counter() + rng.uniform(*busy)
        x = 0
        while time.perf_counter() < end:
            for _ in range(10_000):
                x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        time.sleep(rng.uniform(*idle))


def all_defects() -> list[str]:
    import yaml

    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    return [r["name"] for r in spec["releases"] if r["name"].startswith(GOOD + "-")]


def rehearse(release: str, staging_db: str | None, keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if keep is not None:
            out = keep / f"{time.strftime('%H%M%S')}-{release}"
        cmd = [sys.executable, "-m", "plantstage", "rehearse", str(EXAMPLE), "--release",
               release, "--out", str(out)]
        if staging_db:
            cmd += ["--staging-db", staging_db]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - t0
        gates: dict[str, str] = {}
        try:
            ev = json.loads((out / "evidence.json").read_text())
            gates = {g["name"]: g["outcome"] for g in ev.get("gates", [])
                     if g["outcome"] != "pass"}
            failed_steps = [s["name"] for s in ev.get("steps", []) if s["status"] == "failed"]
        except (OSError, ValueError):
            failed_steps = []
    verdict = VERDICTS.get(r.returncode, f"error (exit {r.returncode})")
    detail = (r.stderr.strip().splitlines() or [""])[-1] if r.returncode not in VERDICTS else ""
    return {"release": release, "verdict": verdict, "seconds": round(seconds, 1),
            "gates": gates, "failed_steps": failed_steps, "detail": detail,
            "run": str(out) if keep is not None else None}


def line(i: str, res: dict) -> str:
    why = ", ".join(f"{n} {o}" for n, o in res["gates"].items())
    if res["failed_steps"]:
        why += (", " if why else "") + "steps failed: " + ", ".join(res["failed_steps"])
    return (f"{i:<28} {res['verdict']:<13} {res['seconds']:6.1f} s  {why or res['detail']}"
            .rstrip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--good-runs", type=int, default=5)
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--defects", default=",".join(DEFECTS),
                    help="comma-separated defective releases, or 'all' (every 1.1.0-* release)")
    ap.add_argument("--staging-db", default=None, help="e.g. postgresql://…/test")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep each run's folder (evidence, logs) under this folder")
    args = ap.parse_args()
    defects = all_defects() if args.defects == "all" else \
        [d for d in args.defects.split(",") if d]
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)

    # The production database is generated on first use; do it before the noise starts.
    subprocess.run([sys.executable, "-c", "from plantstage.spec.loader import load_spec; "
                    "from plantstage.verbs import prepare_production as p; "
                    f"p(load_spec({str(EXAMPLE)!r}), echo=lambda *a: None)"],
                   check=True, cwd=ROOT)
    burners = [mp.Process(target=burn, args=(args.seed * 1000 + i, (3.0, 10.0), (3.0, 10.0)),
                          daemon=True) for i in range(args.burners)]
    for p in burners:
        p.start()
    print(f"{args.burners} bursty CPU burners (busy 3–10 s, idle 3–10 s, seed {args.seed}) on "
          f"{mp.cpu_count()} cores", flush=True)
    results: list[dict] = []
    try:
        for i in range(args.good_runs):
            res = rehearse(GOOD, args.staging_db, args.keep)
            res["kind"] = "good"
            results.append(res)
            print(line(f"good {GOOD} {i + 1}/{args.good_runs}", res), flush=True)
        for d in defects:
            res = rehearse(d, args.staging_db, args.keep)
            res["kind"] = "defect"
            results.append(res)
            print(line(d, res), flush=True)
    finally:
        for p in burners:
            p.terminate()
        for p in burners:
            p.join(5)
    good = [r for r in results if r["kind"] == "good"]
    bad = [r for r in results if r["kind"] == "defect"]

    def n(rs: list[dict], v: str) -> int:
        return sum(r["verdict"] == v for r in rs)

    print(f"good GO {n(good, 'GO')}/{len(good)}, defects NO-GO {n(bad, 'NO-GO')}/{len(bad)}")
    print(f"INCONCLUSIVE: good {n(good, 'INCONCLUSIVE')}/{len(good)}, "
          f"defects {n(bad, 'INCONCLUSIVE')}/{len(bad)}; false NO-GO (good) "
          f"{n(good, 'NO-GO')}, missed (defect GO) {n(bad, 'GO')}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
