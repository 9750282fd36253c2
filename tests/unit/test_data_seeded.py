"""schema: migrations with reference rows the migrations seed; setup failures are 'could not
run' (exit 2), never NO-GO."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.data import RefreshError, refresh_database
from plantstage.errors import EXIT_USAGE, PlantstageError
from plantstage.rehearsal.steps import StepFailed
from plantstage.rehearsal.steps.provision import Provision
from plantstage.spec.masking import RefreshSpec

KEY = b"seeded-test-key-0123456789abcdef"
SCHEMA = """
CREATE TABLE units (id INTEGER PRIMARY KEY, code VARCHAR(8) UNIQUE NOT NULL,
                    label VARCHAR(40) NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, unit_id INTEGER NOT NULL REFERENCES units(id),
                    code VARCHAR(20) NOT NULL);
"""


def production(tmp_path: Path) -> str:
    db = tmp_path / "prod.db"
    c = sqlite3.connect(db)
    c.executescript(SCHEMA + """
        INSERT INTO units VALUES (1, 'kg', 'kilogram'), (2, 'pc', 'piece'), (3, 'm', 'metre');
        INSERT INTO items VALUES (1, 1, 'FLOUR'), (2, 2, 'BOLT'), (3, 3, 'WIRE');
    """)
    c.commit()
    c.close()
    return f"sqlite:///{db}"


def migrations(target, seed: str):
    """What an app's first migration does: create the tables, seed the reference rows."""
    def create_schema() -> None:
        eng = target.engine()
        with eng.begin() as c:
            for stmt in (SCHEMA + seed).split(";"):
                if stmt.strip():
                    c.exec_driver_sql(stmt)
        eng.dispose()
    return create_schema


SEED = "INSERT INTO units VALUES (1, 'kg', 'kilogram'); INSERT INTO units VALUES (2, 'pc', 'piece')"


def spec(seeded: dict | None = None) -> RefreshSpec:
    return RefreshSpec.model_validate({"schema": "migrations", "seeded": seeded or {},
                                       "rules": {"units": {"*": "keep"}, "items": {"*": "keep"}}})


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        yield engines.adapter_for(f"sqlite:///{tmp_path / 'stage.db'}")
    else:
        url = request.getfixturevalue("pg_database")
        yield engines.adapter_for(url)


def rows(target, table: str) -> list[tuple]:
    eng = target.engine()
    with eng.connect() as c:
        out = [tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]
    eng.dispose()
    return out


def refresh(prod, target, seeded=None, seed=SEED):
    return refresh_database(prod, target, spec(seeded), key=KEY, key_source="test",
                            create_schema=migrations(target, seed))


def test_seeded_rows_fail_by_default_naming_table_and_row_key(tmp_path, target):
    with pytest.raises(RefreshError) as err:
        refresh(production(tmp_path), target)
    line = err.value.one_line()
    assert "'units'" in line and "row id=1" in line and "refresh.seeded" in line
    assert "\n" not in line


def test_seeded_rows_replace(tmp_path, target):
    result = refresh(production(tmp_path), target, {"units": "replace"})
    assert result.ok, result.as_dict()
    assert rows(target, "units") == [(1, "kg", "kilogram"), (2, "pc", "piece"), (3, "m", "metre")]
    assert len(rows(target, "items")) == 3


def test_seeded_rows_skip_identical(tmp_path, target):
    result = refresh(production(tmp_path), target, {"units": "skip-identical"},
                     seed=SEED + "; INSERT INTO units VALUES (9, 'l', 'litre')")
    assert result.ok, result.as_dict()
    assert [r[0] for r in rows(target, "units")] == [1, 2, 3, 9]  # the seed's own row stays
    units = next(t for t in result.tables if t["table"] == "units")
    assert units["written"] == 1 and units["seeded"] == 3


def test_seeded_row_that_differs_is_refused(tmp_path, target):
    with pytest.raises(RefreshError) as err:
        refresh(production(tmp_path), target, {"units": "skip-identical"},
                seed=SEED.replace("'piece'", "'pieces'"))
    line = err.value.one_line()
    assert "'units'" in line and "row id=2: label" in line


def test_a_database_error_while_loading_names_the_table(tmp_path, target):
    # a seeded row production lacks, but with a code production uses: the unique code breaks
    with pytest.raises(RefreshError) as err:
        refresh(production(tmp_path), target, seed="INSERT INTO units VALUES (7, 'm', 'x')")
    assert "loading table 'units' failed" in err.value.one_line()


class _Ctx:
    """Just enough of a RunContext for the provision step to fail early."""

    def __init__(self, tmp_path: Path, exc: BaseException):
        self.run_dir = tmp_path
        self._exc = exc

    def database_component(self):
        raise self._exc


@pytest.mark.parametrize("exc, says", [
    (StepFailed("schema migration of 1.0.0 failed (exit 1): boom"), "schema migration"),
    (sa.exc.IntegrityError("INSERT …", {}, sqlite3.IntegrityError(
        "UNIQUE constraint failed: units.code")), "UNIQUE constraint failed: units.code"),
    (RefreshError("the migrations seed rows into 'units'", where="refresh.seeded"), "'units'"),
    (ValueError("a bug"), "internal error: ValueError: a bug"),
])
def test_provision_failures_could_not_run(tmp_path, exc, says):
    with pytest.raises(PlantstageError) as err:
        Provision().run(_Ctx(tmp_path, exc))
    assert err.value.exit_code == EXIT_USAGE and says in err.value.one_line()
    assert not isinstance(err.value, StepFailed)
