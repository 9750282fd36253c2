"""`plantstage signoff`: PENDING until required roles sign; a rejection is NO-GO; waivers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

ALWAYS = """signoffs:
  - role: release-board
    quorum: 1
    description: Signs every release (unconditional).
  - role: plant-it"""


def _require_board(run: Path, tmp_path: Path) -> Path:
    text = (run / "spec.yaml").read_text()
    assert "signoffs:\n  - role: plant-it" in text
    p = tmp_path / "spec" / "plantstage.yaml"
    p.parent.mkdir()
    p.write_text(text.replace("signoffs:\n  - role: plant-it", ALWAYS))
    return p


def test_pending_then_approve_is_go(copy_run, tmp_path, signing_key_dir):
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    run = copy_run()
    r = run_cli("gate", str(run), "--spec", str(_require_board(run, tmp_path)), env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    ev = json.loads((run / "evidence.json").read_text())
    assert ev["verdict"] == "PENDING"
    states = {s["role"]: s["state"] for s in ev["signoffs"]}
    assert states["release-board"] == "pending"
    assert states["finance"] == "not required this run"
    assert 'id="verdict">PENDING' in (run / "report.html").read_text()
    r = run_cli("signoff", str(run), "--role", "release-board", "--by", "Ada Lovelace",
                "--decision", "approve", "--reason", "rehearsal evidence reviewed", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    ev = json.loads((run / "evidence.json").read_text())
    assert ev["verdict"] == "GO"
    board = next(s for s in ev["signoffs"] if s["role"] == "release-board")
    assert board["state"] == "approved" and board["approvals"][0]["by"] == "Ada Lovelace"
    html = (run / "report.html").read_text()
    assert "Ada Lovelace" in html and "not required this run" in html
    pub = str(signing_key_dir / "signing-key.pub.pem")
    assert run_cli("verify", str(run), "--key", pub, env=env).returncode == 0


def test_reject_is_no_go(copy_run, tmp_path, signing_key_dir):
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    run = copy_run()
    run_cli("gate", str(run), "--spec", str(_require_board(run, tmp_path)), env=env)
    r = run_cli("signoff", str(run), "--role", "release-board", "--by", "Grace Hopper",
                "--decision", "reject", "--reason", "MRP run not covered", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rejected by Grace Hopper" in r.stdout
    assert json.loads((run / "evidence.json").read_text())["verdict"] == "NO-GO"


def test_waiver_on_a_failing_non_key_gate(copy_run, tmp_path, signing_key_dir):
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    run = copy_run()
    text = (run / "spec.yaml").read_text()
    # An RTO no rollback can meet: the non-key gate fails → gates.warned → operations signs.
    p = tmp_path / "spec" / "plantstage.yaml"
    p.parent.mkdir()
    p.write_text(text.replace("params: {rto_s: 120}", "params: {rto_s: 0.001}"))
    r = run_cli("gate", str(run), "--spec", str(p), env=env)
    assert r.returncode == 3, r.stdout + r.stderr  # operations must sign off a warning
    r = run_cli("signoff", str(run), "--role", "operations", "--by", "Linus", "--decision",
                "approve", "--reason", "RTO is being renegotiated", "--waive",
                "restore-within-rto", "--expires", "2999-12-31", env=env)
    ev = json.loads((run / "evidence.json").read_text())
    gate = next(g for g in ev["gates"] if g["name"] == "restore-within-rto")
    assert gate["outcome"] == "waived" and gate["waiver"]["owner"] == "Linus"
    assert ev["waivers"][0]["state"] == "applied"
    # Quality (two people) must now sign any waived gate.
    assert ev["verdict"] == "PENDING" and r.returncode == 3
    assert "Waivers" in (run / "report.html").read_text()
    r = run_cli("signoff", str(run), "--role", "operations", "--by", "Linus", "--decision",
                "approve", "--reason", "x", "--waive", "confirmations-posted-once",
                "--expires", "2999-12-31", env=env)
    assert r.returncode == 2 and "key gate" in r.stderr


def test_unknown_role_and_unknown_run_are_one_line_exit_2(copy_run, tmp_path, signing_key_dir):
    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    run = copy_run()
    r = run_cli("signoff", str(run), "--role", "ceo", "--by", "X", "--decision", "approve",
                "--reason", "y", env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "no signoff role 'ceo'" in r.stderr
    assert "plant-it" in r.stderr
    r = run_cli("signoff", str(tmp_path / "no-run"), "--role", "finance", "--by", "X",
                "--decision", "approve", "--reason", "y", env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "no recorded run here" in r.stderr


SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def test_markup_in_a_signoff_is_shown_as_text(copy_run, tmp_path, signing_key_dir):
    """The review's repro: whoever signs off cannot put markup in the signed report."""
    from markupsafe import escape

    env = {"PLANTSTAGE_KEY_DIR": str(signing_key_dir)}
    run = copy_run()
    r = run_cli("signoff", str(run), "--role", "operations", "--by", SCRIPT, "--decision",
                "approve", "--reason", IMG, env=env)
    assert r.returncode in (0, 1, 3), r.stdout + r.stderr
    html = (run / "report.html").read_text()
    for payload in (SCRIPT, IMG):
        assert payload not in html and str(escape(payload)) in html
    assert "<script" not in html and "<img" not in html
    ev = json.loads((run / "evidence.json").read_text())
    assert any(a["by"] == SCRIPT for s in ev["signoffs"] for a in s["approvals"])


def test_signoff_signs_only_with_the_key_that_signed_the_run(copy_run, tmp_path):
    run = copy_run()
    before = (run / "chain.jsonl").read_bytes()
    args = ("signoff", str(run), "--role", "operations", "--by", "Mallory", "--decision",
            "approve", "--reason", "looks fine")
    # No key here: a signoff never makes one; one line naming `plantstage keys init`.
    r = run_cli(*args, env={"PLANTSTAGE_KEY_DIR": str(tmp_path / "none")})
    assert r.returncode == 2 and "plantstage keys init" in r.stderr, r.stderr
    assert not (tmp_path / "none").exists()
    # Another key: refused, so the log is never signed by two keys.
    other = tmp_path / "other"
    assert run_cli("keys", "init", env={"PLANTSTAGE_KEY_DIR": str(other)}).returncode == 0
    r = run_cli(*args, env={"PLANTSTAGE_KEY_DIR": str(other)})
    assert r.returncode == 2 and "your signing key is" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (run / "chain.jsonl").read_bytes() == before
