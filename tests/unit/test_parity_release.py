"""Parity on an app that is not the sample plant: migration heads read the way the spec says
(a plain ``schema_migrations`` table, a command), config paths that follow the release
(``{artifact}``), unreadable layers that block, interrupts that pass through collectors, and
staging's schema built on the engine the rehearsal will run on (real SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from plantstage.artifacts import digest
from plantstage.errors import Interrupted
from plantstage.parity import verbs as _verb
from plantstage.parity.verbs import missing_files, run_parity
from plantstage.spec.loader import load_spec

HEAD_SCRIPT = """\
import sqlite3, sys
path = sys.argv[1][len("sqlite:///"):]
rows = sqlite3.connect(path).execute("SELECT max(version) FROM schema_migrations").fetchall()
if sys.argv[2:] == ["fail"]:
    sys.exit("cannot reach the migration tool's lock table")
print("reading schema_migrations …")
print(rows[0][0])
"""

MIGRATE_SCRIPT = """\
import os
import sqlalchemy as sa
e = sa.create_engine(os.environ["DATABASE_URL"])
with e.begin() as c:
    c.execute(sa.text("CREATE TABLE schema_migrations (version VARCHAR(20) PRIMARY KEY)"))
    c.execute(sa.text("INSERT INTO schema_migrations VALUES ('001'), ('002')"))
    c.execute(sa.text("CREATE TABLE batches (id INTEGER PRIMARY KEY, kg NUMERIC(12,3) NOT NULL)"))
"""


def _sqlite_db(path: Path, versions: list[str]) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO schema_migrations VALUES (?)", [(v,) for v in versions])
    # An Alembic table too: parity must not read it unless the spec says so.
    db.execute("CREATE TABLE alembic_version (version_num TEXT)")
    db.execute("INSERT INTO alembic_version VALUES ('should-not-be-read')")
    db.commit()
    db.close()


def make_plant(tmp: Path, *, parity: str = "", prod_url: str = "sqlite:///prod.db",
               stage_url: str = "sqlite:///stage.db", prod_versions=("001", "002"),
               stage_versions=("001", "002")) -> Path:
    """A tiny app of another stack: two releases, each shipping its own config file."""
    plant = tmp / "plant"
    for name, flag in (("1.0", "off"), ("1.1", "on")):
        rel = plant / "releases" / name
        (rel / "config").mkdir(parents=True)
        (rel / "config" / "app.yaml").write_text(f"feature:\n  flag: \"{flag}\"\nworkers: 2\n")
        (rel / "head.py").write_text(HEAD_SCRIPT)
        (rel / "migrate.py").write_text(MIGRATE_SCRIPT)
    if prod_url.startswith("sqlite"):
        _sqlite_db(plant / "prod.db", list(prod_versions))
    if stage_url.startswith("sqlite") and stage_versions is not None:
        _sqlite_db(plant / "stage.db", list(stage_versions))
    releases = "".join(textwrap.dedent(f"""\
          - name: "{n}"
            version: "{n}"
            artifact: {{path: releases/{n}, sha256: {digest(plant / "releases" / n)}}}
            migrations: {{upgrade: ["{{python}}", "migrate.py"]}}
        """) for n in ("1.0", "1.1"))
    text = textwrap.dedent(f"""\
        version: 1
        name: batching
        estate:
          components:
            app: {{kind: service, tier: 1}}
            db: {{kind: database, tier: 1}}
          edges:
            - {{from: app, to: db, protocol: sql}}
        environments:
          production:
            bindings:
              db: {{fidelity: real, url: "{prod_url}"}}
              app: {{fidelity: real}}
          staging:
            bindings:
              db: {{fidelity: real, url: "{stage_url}"}}
              app:
                fidelity: real
                command: ["{{python}}", "-m", "http.server", "{{port}}"]
                env: {{DATABASE_URL: "{{db:db}}"}}
        current: "1.0"
        releases:
        """) + textwrap.indent(releases, "  ") + "parity:\n" + textwrap.indent(
        textwrap.dedent(parity) or "blocks: [critical, high]\n", "  ")
    (plant / "plantstage.yaml").write_text(text)
    return plant


def rows(report, layer: str) -> dict[str, object]:
    return {f.key: f for f in report.findings if f.layer == layer}


# -- migration heads, any tool ------------------------------------------------------------------
SQL_HEAD = """\
schema_version:
  - {component: db, sql: "SELECT version FROM schema_migrations"}
"""


def test_head_from_a_plain_schema_migrations_table(tmp_path):
    plant = make_plant(tmp_path, parity=SQL_HEAD)
    head = rows(run_parity(load_spec(plant)), "versions")["db.migration_head"]
    assert (head.status, head.production, head.staging) == ("same", "001,002", "001,002")


def test_a_different_head_is_blocking_drift(tmp_path):
    plant = make_plant(tmp_path, parity=SQL_HEAD, stage_versions=("001", "002", "003"))
    report = run_parity(load_spec(plant))
    head = rows(report, "versions")["db.migration_head"]
    assert head.status == "drift" and head.blocking and head.staging == "001,002,003"
    assert report.exit_code == 1


def test_head_from_a_command_of_the_apps_own_tool(tmp_path):
    plant = make_plant(tmp_path, parity="""\
        schema_version:
          - {component: db, command: ["{python}", "{artifact}/head.py", "{db}"]}
        """, stage_versions=("001", "002", "003"))
    head = rows(run_parity(load_spec(plant)), "versions")["db.migration_head"]
    # the last line the tool prints is the head
    assert (head.production, head.staging, head.status) == ("002", "003", "drift")


def test_a_failing_head_command_is_unknown_and_blocks(tmp_path):
    plant = make_plant(tmp_path, parity="""\
        schema_version:
          - {component: db, command: ["{python}", "head.py", "{db}", "fail"]}
        """)
    report = run_parity(load_spec(plant))
    head = rows(report, "versions")["db.migration_head"]
    assert head.status == "unknown" and head.blocking
    assert "lock table" in head.reason and report.exit_code == 1


def test_without_schema_version_no_table_is_guessed(tmp_path):
    report = run_parity(load_spec(make_plant(tmp_path)))
    assert "db.migration_head" not in rows(report, "versions")
    notes = report.layers["versions"]["notes"]
    assert any("no parity.schema_version" in n for n in notes)


def test_schema_version_must_name_a_database(tmp_path):
    from plantstage.errors import SpecError

    plant = make_plant(tmp_path, parity="""\
        schema_version:
          - {component: app, sql: "SELECT 1"}
        """)
    with pytest.raises(SpecError) as exc:
        run_parity(load_spec(plant))
    assert "parity.schema_version[0].component" in exc.value.one_line()
    assert "plantstage.yaml:" in exc.value.one_line()


# -- config that follows the release ------------------------------------------------------------
ARTIFACT_CONFIG = """\
config:
  - {name: app, component: app, production: "{artifact}/config/app.yaml",
     staging: "{artifact}/config/app.yaml"}
"""


def test_artifact_config_follows_the_release_under_test(tmp_path):
    loaded = load_spec(make_plant(tmp_path, parity=ARTIFACT_CONFIG))
    same = rows(run_parity(loaded), "config")
    assert same["app:feature.flag"].status == "same"  # both run 1.0 outside a rehearsal
    report = run_parity(loaded, release=loaded.spec.release("1.1"))
    flag = rows(report, "config")["app:feature.flag"]
    assert (flag.production, flag.staging, flag.status, flag.blocking) == \
        ("off", "on", "drift", True)
    assert rows(report, "config")["app:workers"].status == "same"


def test_unreadable_release_config_is_unknown_and_blocks(tmp_path):
    plant = make_plant(tmp_path, parity=ARTIFACT_CONFIG)
    (plant / "releases" / "1.1" / "config" / "app.yaml").write_text("feature: [unclosed\n")
    loaded = load_spec(plant)
    report = run_parity(loaded, release=loaded.spec.release("1.1"))
    unknown = rows(report, "config")["app"]
    assert unknown.status == "unknown" and unknown.blocking and "app.yaml:" in unknown.reason
    assert report.blocking


def test_check_names_every_missing_file_with_its_spec_line(tmp_path):
    plant = make_plant(tmp_path, parity=ARTIFACT_CONFIG + """\
roles: {component: app, production: roles/prod.yaml, staging: roles/staging.yaml}
""")
    (plant / "releases" / "1.1" / "config" / "app.yaml").unlink()
    problems = missing_files(load_spec(plant))
    lines = [p.one_line() for p in problems]
    assert len(lines) == 3, lines
    assert any("parity.config[0].staging" in ln and "(release 1.1)" in ln for ln in lines)
    assert any("parity.roles.production" in ln and "prod.yaml" in ln for ln in lines)
    assert all(f"{plant / 'plantstage.yaml'}:" in ln for ln in lines)


# -- failures and interrupts in collectors ------------------------------------------------------
def test_interrupt_passes_through_a_collector(tmp_path, monkeypatch):
    def interrupted(view):  # noqa: ANN001, ANN202
        raise Interrupted("interrupted by SIGTERM", where="rehearsal")

    monkeypatch.setitem(_verb.COLLECTORS, "schema", interrupted)
    with pytest.raises(Interrupted):
        run_parity(load_spec(make_plant(tmp_path)))


def test_a_crashing_collector_is_unknown_and_blocks(tmp_path, monkeypatch):
    def broken(view):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")

    monkeypatch.setitem(_verb.COLLECTORS, "config", broken)
    report = run_parity(load_spec(make_plant(tmp_path)))
    f = rows(report, "config")["*"]
    assert f.status == "unknown" and f.blocking and "RuntimeError: boom" in f.reason


# -- PostgreSQL ---------------------------------------------------------------------------------
def _migrate_pg(url: str, plant: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "migrate.py"], cwd=plant / "releases" / "1.0", check=True,
                   env={"DATABASE_URL": url.replace("postgresql://", "postgresql+psycopg://"),
                        "PATH": "/usr/bin:/bin"})


def _scratch_databases(url: str) -> set[str]:
    e = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://")
                         .rsplit("/", 1)[0] + "/postgres")
    try:
        with e.connect() as c:
            return {r[0] for r in c.execute(sa.text(
                "SELECT datname FROM pg_database WHERE datname LIKE 'ps_parity%'"))}
    finally:
        e.dispose()


def test_postgresql_production_is_compared_with_a_postgresql_staging(tmp_path, pg_database):
    """Finding 11: a PostgreSQL production blocked at parity against a SQLite schema."""
    plant = make_plant(tmp_path, parity=SQL_HEAD, prod_url=pg_database, stage_versions=None,
                       stage_url="sqlite:///{run_dir}/staging.sqlite")
    _migrate_pg(pg_database, plant)
    before = _scratch_databases(pg_database)
    loaded = load_spec(plant)
    report = run_parity(loaded, run_dir=tmp_path / "run", scratch=tmp_path / "scratch",
                        staging_engine=pg_database)
    assert not report.blocking, [(f.layer, f.key, f.reason) for f in report.blocking]
    assert "postgresql" in report.sources["staging"]["db"]
    schema = rows(report, "schema")
    assert schema and all(f.status == "same" for f in schema.values())
    head = rows(report, "versions")["db.migration_head"]
    assert (head.production, head.staging, head.status) == ("001,002", "001,002", "same")
    assert rows(report, "versions")["db.engine"].status == "same"
    assert _scratch_databases(pg_database) == before  # the scratch database is dropped
    # The old way (a SQLite schema built from migrations) compared another engine.
    old = run_parity(loaded, run_dir=tmp_path / "run", scratch=tmp_path / "scratch2")
    assert ("versions", "db.engine") in {(f.layer, f.key) for f in old.blocking}
    # … whose missing roles and grants are a note, not drift (SQLite has none to compare)
    assert not [f for f in old.findings if f.layer == "access" and f.status != "same"]
    assert any("SQLite has no roles or grants; production's" in n
               for n in old.layers["access"]["notes"])


def test_rehearsal_parity_step_uses_the_staging_db_it_will_run_on(tmp_path, pg_database):
    """`rehearse --staging-db postgresql://…`: the parity step builds staging's schema there."""
    import json

    from plantstage.rehearsal.runner import run_rehearsal
    from plantstage.rehearsal.steps.parity import Parity

    plant = make_plant(tmp_path, parity=SQL_HEAD, prod_url=pg_database, stage_versions=None,
                       stage_url="sqlite:///{run_dir}/staging.sqlite")
    _migrate_pg(pg_database, plant)
    loaded = load_spec(plant)
    run = tmp_path / "run"
    outcome = run_rehearsal(loaded, loaded.spec.release("1.1"), loaded.spec.release("1.0"),
                            run, staging_db=pg_database, plan=[Parity()])
    assert outcome.status == "completed"
    step = outcome.evidence["steps"][0]
    assert step["status"] == "passed", step
    doc = json.loads((run / "parity.json").read_text())
    assert doc["blocking"] == 0
    assert "postgresql" in doc["sources"]["staging"]["db"]


def test_parity_verb_takes_the_release_staging_runs(tmp_path):
    from plantstage.errors import SpecError
    from plantstage.parity import parity

    plant = make_plant(tmp_path, parity=ARTIFACT_CONFIG)
    report, written = parity(plant, release="1.1", out=tmp_path / "out")
    assert rows(report, "config")["app:feature.flag"].staging == "on" and written.exists()
    with pytest.raises(SpecError) as exc:
        parity(plant, release="9.9", out=tmp_path / "out")
    assert exc.value.where == "--release" and "1.0, 1.1" in exc.value.one_line()


def test_a_staging_server_that_cannot_be_reached_is_an_error_not_unknown(tmp_path):
    """In a rehearsal the run could not run (exit 2): nothing is judged on a missing server."""
    from plantstage.errors import EngineError

    plant = make_plant(tmp_path, stage_versions=None,
                       stage_url="sqlite:///{run_dir}/staging.sqlite")
    with pytest.raises(EngineError) as exc:
        run_parity(load_spec(plant), run_dir=tmp_path / "run", scratch=tmp_path / "s",
                   staging_engine="postgresql://root@127.0.0.1:1/none")
    assert "staging database" in exc.value.one_line()


def test_parity_migration_placeholders_match_the_rehearsal(tmp_path):
    """{db:NAME.url} strips the driver and {python} is the release's runtime, as in a rehearsal."""
    from types import SimpleNamespace

    from plantstage.parity._environment import EnvView

    view = EnvView.__new__(EnvView)
    view.loaded = SimpleNamespace(base_dir=tmp_path)
    view.run_dir = None
    view.env_release = lambda: SimpleNamespace(artifact=SimpleNamespace(path="."))
    view.artifact_dir = lambda rel: tmp_path
    url = "postgresql+psycopg://app:pw@db.local:5433/ps_parity_x"
    assert view.expand("{db:app-db.url}", db=url) == "postgresql://app:pw@db.local:5433/ps_parity_x"
    assert view.expand("{db:app-db.name}", db=url) == "ps_parity_x"
    assert view.expand("{db:app-db}", db=url) == url
    assert view.expand("{python} -m app", python="/venv/bin/python") == "/venv/bin/python -m app"
