"""Ordered release steps (spec shape, SQL files) and before/after reconciliation (the diff)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from plantstage.commands import reason_line
from plantstage.rehearsal.steps.reconcile import compare_rows
from plantstage.rehearsal.steps.sql_file import split_statements
from plantstage.spec.models import ReconcileCheck, Release

SHA = "0" * 64


def _release(**extra) -> Release:
    return Release.model_validate({"name": "r", "version": "1", "artifact": {"path": "a",
                                                                            "sha256": SHA},
                                   **extra})


# -- spec shape ----------------------------------------------------------------------------
def test_migrations_shorthand_is_one_step_each_way():
    r = _release(migrations={"upgrade": ["up"], "downgrade": ["down"], "timeout": 900})
    up = r.release_steps("upgrade")
    assert list(up) == ["before", "upgrade", "after"]
    assert [(s.name, s.command, s.timeout) for s in up["upgrade"]] == [("migrations", ["up"],
                                                                       900)]
    down = r.release_steps("rollback")
    assert list(down) == ["before", "downgrade", "after"]
    assert down["downgrade"][0].command == ["down"]


def test_steps_are_named_and_timed_by_default():
    r = _release(steps={"before": [{"sql": "release-steps/pre-check.sql"},
                                   {"command": ["true"]}],
                        "upgrade": [{"command": ["migrate"], "timeout": 7200}]},
                 rollback={"after": [{"command": ["x"]}]})
    before = r.release_steps("upgrade")["before"]
    assert [s.name for s in before] == ["pre-check", "before-2"]
    assert before[0].timeout == 3600
    assert r.release_steps("upgrade")["upgrade"][0].timeout == 7200
    assert r.release_steps("rollback")["downgrade"] == []
    assert r.release_steps("rollback")["after"][0].name == "after-1"


@pytest.mark.parametrize("extra, words", [
    ({"steps": {"before": [{"command": ["a"], "sql": "b.sql"}]}}, "exactly one of"),
    ({"steps": {"before": [{"name": "x"}]}}, "exactly one of"),
    ({"steps": {"before": [{"command": []}]}}, "empty"),
    ({"steps": {"before": [{"name": "x", "command": ["a"]}],
                "after": [{"name": "x", "command": ["b"]}]}}, "used twice"),
    ({"steps": {"upgrade": [{"command": ["a"]}]}, "migrations": {"upgrade": ["b"]}},
     "give the upgrade once"),
    ({"rollback": {"downgrade": [{"command": ["a"]}]}, "migrations": {"downgrade": ["b"]}},
     "give the downgrade once"),
    ({"steps": {"before": [{"command": ["a"], "timeout": 0}]}}, "greater than 0"),
    ({"steps": {"during": []}}, "Extra inputs"),
])
def test_bad_steps_are_refused(extra, words):
    with pytest.raises(ValidationError, match=words):
        _release(**extra)


def test_reconcile_when_defaults_and_compare_fields():
    plain = ReconcileCheck(name="a", database="db", sql="SELECT 1")
    assert plain.points == ["after-recovery"]
    ba = ReconcileCheck(name="b", database="db", sql="SELECT 1", compare="before-after",
                        key=["k"])
    assert ba.points == ["after-migrate"]
    both = ReconcileCheck(name="c", database="db", sql="SELECT 1", compare="before-after",
                          when=["after-migrate", "after-load"])
    assert both.points == ["after-migrate", "after-load"]
    with pytest.raises(ValidationError, match="need 'compare: before-after'"):
        ReconcileCheck(name="d", database="db", sql="SELECT 1", key=["k"])
    with pytest.raises(ValidationError, match="when"):
        ReconcileCheck(name="e", database="db", sql="SELECT 1", when=["during-lunch"])


def test_sample_plant_declares_a_before_step_and_a_before_after_check():
    spec = yaml.safe_load((Path(__file__).parents[2] / "examples" / "sample-plant"
                           / "plantstage.yaml").read_text())
    rel = next(r for r in spec["releases"] if r["name"] == "1.1.0")
    sql = rel["steps"]["before"][0]["sql"]
    assert sql.startswith("release-steps/")
    assert (Path(__file__).parents[2] / "examples" / "sample-plant" / sql).is_file()
    check = next(c for c in spec["reconcile"] if c.get("compare") == "before-after")
    assert check["when"] == ["after-migrate"] and check["key"]


# -- SQL files -------------------------------------------------------------------------------
def test_split_statements_respects_quotes_comments_and_dollar_quotes():
    text = (
        "-- header; not a statement\n"
        "SELECT 'a;b' AS x;\n"
        "/* block; comment */ UPDATE t SET v = 'it''s; fine';\n"
        "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\n"
        "SELECT \"odd;name\" FROM t\n"
    )
    stmts = split_statements(text)
    assert [line for line, _ in stmts] == [2, 3, 4, 5]
    assert stmts[0][1] == "SELECT 'a;b' AS x"
    assert stmts[1][1].endswith("'it''s; fine'")
    assert "RETURN 1; END;" in stmts[2][1]
    assert stmts[3][1] == 'SELECT "odd;name" FROM t'
    assert split_statements("-- only a comment;\n;;  \n") == []


def _run_sql(tmp_path: Path, sql: str) -> subprocess.CompletedProcess:
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE IF NOT EXISTS stock (item TEXT, qty NUMERIC)")
        c.execute("INSERT INTO stock VALUES ('a', 5)")
    f = tmp_path / "step.sql"
    f.write_text(sql)
    return subprocess.run([sys.executable, "-m", "plantstage.rehearsal.steps.sql_file", str(f)],
                          env={"PLANTSTAGE_SQL_URL": f"sqlite:///{db}", "PATH": "/usr/bin"},
                          capture_output=True, text=True, timeout=60)


def test_sql_file_runs_each_statement_and_shows_query_rows(tmp_path):
    r = _run_sql(tmp_path, "SELECT item, qty FROM stock;\nUPDATE stock SET qty = qty;\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 statement(s)" in r.stdout and "a | 5" in r.stdout and "ok: 2" in r.stdout


def test_sql_file_error_names_the_statement_and_the_exception_last(tmp_path):
    r = _run_sql(tmp_path, "SELECT 1;\n\nSELECT * FROM no_such_table;\nSELECT 2;\n")
    assert r.returncode == 1
    assert "statement 2 (line 3) failed" in r.stdout
    assert reason_line(r.stdout) == "sqlite3.OperationalError: no such table: no_such_table"
    assert "SELECT 2" not in r.stdout.split("failed")[-1]


# -- before/after difference ---------------------------------------------------------------------
COLS = ["tenant_id", "item_id", "qty"]


def test_compare_by_key_finds_changed_added_removed_rows():
    before = [[1, 10, Decimal("5.000")], [1, 11, Decimal("2.500")], [2, 10, Decimal("1")]]
    after = [[1, 10, Decimal("5")], [1, 11, Decimal("3.500")], [2, 12, Decimal("7")]]
    d = compare_rows(COLS, before, COLS, after, key=["tenant_id", "item_id"])
    assert (d["changed"], d["added"], d["removed"], d["mismatches"]) == (1, 1, 1, 3)
    changed = next(s for s in d["samples"] if s["change"] == "changed")
    assert changed == {"change": "changed", "key": "tenant_id=1, item_id=11",
                       "before": "qty=2.5", "after": "qty=3.5"}
    assert {s["change"] for s in d["samples"]} == {"changed", "added", "removed"}


def test_compare_tolerance_and_floats_against_decimals():
    before = [[1, 10, Decimal("5.000")]]
    assert compare_rows(COLS, before, COLS, [[1, 10, 5.0004]], key=["item_id"],
                        tolerance=0.001)["mismatches"] == 0
    assert compare_rows(COLS, before, COLS, [[1, 10, 5.0004]], key=["item_id"])[
        "mismatches"] == 1


def test_compare_without_key_is_a_multiset_and_samples_are_capped():
    before = [[1, i, 1] for i in range(30)] + [[9, 9, 9], [9, 9, 9]]
    after = [[1, i, 2] for i in range(30)] + [[9, 9, 9]]
    d = compare_rows(COLS, before, COLS, after)
    assert d["removed"] == 31 and d["added"] == 30 and d["changed"] == 0
    assert len(d["samples"]) == 20


def test_compare_columns_changed_and_missing_key():
    d = compare_rows(COLS, [[1, 1, 1]], ["tenant_id", "item_id", "quantity"], [[1, 1, 1]],
                     key=["tenant_id", "item_id"])
    assert d["mismatches"] == 1 and d["columns"]["after"][-1] == "quantity"
    d = compare_rows(COLS, [[1, 1, 1]], ["tenant_id", "qty"], [[1, 1]], key=["item_id"])
    assert "item_id" in d["error"] and d["mismatches"] >= 1


def test_identical_rows_in_any_order_match():
    rows = [[1, 10, Decimal("5")], [2, 11, None]]
    for key in (["tenant_id", "item_id"], []):
        assert compare_rows(COLS, rows, COLS, list(reversed(rows)), key=key)["mismatches"] == 0


# -- running steps (a stand-in run context: no rehearsal) -----------------------------------------
class _Ctx:
    """What the release-step runner uses of a RunContext."""

    def __init__(self, root: Path, db_url: str | None = None):
        from types import SimpleNamespace

        self.spec_dir = root
        self.run_dir = root / "run"
        self.sections: dict = {}
        self.signals: dict = {}
        self.spec = SimpleNamespace(paths=SimpleNamespace(allow_outside=[]))
        self.staging_db = SimpleNamespace(app_url=lambda: db_url) if db_url else None
        (root / "rel").mkdir(exist_ok=True)

    def artifact_dir(self, release):  # noqa: ANN001, ANN201
        return (self.spec_dir / "rel").resolve()

    def binding(self, env, component):  # noqa: ANN001, ANN201
        from types import SimpleNamespace

        return SimpleNamespace(env={})

    def app_component(self) -> str:
        return "app"

    def expand(self, text: str, *, release=None, **extra) -> str:  # noqa: ANN001
        return text.replace("{python}", sys.executable).replace("{artifact}",
                                                                extra.get("artifact", ""))

    def signal(self, name: str, value: float) -> None:
        self.signals[name] = value


def test_a_timed_out_step_keeps_its_output_and_stops_the_upgrade(tmp_path):
    from plantstage.rehearsal.steps import StepFailed
    from plantstage.rehearsal.steps.migrate import run_release_steps

    ctx = _Ctx(tmp_path)
    r = _release(migrations={"upgrade": ["true"]}, steps={"before": [{
        "name": "slow", "timeout": 1,
        "command": ["{python}", "-c", "import time; print('step 1 of 2 done', flush=True); "
                    "time.sleep(30)"]}]})
    with pytest.raises(StepFailed) as exc:
        run_release_steps(ctx, r, "upgrade")
    assert "before step 'slow' failed: timed out after 1 s" in exc.value.reason
    assert "logs/upgrade-before-slow.log" in exc.value.reason
    rec, = ctx.sections["release_steps"]["steps"]  # the migration never ran
    assert rec["timed_out"] and rec["status"] == "failed"
    log = (ctx.run_dir / "logs" / "upgrade-before-slow.log").read_text()
    assert "step 1 of 2 done" in log and "[timed out after 1 s]" in log
    assert "step 1 of 2 done" in rec["tail"]
    assert "steps.upgrade.before.slow.seconds" in ctx.signals


def test_sql_step_from_the_artifact_and_phases_in_order(tmp_path):
    from plantstage.rehearsal.steps.migrate import run_release_steps

    db = tmp_path / "staging.sqlite"
    sqlite3.connect(db).close()
    ctx = _Ctx(tmp_path, f"sqlite:///{db}")
    (tmp_path / "rel" / "pre.sql").write_text("CREATE TABLE seen (n INTEGER);\n"
                                              "INSERT INTO seen VALUES (1);\n")
    r = _release(steps={"before": [{"sql": "{artifact}/pre.sql"}],
                        "upgrade": [{"name": "up", "command": ["true"]}],
                        "after": [{"command": ["{python}", "-c", "print('after ran')"]}]},
                 rollback={"before": [{"command": ["true"]}], "after": [{"command": ["true"]}]})
    recs = run_release_steps(ctx, r, "upgrade")
    assert [(x["phase"], x["name"], x["status"]) for x in recs] == [
        ("before", "pre", "passed"), ("upgrade", "up", "passed"), ("after", "after-1", "passed")]
    assert recs[0]["output"] == "ok: 2 statement(s)" and recs[2]["output"] == "after ran"
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT n FROM seen").fetchall() == [(1,)]
    # The restore path runs the rollback's before and after around it, each on its own.
    only = run_release_steps(ctx, r, "rollback", ("before",))
    assert [(x["group"], x["phase"]) for x in only] == [("rollback", "before")]


def test_sql_step_outside_its_folder_or_missing_is_one_line(tmp_path):
    from plantstage.rehearsal.steps import StepFailed
    from plantstage.rehearsal.steps.migrate import run_release_steps

    ctx = _Ctx(tmp_path, "sqlite:///x")
    for sql, words in (("{artifact}/../../etc/passwd", "climbs out"),
                       ("/etc/passwd", "outside the spec's folder"),
                       ("release-steps/missing.sql", "not found")):
        with pytest.raises(StepFailed, match=words):
            run_release_steps(ctx, _release(steps={"before": [{"sql": sql}]}), "upgrade")


def test_a_missing_rollback_sql_file_fails_before_the_upgrade_runs(tmp_path):
    from plantstage.rehearsal.steps import StepFailed
    from plantstage.rehearsal.steps.migrate import check_sql_files

    ctx = _Ctx(tmp_path, "sqlite:///x")
    r = _release(steps={"before": [{"command": ["true"]}]},
                 rollback={"after": [{"sql": "release-steps/gone.sql"}]})
    with pytest.raises(StepFailed, match=r"releases\.r\.rollback\.after\[0\]: sql file "):
        check_sql_files(ctx, r)


def test_samples_are_in_key_order_numbers_by_value():
    before = [[1, i, 1] for i in (105, 14, 2)]
    after = [[1, i, 2] for i in (105, 14, 2)]
    d = compare_rows(COLS, before, COLS, after, key=["tenant_id", "item_id"])
    assert [s["key"] for s in d["samples"]] == ["tenant_id=1, item_id=2",
                                                "tenant_id=1, item_id=14",
                                                "tenant_id=1, item_id=105"]


def test_check_names_a_missing_sql_step_file_with_its_line(tmp_path):
    """`plantstage check` finds a release step's missing SQL file before any rehearsal."""
    from plantstage.spec.loader import load_spec
    from plantstage.verbs import _missing_step_files
    from tests.conftest import EXAMPLE, sample_plant_copy

    spec_path = sample_plant_copy(tmp_path / "plant")
    text = (EXAMPLE / "plantstage.yaml").read_text()
    assert "release-steps/1.1.0-pre-upgrade-check.sql" in text
    spec_path.write_text(text.replace("release-steps/1.1.0-pre-upgrade-check.sql",
                                      "release-steps/gone.sql"))
    problems = _missing_step_files(load_spec(spec_path))
    assert len(problems) == 1
    line = problems[0].one_line()
    assert "steps.before[0].sql: file 'release-steps/gone.sql' does not exist" in line
    assert f"{spec_path}:" in line
