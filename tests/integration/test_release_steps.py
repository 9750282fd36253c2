"""Ordered release steps and before/after reconciliation, rehearsed on the sample plant.

The good release (1.1.0: a vendor-style SQL check before its migration, stock unchanged by the
upgrade) is the session's recorded demo run; the two defective variants live in a copy of the
sample's folder with short workloads: a `before` step that fails, and a migration that changes
stock quantities.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, PG_URL, requires_postgres, run_cli

pytestmark = pytest.mark.slow


def _evidence(out: Path) -> dict:
    return json.loads((out / "evidence.json").read_text())


def _release_steps(ev: dict) -> list[dict]:
    return (ev["sections"].get("release_steps") or {}).get("steps", [])


def _reconcile(ev: dict, name: str, point: str) -> dict:
    return next(c for c in ev["sections"]["reconcile"]["checks"]
                if c["name"] == name and c["point"] == point)


def test_good_release_runs_its_before_step_and_keeps_stock(recorded_run):
    ev = _evidence(recorded_run)
    assert ev["verdict"] == "GO"
    steps = _release_steps(ev)
    order = [(s["group"], s["phase"], s["name"]) for s in steps]
    assert order[:2] == [("upgrade", "before", "pre-upgrade-check"),
                         ("upgrade", "upgrade", "migrations")]
    assert ("rollback", "downgrade", "migrations") in order
    before = steps[0]
    assert before["kind"] == "sql" and before["status"] == "passed" and before["timeout"] == 600
    log = recorded_run / before["log"]
    assert log.is_file() and "ok: 3 statement(s)" in log.read_text()
    assert "ok: 3 statement(s)" in before["tail"]
    assert ev["signals"]["steps.upgrade.before.pre-upgrade-check.seconds"] > 0
    assert ev["signals"]["steps.upgrade.seconds"] >= before["seconds"]
    # Stock per tenant and item: the same before the release and right after its migration.
    check = _reconcile(ev, "stock-unchanged-by-upgrade", "after-migrate")
    assert check["mismatches"] == 0 and check["rows_before"] == check["rows_after"] > 0
    assert ev["signals"]["reconcile.stock-unchanged-by-upgrade.mismatches"] == 0
    gates = {g["name"]: g["outcome"] for g in ev["gates"]}
    assert gates["reconcile-stock-unchanged-by-upgrade"] == "pass"
    html = (recorded_run / "report.html").read_text()
    assert 'id="release-steps"' in html and "pre-upgrade-check" in html
    assert 'id="reconcile"' in html and "stock-unchanged-by-upgrade" in html


def _plant_copy(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the sample's folder (releases, config and release steps copied, the rest
    linked) and its spec as data, with short workloads."""
    for name in ("releases", "config", "release-steps"):
        shutil.copytree(EXAMPLE / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in (".plantstage", "sampleplant_plugin.py", "sampleplant_smoke.py", "generate.py"):
        if (EXAMPLE / name).exists():
            (tmp_path / name).symlink_to(EXAMPLE / name)
    spec = yaml.safe_load((EXAMPLE / "plantstage.yaml").read_text())
    spec["workload"]["duration"] = 2
    spec["workload"]["paired"] = {"duration": 4, "block": 1}
    return tmp_path / "plantstage.yaml", spec


def _write(path: Path, spec: dict) -> None:
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def _rehearse_no_go(spec: Path, release: str, out: Path) -> dict:
    r = run_cli("rehearse", str(spec), "--release", release, "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    ev = _evidence(out)
    assert ev["verdict"] == "NO-GO"
    return ev


def test_failing_before_step_is_no_go_with_its_exception_line(tmp_path, production_db):
    spec_path, spec = _plant_copy(tmp_path)
    (tmp_path / "release-steps" / "broken.sql").write_text(
        "-- the vendor's check, against a column this database does not have\n"
        "SELECT COUNT(*) FROM on_hand;\n"
        "SELECT lot_reserved_qty FROM on_hand;\n")
    rel = next(r for r in spec["releases"] if r["name"] == "1.1.0")
    rel["steps"] = {"before": [{"name": "vendor-check", "sql": "release-steps/broken.sql"},
                               {"name": "never-runs", "command": ["false"]}]}
    _write(spec_path, spec)
    ev = _rehearse_no_go(spec_path, "1.1.0", tmp_path / "run")
    migrate = next(s for s in ev["steps"] if s["name"] == "migrate")
    assert migrate["status"] == "failed"
    line = "sqlite3.OperationalError: no such column: lot_reserved_qty"
    assert line in migrate["error"]
    assert "before step 'vendor-check'" in migrate["error"]
    assert "logs/upgrade-before-vendor-check.log" in migrate["error"]
    assert any(line in r for r in map(str, ev["reasons"]))
    steps = _release_steps(ev)
    # The failing step stopped the upgrade: neither the next step nor the migration ran.
    assert [(s["phase"], s["name"]) for s in steps if s["group"] == "upgrade"] == [
        ("before", "vendor-check")]
    assert steps[0]["reason"] == line and "statement 2 (line 3) failed" in steps[0]["tail"]
    assert (tmp_path / "run" / "logs" / "upgrade-before-vendor-check.log").is_file()
    html = (tmp_path / "run" / "report.html").read_text()
    assert "no such column: lot_reserved_qty" in html


def _stock_moving_release(root: Path) -> tuple[str, str]:
    """A copy of 1.1.0 whose migration also adds one to some stock quantities."""
    from plantstage.artifacts import digest

    rel = root / "releases" / "1.1.0-moves-stock"
    shutil.copytree(root / "releases" / "1.1.0", rel, ignore=shutil.ignore_patterns("__pycache__"))
    mig = rel / "sampleplant" / "migrations" / "versions" / "0002_lots.py"
    text = mig.read_text()
    anchor = "def upgrade() -> None:\n"
    assert anchor in text
    mig.write_text(text.replace(anchor, anchor + '    op.execute("UPDATE on_hand SET qty = '
                                "qty + 1 WHERE item_id % 7 = 0\")\n"))
    return "releases/1.1.0-moves-stock", digest(rel)


def test_migration_changing_stock_is_caught_by_the_before_after_check(tmp_path, production_db):
    spec_path, spec = _plant_copy(tmp_path)
    path, sha = _stock_moving_release(tmp_path)
    good = next(r for r in spec["releases"] if r["name"] == "1.1.0")
    spec["releases"].append({**good, "name": "1.1.0-moves-stock",
                             "artifact": {"path": path, "sha256": sha},
                             "description": "Defective: its migration changes stock."})
    _write(spec_path, spec)
    ev = _rehearse_no_go(spec_path, "1.1.0-moves-stock", tmp_path / "run")
    check = _reconcile(ev, "stock-unchanged-by-upgrade", "after-migrate")
    assert check["changed"] > 0 and check["added"] == check["removed"] == 0
    assert check["mismatches"] == check["changed"]
    assert 0 < len(check["samples"]) <= 20
    s = check["samples"][0]
    assert s["change"] == "changed" and s["key"].startswith("tenant_id=")
    before = float(s["before"].removeprefix("qty="))
    after = float(s["after"].removeprefix("qty="))
    assert after == before + 1
    sig = ev["signals"]
    assert sig["reconcile.stock-unchanged-by-upgrade.mismatches"] == check["changed"]
    failed = {g["name"] for g in ev["gates"] if g["outcome"] == "fail"}
    assert "reconcile-stock-unchanged-by-upgrade" in failed
    html = (tmp_path / "run" / "report.html").read_text()
    assert s["key"] in html


@requires_postgres
def test_sql_step_on_postgresql_reports_the_exception_not_the_caret(tmp_path, pg_database):
    """PostgreSQL's errors come with LINE, caret and DETAIL/HINT lines: the reason is the
    exception line."""
    import subprocess
    import sys

    from plantstage.commands import reason_line

    f = tmp_path / "pre.sql"
    f.write_text("CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t VALUES (1);\n"
                 "DO $$ BEGIN RAISE NOTICE 'checking; still fine'; END $$;\n"
                 "INSERT INTO t\n  VALUES (1);\n")
    r = subprocess.run([sys.executable, "-m", "plantstage.rehearsal.steps.sql_file", str(f)],
                       env={"PLANTSTAGE_SQL_URL": pg_database, "PATH": "/usr/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "statement 4 (line 4) failed" in r.stdout
    why = reason_line(r.stdout)
    assert why.startswith("psycopg.errors.UniqueViolation: duplicate key value"), r.stdout
    assert PG_URL  # the server the fixture made the database on
