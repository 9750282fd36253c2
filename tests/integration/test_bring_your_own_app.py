"""A rehearsal of an app that is not Python (docs/bring-your-own-app.md).

``byo_node/`` is a tiny Node.js service (no npm packages) whose database is reached through the
``sqlite3`` CLI, migrated by a shell script applying plain SQL files: nothing of it is Python.
Its spec declares the command, the health probe (a text body, the version in a header) and the
smoke checks (a decimal kg quantity). The good release is GO; the one that truncates kg to whole
kg is NO-GO at the smoke step, with the request and the decimal difference in the reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from plantstage.artifacts import digest
from tests.conftest import run_cli

HERE = Path(__file__).parent / "byo_node"

pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("sqlite3")),
                                reason="needs node and the sqlite3 CLI")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pick-lite")
    shutil.copy(HERE / "gen.sh", root / "gen.sh")
    rel = root / "releases"
    shutil.copytree(HERE / "app", rel / "1.0.0")
    (rel / "1.0.0" / "VERSION").write_text("1.0.0\n")
    shutil.copytree(rel / "1.0.0", rel / "1.1.0")
    (rel / "1.1.0" / "VERSION").write_text("1.1.0\n")
    for f in (HERE / "migrations-1.1.0").iterdir():
        shutil.copy(f, rel / "1.1.0" / "sql" / f.name)
    shutil.copytree(rel / "1.1.0", rel / "1.1.0-truncates")
    (rel / "1.1.0-truncates" / "TRUNCATE").write_text("the defect: kg booked as whole kg\n")
    text = (HERE / "plantstage.yaml").read_text()
    for name in ("1.0.0", "1.1.0", "1.1.0-truncates"):
        text = text.replace(f"{{sha:{name}}}", digest(rel / name))
    (root / "plantstage.yaml").write_text(text)
    return root


def _evidence(run: Path) -> dict:
    return json.loads((run / "evidence.json").read_text())


def test_a_node_app_rehearses_go_with_its_declared_health_and_smoke(project, tmp_path):
    r = run_cli("rehearse", str(project), "--release", "1.1.0", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stdout + r.stderr
    steps = {s["name"]: s for s in _evidence(tmp_path / "run")["steps"]}
    assert steps["deploy"]["results"]["version"] == "1.1.0"
    # The switch moves traffic to the new version and checks it through the router.
    assert steps["switch"]["results"]["through_router"] == "HTTP 200, version 1.1.0"
    checks = {c["name"]: c for c in steps["smoke"]["results"]["checks"]}
    assert set(checks) == {"healthz", "adjust-keeps-grams", "schema-head"}
    assert all(c["status"] == "passed" for c in checks.values())
    assert 'booked.qty.value="1.250"' in checks["adjust-keeps-grams"]["detail"]
    assert steps["migrate"]["results"]["output"] == "applying sql/0002_up.sql"


def test_a_release_that_truncates_kg_is_no_go_at_smoke(project, tmp_path):
    r = run_cli("rehearse", str(project), "--release", "1.1.0-truncates",
                "--out", str(tmp_path / "run"))
    assert r.returncode == 1, r.stdout + r.stderr
    reasons = _evidence(tmp_path / "run")["reasons"]
    assert any("smoke check adjust-keeps-grams failed: POST http://127.0.0.1:" in x and
               "/v1/north/adjust: field booked.qty.value: 1.000 differs from 1.25 by 0.250"
               in x for x in reasons), reasons


def _with_health(project: Path, tmp_path: Path, health: str) -> Path:
    """A copy of the project whose app declares another health probe."""
    root = tmp_path / "spec"
    shutil.copytree(project, root, symlinks=True,
                    ignore=shutil.ignore_patterns(".plantstage"))
    text = (root / "plantstage.yaml").read_text()
    old = "        health: {path: /healthz, status: 200, version: {header: X-Build}}\n"
    assert old in text
    (root / "plantstage.yaml").write_text(text.replace(old, health))
    return root


def test_a_jsonrpc_health_probe_reads_the_version_from_the_result(project, tmp_path):
    root = _with_health(project, tmp_path, """        health:
          method: POST
          path: /rpc
          json: {jsonrpc: "2.0", method: status, id: 1}
          version: {json: result.version}
""")
    r = run_cli("rehearse", str(root), "--release", "1.1.0", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stdout + r.stderr
    steps = {s["name"]: s for s in _evidence(tmp_path / "run")["steps"]}
    assert steps["deploy"]["results"]["version"] == "1.1.0"
    assert steps["switch"]["results"]["through_router"] == "HTTP 200, version 1.1.0"


def test_a_jsonrpc_error_object_keeps_the_version_from_starting(project, tmp_path):
    root = _with_health(project, tmp_path, """        health:
          method: POST
          path: /rpc
          json: {jsonrpc: "2.0", method: no-such-method, id: 1}
          version: {json: result.version}
""")
    r = run_cli("rehearse", str(root), "--release", "1.1.0", "--out", str(tmp_path / "run"))
    assert r.returncode == 2, r.stdout + r.stderr  # the current version never came up
    assert "JSON-RPC error -32601: method not found: no-such-method" in r.stdout + r.stderr


def test_a_command_probe_with_the_apps_placeholders_and_environment(project, tmp_path):
    root = _with_health(project, tmp_path, """        health:
          command: ["node", "{artifact}/check.js", "{port}"]
          version: {regex: "pickd build (\\\\S+) on its database"}
          timeout: 5
""")
    r = run_cli("rehearse", str(root), "--release", "1.1.0", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stdout + r.stderr
    steps = {s["name"]: s for s in _evidence(tmp_path / "run")["steps"]}
    assert steps["provision"]["results"]["current_version"] == "1.0.0"
    assert steps["deploy"]["results"]["version"] == "1.1.0"
    # Through the router the command cannot run: the router is checked to forward.
    assert steps["switch"]["results"]["through_router"] == \
        "TCP connected, version read by the command probe at deploy"
