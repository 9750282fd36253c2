"""Recovery drills as production would need them (docs/recovery.md), rehearsed through the CLI:
restore, replay of what the app received since the backup, the exactly-once check and the
reconciliation, timed against the recovery objectives; and what an interrupted drill leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from plantstage.evidence.ledger import read_run
from plantstage.rehearsal.runner import TEST_INTERRUPT_ENV
from tests.conftest import EXAMPLE, run_cli, sample_plant_copy

pytestmark = pytest.mark.slow

TIMELINE = ["backup taken", "failure", "decision", "restore", "replay", "reconciled"]


def _drill(ev: dict) -> dict:
    return next(s for s in ev["steps"] if s["name"] == "rollback-drill")


def _spec(tmp_path: Path, change) -> Path:
    """The sample plant's spec changed by ``change(data)``, in a copy of its folder."""
    spec = sample_plant_copy(tmp_path / "spec")
    data = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    change(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return spec.parent


def test_irreversible_release_recovers_by_restore_and_replay(tmp_path, production_db):
    out = tmp_path / "run"
    r = run_cli("rehearse", str(EXAMPLE), "--release", "1.1.0-irreversible", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["verdict"] == "GO", ev["reasons"]
    res = _drill(ev)["results"]
    assert res["kind"] == "restore"
    # The restore threw away what was written since the backup; the replay brought it back.
    assert res["rows_written_since_backup"] > 0
    replay = res["replay"]
    assert replay["messages"]["sent"] == replay["since_backup"]["messages"] > 0
    assert replay["calls"]["sent"] == replay["since_backup"]["calls"] > 0
    events = [e["event"] for e in res["timeline"]]
    assert [e for e in events if e in TIMELINE] == TIMELINE, events
    starts = [e["start"] for e in res["timeline"]]
    assert starts == sorted(starts) and starts[0] == 0.0
    obj = res["objectives"]
    assert obj["rpo_target"] == 0 and obj["rpo_lost"] == 0 and obj["lost_ids"] == []
    assert 0 < obj["rto_measured"] <= obj["rto_seconds"]
    sig = ev["signals"]
    assert sig["recovery.rpo_lost"] == 0
    assert sig["effects.mes-confirmations-posted.seen_after_recovery"] > 0
    gates = {g["name"]: g["outcome"] for g in ev["gates"]}
    assert gates["recovery-rto"] == "pass" and gates["recovery-rpo"] == "pass"


def test_without_the_replay_the_same_rehearsal_is_no_go_with_the_lost_ids(tmp_path,
                                                                          production_db):
    def no_replay(data: dict) -> None:
        data["recovery"]["replay"] = False

    out = tmp_path / "run"
    r = run_cli("rehearse", str(_spec(tmp_path, no_replay)), "--release", "1.1.0-irreversible",
                "--out", str(out))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["verdict"] == "NO-GO"
    drill = _drill(ev)
    assert drill["status"] == "failed"
    obj = drill["results"]["objectives"]
    assert obj["rpo_lost"] > 0
    lost = obj["lost_ids"]
    assert len(lost) == min(obj["rpo_lost"], 50)
    assert all(i.startswith("mes-confirmations-posted:") for i in lost)
    # Named in the reasons: the drill's, with ids, and the RPO gate's.
    reasons = "\n".join(ev["reasons"])
    assert "acknowledged business effect(s) lost after the restore" in reasons
    assert lost[0].split(":", 1)[1] in reasons
    assert {g["name"]: g["outcome"] for g in ev["gates"]}["recovery-rpo"] == "fail"
    assert ev["signals"]["recovery.rpo_lost"] == obj["rpo_lost"]


def test_irreversible_release_rolled_back_by_its_downgrade_is_no_go(tmp_path, production_db):
    # The same release, if production relied on its downgrade: the drill rehearses that one,
    # and the downgrade deletes ledger rows.
    def by_downgrade(data: dict) -> None:
        rel = next(r for r in data["releases"] if r["name"] == "1.1.0-irreversible")
        rel["rollback"] = {"kind": "downgrade"}

    out = tmp_path / "run"
    r = run_cli("rehearse", str(_spec(tmp_path, by_downgrade)), "--release",
                "1.1.0-irreversible", "--out", str(out))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    ev = json.loads((out / "evidence.json").read_text())
    failing = {g["name"]: g for g in ev["gates"] if g["outcome"] == "fail"}
    assert "rollback-keeps-data" in failing, ev["gates"]
    assert "data lost on downgrade" in failing["rollback-keeps-data"]["cause"]
    assert _drill(ev)["results"]["kind"] == "downgrade"


@pytest.mark.parametrize("kind", ["code-only", "feature-flag"])
def test_code_only_and_feature_flag_rollbacks_are_rehearsed(tmp_path, production_db, kind):
    def declare(data: dict) -> None:
        rel = next(r for r in data["releases"] if r["name"] == "1.1.0")
        rel["rollback"] = {"kind": kind}
        data["recovery"]["flag"] = {"provider": "flagd", "flag": "lot-tracking",
                                    "file": "{run_dir}/flags.json"}

    out = tmp_path / "run"
    r = run_cli("rehearse", str(_spec(tmp_path, declare)), "--release", "1.1.0",
                "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ev = json.loads((out / "evidence.json").read_text())
    res = _drill(ev)["results"]
    assert res["kind"] == kind
    events = [e["event"] for e in res["timeline"]]
    assert "serving" in events and events[-1] == "reconciled"
    assert res["rows_lost"] == 0 and res["objectives"]["rpo_lost"] == 0
    if kind == "code-only":
        # The old code on the expanded schema: no downgrade ran, the new table stays.
        assert "downgrade" not in events
    else:
        flags = json.loads((out / "flags.json").read_text())
        assert flags["flags"]["lot-tracking"]["defaultVariant"] == "off"
        assert res["serving_version"] == "1.1.0"


def test_interrupted_drill_leaves_staging_incomplete_and_never_go(tmp_path, production_db):
    from plantstage.data import refresh_state

    out = tmp_path / "run"
    # Far enough into the drill to be inside the restore or the replay.
    r = run_cli("rehearse", str(EXAMPLE), "--release", "1.1.0-irreversible", "--out", str(out),
                "--keep-staging", env={TEST_INTERRUPT_ENV: "rollback-drill:30000"})
    assert r.returncode == 130, r.stdout[-3000:] + r.stderr[-2000:]
    run = read_run(out / "ledger.sqlite")
    assert run["run"]["status"] == "interrupted" and run["run"]["verdict"] != "GO"
    assert {s["name"]: s["status"] for s in run["steps"]}["rollback-drill"] == "interrupted"
    staging = sorted(out.glob("staging*.sqlite"))
    assert staging, list(out.iterdir())
    assert refresh_state(f"sqlite:///{staging[0]}") == "incomplete"
    assert json.loads((out / "evidence.json").read_text())["verdict"] != "GO"


def _mixing_spec(tmp_path: Path, change) -> Path:
    """The mixing plant's spec changed by ``change(data)``, in a copy of its folder."""
    from tests.examples.mixing_plant import EXAMPLE as MIXING

    spec = sample_plant_copy(tmp_path / "mixing", MIXING)
    data = yaml.safe_load((MIXING / "plantstage.yaml").read_text())
    change(data)
    spec.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return spec.parent


@pytest.mark.parametrize("replay", [True, False], ids=["replay", "no-replay"])
def test_mixing_plant_recovers_batch_completions_by_restore_and_replay(tmp_path, replay):
    # The second stack: Flask, plain SQL, MQTT batch completions acknowledged only by PUBACK
    # (effects `what: sent`), decimal kg.
    def switch(data: dict) -> None:
        data["recovery"]["replay"] = replay

    out = tmp_path / "run"
    r = run_cli("rehearse", str(_mixing_spec(tmp_path, switch)), "--release",
                "2.1.0-by-restore", "--out", str(out), timeout=600)
    ev = json.loads((out / "evidence.json").read_text())
    res = _drill(ev)["results"]
    assert res["kind"] == "restore"
    assert res["rows_written_since_backup"] > 0
    obj = res["objectives"]
    if replay:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        assert ev["verdict"] == "GO", ev["reasons"]
        assert res["replay"]["messages"]["sent"] > 0
        assert obj["rpo_lost"] == 0 and obj["rto_measured"] <= obj["rto_seconds"]
    else:
        assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
        assert obj["rpo_lost"] > 0
        assert any(i.startswith("batches-posted-once:") for i in obj["lost_ids"])
        assert "acknowledged business effect(s) lost after the restore" in \
            "\n".join(ev["reasons"])


def test_a_recovery_slower_than_its_rto_is_no_go(tmp_path):
    def tight(data: dict) -> None:
        data["recovery"]["objectives"]["tiers"][1]["rto"] = 0.5

    out = tmp_path / "run"
    r = run_cli("rehearse", str(_mixing_spec(tmp_path, tight)), "--release",
                "2.1.0-by-restore", "--out", str(out), timeout=600)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    ev = json.loads((out / "evidence.json").read_text())
    obj = _drill(ev)["results"]["objectives"]
    assert obj["rto_measured"] > obj["rto_seconds"] == 0.5
    assert obj["rpo_lost"] == 0  # recovered, only too slowly
    assert {g["name"]: g["outcome"] for g in ev["gates"]}["recovery-rto"] == "fail"
    assert "over the RTO of 0.5 s" in "\n".join(ev["reasons"])
