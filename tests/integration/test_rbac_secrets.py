"""Two defective sample releases rehearsed through the CLI, each NO-GO by the security check
meant for it: a role that gains a permission (RBAC permission diff) and a secret written to
the app's log (secrets scan). The good 1.1.0 passes both (tests/integration/test_rehearse.py
rehearses it)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXAMPLE, run_cli


def _rehearse(out: Path, release: str, env: dict | None = None) -> dict:
    r = run_cli("rehearse", str(EXAMPLE), "--release", release, "--out", str(out), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["verdict"] == "NO-GO"
    return ev


def _failed(ev: dict) -> set[str]:
    return {g["name"] for g in ev["gates"] if g["outcome"] == "fail"}


def test_role_escalation_is_caught_by_the_permission_diff(tmp_path, production_db):
    ev = _rehearse(tmp_path / "run", "1.1.0-role-escalation")
    assert "rbac" in _failed(ev), ev["gates"]
    sig = ev["signals"]
    assert sig["rbac.gained"] == 1 and sig["rbac.lost"] == 0
    rbac = ev["sections"]["rbac"]
    assert rbac["maps"]["new"].endswith("1.1.0-role-escalation/roles.yaml")
    assert rbac["diff"]["gained"] == [{"role": "operator", "permission": "inventory.adjust"}]
    assert "operator gains inventory.adjust (not approved)" in rbac["lines"]
    # Every role was probed on every declared permission, per role in the evidence.
    assert sig["rbac.probes"] == 5 * 8 and set(rbac["per_role"]) == {
        "operator", "planner", "inventory-clerk", "integration", "auditor"}
    assert "secrets" not in _failed(ev)


def test_secret_in_log_is_caught_by_the_secrets_scan(tmp_path, production_db):
    # The staging token (config/staging/erp.env) reaches the app as it would in staging.
    token = next(line.split("=", 1)[1] for line in
                 (EXAMPLE / "config/staging/erp.env").read_text().splitlines()
                 if line.startswith("WMS_API_TOKEN="))
    ev = _rehearse(tmp_path / "run", "1.1.0-secret-in-log", env={"WMS_API_TOKEN": token})
    assert "secrets" in _failed(ev), ev["gates"]
    assert ev["signals"]["secrets.found"] >= 1
    lines = ev["sections"]["secrets"]["lines"]
    assert any(ln.startswith("logs/") and "known secret (erp-env:WMS_API_TOKEN)" in ln
               for ln in lines), lines
    assert all(":" in ln.split(": ")[0] for ln in lines if ln.startswith("logs/"))  # file:line
    # The evidence names where and what, never the secret.
    for name in ("evidence.json", "report.html"):
        assert token not in (tmp_path / "run" / name).read_text()
    assert "rbac" not in _failed(ev)
