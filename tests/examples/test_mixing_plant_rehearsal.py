"""Whole rehearsals of the mixing plant example, through the CLI as a user runs them:
its good release is GO, each defective one NO-GO for its own reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples.mixing_plant import EXAMPLE

pytestmark = pytest.mark.slow


def rehearse(release: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "plantstage", "rehearse", str(EXAMPLE), "--release", release,
         "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)


def app_processes_of(run_dir: Path) -> list[str]:
    """Processes of this run's app versions that are still alive."""
    alive = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"mixingplant" in cmd and str(run_dir).encode() in env:
            alive.append(pid)
    return alive


def evidence(out: Path) -> dict:
    return json.loads((out / "evidence.json").read_text())


def test_good_release_is_go(tmp_path: Path) -> None:
    out = tmp_path / "2.1.0"
    r = rehearse("2.1.0", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    assert ev["verdict"] == "GO", ev["reasons"]
    assert [s["status"] for s in ev["steps"]] == ["passed"] * len(ev["steps"])
    sig = ev["signals"]
    assert sig["workload.candidate.batch-completion.batches_recorded"] > 0
    assert sig["workload.candidate.batch-completion.batches_lost"] == 0
    assert sig["workload.candidate.batch-completion.quantity_mismatches"] == 0
    assert sig["workload.candidate.stock-adjustment.adjustments"] > 0
    assert sig["reconcile.stock-matches-ledger.mismatches"] == 0
    assert sig["reconcile.batches-balance.mismatches"] == 0
    assert sig["rollback.rows_lost"] == 0
    # exactly once across systems: every batch the line sent, every receipt the WMS got
    for effect in ("batches-posted-once", "receipts-match-batches"):
        assert sig[f"effects.{effect}.seen"] > 0
        assert sig[f"effects.{effect}.lost"] == sig[f"effects.{effect}.duplicated"] == 0
    assert not app_processes_of(out)


# release → (what the first reason names, words that reason must contain)
DEFECTS = {
    # the smoke check's decimal comparison: 2.750 kg came back as 2.000
    "2.1.0-truncates-kg": ("step smoke failed", "adjustment-keeps-grams"),
    # CREATE UNIQUE INDEX over recipe codes that production repeats across revisions
    "2.1.0-migration-fails-on-data": ("step migrate failed", "UNIQUE"),
    # completions without inputLots are dropped: the flow's count of lost batches (and the
    # effect check finds the batch ids the twin sent that no ledger entry names)
    "2.1.0-rejects-old-payload": ("gate batches-reach-the-database fail:",
                                  "dropped"),
    # no 0002 down file: the rollback drill cannot downgrade
    "2.1.0-no-downgrade": ("step rollback-drill failed", "cannot be reverted"),
}


@pytest.mark.parametrize("release", sorted(DEFECTS))
def test_defective_release_is_no_go(tmp_path: Path, release: str) -> None:
    lead, words = DEFECTS[release]
    out = tmp_path / release
    r = rehearse(release, out)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    assert ev["verdict"] == "NO-GO"
    named = [reason for reason in ev["reasons"] if reason.startswith(lead)]
    assert named, ev["reasons"]
    assert words in named[0], named[0]
    if release == "2.1.0-rejects-old-payload":
        assert any(reason.startswith("gate effect-batches-posted-once fail:")
                   for reason in ev["reasons"]), ev["reasons"]
    assert not app_processes_of(out)
