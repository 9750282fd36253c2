"""Parity's stand-in for a staging database that does not exist yet is built by the current
release's ordered upgrade steps (before, upgrade, after), as the rehearsal migrates — not only
by ``migrations.upgrade``."""

from __future__ import annotations

import re

from plantstage.artifacts import digest
from plantstage.parity.verbs import run_parity
from plantstage.spec.loader import load_spec
from tests.unit.test_parity_release import make_plant, rows


def _with_steps(plant, before: str) -> None:
    """Release 1.0 declares steps: a SQL file before, its migration, a SQL view after."""
    (plant / "steps").mkdir()
    (plant / "steps" / "before.sql").write_text(before)
    (plant / "steps" / "after.sql").write_text(
        "CREATE VIEW batch_totals AS SELECT COUNT(*) AS n, SUM(kg) AS kg FROM batches;\n")
    text = (plant / "plantstage.yaml").read_text()
    first = text.index('migrations: {upgrade: ["{python}", "migrate.py"]}')
    text = text[:first] + (
        'steps: {before: [{name: vendor-pre, sql: steps/before.sql}], '
        'upgrade: [{name: schema, command: ["{python}", "migrate.py"]}], '
        'after: [{name: totals, sql: steps/after.sql}]}') + \
        text[first + len('migrations: {upgrade: ["{python}", "migrate.py"]}'):]
    (plant / "plantstage.yaml").write_text(text)
    assert re.search(r'name: "1.0"', text) and digest(plant / "releases" / "1.0")


def test_staging_stand_in_runs_the_current_releases_ordered_steps(tmp_path):
    plant = make_plant(tmp_path, stage_versions=None,
                       stage_url="sqlite:///{run_dir}/staging.sqlite")
    _with_steps(plant, "SELECT 1;\n")
    report = run_parity(load_spec(plant), run_dir=tmp_path / "run", scratch=tmp_path / "s")
    assert "upgrade steps" in report.sources["staging"]["db"]
    schema = rows(report, "schema")
    # The after step's view exists on the stand-in (production has none): it ran, after the
    # migration that made the table it reads.
    assert schema["view.batch_totals"].staging is not None
    assert schema["view.batch_totals"].production is None
    logs = sorted(p.name for p in (tmp_path / "s").rglob("schema-*.log"))
    assert logs == ["schema-after-totals.log", "schema-before-vendor-pre.log",
                    "schema-upgrade-schema.log"]


def test_a_failing_before_step_says_which_and_why(tmp_path):
    plant = make_plant(tmp_path, stage_versions=None,
                       stage_url="sqlite:///{run_dir}/staging.sqlite")
    _with_steps(plant, "SELECT no_such_column FROM no_such_table;\n")
    report = run_parity(load_spec(plant), run_dir=tmp_path / "run", scratch=tmp_path / "s")
    schema = rows(report, "schema")["*"]
    assert schema.status == "unknown"
    assert "releases.1.0.steps.before[0]: release 1.0's before step 'vendor-pre' failed " \
           "(exit 1): sqlite3.OperationalError: no such table: no_such_table" in schema.reason
