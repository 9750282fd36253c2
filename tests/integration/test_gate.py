"""`plantstage gate RUN`: re-judge a recorded run from its folder, without rerunning it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _ev(run: Path) -> dict:
    return json.loads((run / "evidence.json").read_text())


def _spec_with(run: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = (run / "spec.yaml").read_text()
    assert old in text
    p = tmp_path / "changed" / "plantstage.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(text.replace(old, new))
    return p


def test_stricter_threshold_changes_the_verdict_without_rerunning(copy_run, tmp_path,
                                                                 signing_key_dir):
    run = copy_run()
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    ledger_before = (run / "ledger.sqlite").read_bytes()
    r = run_cli("gate", str(run), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " GO " in r.stdout
    # A much stricter threshold: the new version's import median must be a tenth of the old one's.
    strict = _spec_with(run, tmp_path, "max_ratio: 2.0, floor_ms: 20",
                        "max_ratio: 0.1, floor_ms: 0")
    r = run_cli("gate", str(run), "--spec", str(strict), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    ev = _ev(run)
    assert ev["verdict"] == "NO-GO"
    gate = next(g for g in ev["gates"] if g["name"] == "import-latency")
    assert gate["outcome"] == "fail"
    assert "import latency regressed" in r.stdout
    # Nothing ran again: the ledger is untouched, the log has one more entry per judgement.
    assert (run / "ledger.sqlite").read_bytes() == ledger_before
    kinds = [json.loads(line)["kind"] for line in (run / "chain.jsonl").read_text().splitlines()]
    assert kinds == ["rehearsal", "gate", "gate"]
    junit = (run / "junit.xml").read_text()
    assert junit.count("<testcase") == len(ev["gates"]) and 'name="import-latency"' in junit
    assert "<failure" in junit
    pub = str(signing_key_dir / "signing-key.pub.pem")
    assert run_cli("verify", str(run), "--key", pub, env=env).returncode == 0


def test_gate_without_data_is_inconclusive(copy_run, tmp_path, signing_key_dir):
    run = copy_run()
    spec = _spec_with(run, tmp_path, "signal: reconcile.ledger-matches-on-hand.mismatches",
                      "signal: rollback.never_recorded")
    r = run_cli("gate", str(run), "--spec", str(spec),
                env={"PLANTSTAGE_KEY_DIR": str(signing_key_dir)})
    # Never GO: NO-GO (1), or INCONCLUSIVE (5) where the gates distinguish it.
    verdict = _ev(run)["verdict"]
    assert (verdict, r.returncode) in (("NO-GO", 1), ("INCONCLUSIVE", 5)), r.stdout + r.stderr
    gate = next(g for g in _ev(run)["gates"] if g["name"] == "inventory-reconciles")
    assert gate["outcome"] == "inconclusive"
    assert "no data for rollback.never_recorded" in gate["reason"]


def test_gate_naming_an_unknown_signal_fails_check_with_position(tmp_path):
    import shutil

    from tests.conftest import EXAMPLE

    # The whole example (plugins, config files, artifacts): the gate is the only problem.
    shutil.copytree(EXAMPLE, tmp_path, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".plantstage", "__pycache__"))
    text = (EXAMPLE / "plantstage.yaml").read_text()
    bad = text.replace('value: \'signal("rollback.rows_lost")\'',
                       'value: \'signal("rollback.rows_lost") + '
                       'signal("reconcile.nope.mismatches")\'')
    assert bad != text
    (tmp_path / "plantstage.yaml").write_text(bad)
    r = run_cli("check", str(tmp_path))
    assert r.returncode == 2
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "rollback-keeps-data" in line and "reconcile.nope.mismatches" in line
    assert "column 39" in line and "plantstage.yaml:" in line
    broken = text.replace("value <= 0.0", "value <= ")
    (tmp_path / "plantstage.yaml").write_text(broken)
    r = run_cli("check", str(tmp_path))
    assert r.returncode == 2 and "does not parse at column" in r.stderr
    assert "rollback-keeps-data" in r.stderr


def test_gate_on_a_folder_that_is_no_run(tmp_path):
    r = run_cli("gate", str(tmp_path / "nothing"))
    assert r.returncode == 2
    assert "no recorded run here" in r.stderr and len(r.stderr.strip().splitlines()) == 1
