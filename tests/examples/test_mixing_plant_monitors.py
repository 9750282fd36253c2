"""The mixing plant's business transaction monitors in whole rehearsals: every monitor sampled
in every load phase and in the evidence; the good release passes the gates on them, and a
release whose consumer records nothing is caught by the line's heartbeat in the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.test_mixing_plant_rehearsal import evidence, rehearse

pytestmark = pytest.mark.slow

MONITORS = ("batch-to-ledger-lag", "batches-recorded", "unposted-batches")


def test_monitors_are_signals_of_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "2.1.0"
    r = rehearse("2.1.0", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    s = ev["signals"]
    for phase in ("baseline", "paired", "candidate"):
        for name in MONITORS:
            p = f"monitor.{phase}.{name}"
            assert s[f"{p}.samples"] >= 1 and s[f"{p}.errors"] == 0, p
        assert s[f"monitor.{phase}.batches-recorded.max"] > 0  # batches flowed in each
        assert s[f"monitor.{phase}.unposted-batches.tenant.gent.max"] == 0
    gates = {g["name"]: g["outcome"] for g in ev["gates"]}
    assert gates["batch-to-ledger-lag"] == gates["batches-keep-flowing"] == "pass"
    assert gates["no-unposted-batches"] == "pass"


def test_a_consumer_that_records_nothing_fails_the_heartbeat_gate(tmp_path: Path) -> None:
    out = tmp_path / "rejects"
    r = rehearse("2.1.0-rejects-old-payload", out)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    ev = evidence(out)
    failing = {g["name"] for g in ev["gates"] if g["outcome"] == "fail"}
    assert "batches-keep-flowing" in failing
    assert ev["signals"]["monitor.candidate.batches-recorded.last"] == 0
    assert "monitor.candidate.batches-recorded.last = 0 is below 1" in r.stdout
