"""`plantstage refresh` as a user runs it, on each engine pair, plus the bad inputs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.data import refresh_state
from plantstage.data._schema import target_metadata
from tests.conftest import EXAMPLE, run_cli

KEY = {"PLANTSTAGE_MASKING_KEY": "test-key-0123456789abcdef-0123456789"}
SENSITIVE = {"customers": ["name", "email", "phone"],
             "suppliers": ["name", "contact_name", "email", "phone"]}


@pytest.fixture(scope="module")
def small_production(tmp_path_factory) -> Path:
    """A small sample-plant production database (2 tenants, 20 % scale) on SQLite."""
    db = tmp_path_factory.mktemp("prod") / "production.sqlite"
    subprocess.run([sys.executable, str(EXAMPLE / "generate.py"), "--url", f"sqlite:///{db}",
                    "--tenants", "2", "--scale", "0.2"], check=True, capture_output=True)
    return db


def spec_copy(tmp_path: Path, production: str, *, schema: str = "migrations",
              extra: str = "") -> Path:
    """The sample spec, moved to ``tmp_path`` with another production URL."""
    text = (EXAMPLE / "plantstage.yaml").read_text()
    text = text.replace("path: releases/", f"path: {EXAMPLE}/releases/")
    text = text.replace('url: "sqlite:///.plantstage/production.sqlite"', f'url: "{production}"')
    text = text.replace("  schema: migrations\n", f"  schema: {schema}\n{extra}")
    text += f"\npaths: {{allow_outside: [{EXAMPLE}]}}\n"
    (tmp_path / "plantstage.yaml").write_text(text)
    return tmp_path


def plant(src_sqlite: Path, url: str) -> None:
    """Copy the SQLite production (unmasked) into another engine: that engine's production."""
    src = sa.create_engine(f"sqlite:///{src_sqlite}")
    md = sa.MetaData()
    md.reflect(src)
    dst = engines.connect_staging(url)
    md = target_metadata(md, list(md.tables), dst.dialect, same_engine=False)
    md.create_all(dst)
    engines.copy_rows(src, dst, skip=())
    src.dispose()
    dst.dispose()


def values(url: str, table: str, column: str) -> set:
    eng = engines.connect_staging(url)
    with eng.connect() as c:
        out = {r[0] for r in c.execute(sa.text(f"SELECT {column} FROM {table}"))}
    eng.dispose()
    return out


def check_masked(prod: str, stage: str) -> None:
    for t, cols in SENSITIVE.items():
        for c in cols:
            leaked = values(prod, t, c) & values(stage, t, c)
            assert not leaked, f"{t}.{c} leaked {sorted(leaked)[:3]}"
    assert all(e.endswith(".example") for e in values(stage, "customers", "email"))
    # Joins between masked tables still match, and the ledger is unchanged.
    q = ("SELECT COUNT(*), SUM(l.qty) FROM sales_orders o JOIN customers c ON c.id = o.customer_id"
         " JOIN sales_order_lines l ON l.order_id = o.id")
    for url in (prod, stage):
        eng = engines.connect_staging(url) if url == stage else engines.connect_production(url)
        with eng.connect() as c:
            got = tuple(c.execute(sa.text(q)).one())
            ledger = c.execute(sa.text("SELECT SUM(qty) FROM inventory_ledger")).scalar()
        eng.dispose()
        if url == prod:
            want = (got, ledger)
    assert (got, ledger) == want
    assert refresh_state(stage) == "complete"


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "leak scan: 0 of" in proc.stdout
    return proc.stdout


def test_sqlite_to_sqlite_sample_plant(production_db, tmp_path):
    before = hashlib.sha256(production_db.read_bytes()).hexdigest()
    stage = f"sqlite:///{tmp_path / 'staging.sqlite'}"
    out = ok(run_cli("refresh", str(EXAMPLE), "--to", stage, env=KEY))
    assert "Masking coverage" in out and "refreshed and verified" in out
    check_masked(f"sqlite:///{production_db}", stage)
    assert hashlib.sha256(production_db.read_bytes()).hexdigest() == before  # read-only


def test_subset_by_tenant_is_referentially_complete(small_production, tmp_path):
    spec = spec_copy(tmp_path, f"sqlite:///{small_production}", extra="""\
  subset:
    tenants: {codes: [acme-discrete]}
    window: {since: 2024-03-01, columns: {work_orders: created_at}}
    relations:
      - {from: inventory_ledger.ref, to: production_confirmations.message_id}
""")
    stage = tmp_path / "staging.sqlite"
    ok(run_cli("refresh", str(spec), "--to", f"sqlite:///{stage}", env=KEY))
    import sqlite3

    c = sqlite3.connect(stage)
    assert c.execute("PRAGMA foreign_key_check").fetchall() == []
    assert {r[0] for r in c.execute("SELECT DISTINCT tenant_id FROM inventory_ledger")} == {1}
    assert c.execute("SELECT COUNT(*) FROM tenants").fetchone() == (1,)
    # work orders before the window are kept only where a confirmation needs them
    p = sqlite3.connect(f"file:{small_production}?mode=ro", uri=True)
    all_wo = p.execute("SELECT COUNT(*) FROM work_orders WHERE tenant_id = 1").fetchone()[0]
    kept = c.execute("SELECT COUNT(*) FROM work_orders").fetchone()[0]
    assert 0 < kept < all_wo
    orphans = c.execute("SELECT COUNT(*) FROM production_confirmations pc LEFT JOIN work_orders w"
                        " ON w.id = pc.work_order_id WHERE w.id IS NULL").fetchone()[0]
    assert orphans == 0


def test_postgresql_to_postgresql_and_to_sqlite(small_production, pg_database, tmp_path):
    plant(small_production, pg_database)
    stage = pg_database + "_stage"
    spec = spec_copy(tmp_path, pg_database)
    try:
        ok(run_cli("refresh", str(spec), "--to", stage, env=KEY))
        check_masked(pg_database, stage)
        lite = f"sqlite:///{tmp_path / 'laptop.sqlite'}"
        ok(run_cli("refresh", str(spec_copy(tmp_path, pg_database, schema="source")),
                   "--to", lite, env=KEY))
        check_masked(pg_database, lite)
        # Same key, same values: the masked customer e-mails agree across engines.
        assert values(stage, "customers", "email") == values(lite, "customers", "email")
    finally:
        engines.adapter_for(stage).drop()


def test_mariadb_to_mariadb(small_production, mariadb_database, tmp_path):
    plant(small_production, mariadb_database)
    stage = mariadb_database + "_stage"
    try:
        ok(run_cli("refresh", str(spec_copy(tmp_path, mariadb_database, schema="source")),
                   "--to", stage, env=KEY))
        check_masked(mariadb_database, stage)
    finally:
        engines.adapter_for(stage).drop()


MINI = """version: 1
name: mini
estate: {{components: {{db: {{kind: database, tier: 1}}}}}}
environments:
  production: {{bindings: {{db: {{url: "sqlite:///prod.db"}}}}}}
  staging: {{bindings: {{db: {{url: "sqlite:///stage.db"}}}}}}
current: "1"
releases: [{{name: "1", version: "1", artifact: {{path: ., sha256: "{sha}"}}}}]
refresh:
{refresh}
"""


def mini(tmp_path: Path, refresh: str) -> Path:
    import sqlite3

    c = sqlite3.connect(tmp_path / "prod.db")
    c.executescript("""
      CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
      CREATE TABLE contacts (id INTEGER PRIMARY KEY, person_id INTEGER REFERENCES people(id),
                             email TEXT);
      INSERT INTO people VALUES (1, 'Ann Lee', 'ann@corp.com'), (2, 'Bo Chan', 'bo@corp.com');
      INSERT INTO contacts VALUES (1, 1, 'ann@corp.com');
    """)
    c.commit()
    c.close()
    (tmp_path / "plantstage.yaml").write_text(MINI.format(sha="0" * 64, refresh=refresh))
    return tmp_path


GOOD = """  rules:
    people: {id: keep, name: person, email: email}
    contacts: {id: keep, person_id: keep, email: email}"""


def test_mini_ok_and_the_leak_scan_catches_a_kept_copy(tmp_path):
    ok(run_cli("refresh", str(mini(tmp_path, GOOD)), env=KEY))
    (tmp_path / "plantstage.yaml").write_text(
        (tmp_path / "plantstage.yaml").read_text().replace(
            "contacts: {id: keep, person_id: keep, email: email}",
            "contacts: {id: keep, person_id: keep, email: {rule: keep, reviewed: true}}"))
    proc = run_cli("refresh", str(tmp_path), env=KEY)
    assert proc.returncode == 2 and "leak scan: 1 of" in proc.stdout
    assert "leaks: contacts.email (1: id=1)" in proc.stdout  # the row, never the value
    assert refresh_state(f"sqlite:///{tmp_path / 'stage.db'}") == "failed"


@pytest.mark.parametrize("refresh, env, message", [
    (GOOD.replace("email: email}", "mail: email}", 1), KEY, "people.mail"),
    (GOOD.replace("people:", "persons:"), KEY, "no table 'persons'"),
    ("  key: {env: NO_SUCH_KEY_VAR}\n" + GOOD, {}, "no masking key"),
    (GOOD.replace("name: person, ", ""), KEY, "people.name: column is unclassified"),
    (GOOD.replace("id: keep, name", "name"), KEY, "schema drift"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, refresh, env, message):
    proc = run_cli("refresh", str(mini(tmp_path, refresh)), env={"PLANTSTAGE_MASKING_KEY": "",
                                                                 **env})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # one line (may wrap once)
    assert not (tmp_path / "stage.db").exists()


def test_target_equal_to_source_and_unreachable_source(tmp_path):
    spec = mini(tmp_path, GOOD)
    proc = run_cli("refresh", str(spec), "--to", "production", env=KEY)
    assert proc.returncode == 2 and "the target is the production database" in proc.stderr
    proc = run_cli("refresh", str(spec), "--from", "postgresql://root@127.0.0.1:1/nope", env=KEY)
    assert proc.returncode == 2 and "cannot connect" in proc.stderr
    assert not (tmp_path / "stage.db").exists()


def test_allow_unclassified_tokenizes(tmp_path):
    spec = mini(tmp_path, GOOD.replace("name: person, ", ""))
    out = ok(run_cli("refresh", str(spec), "--allow-unclassified", env=KEY))
    assert "token" in out
    assert not values(f"sqlite:///{tmp_path / 'prod.db'}", "people", "name") & values(
        f"sqlite:///{tmp_path / 'stage.db'}", "people", "name")


# -- personal data inside free text (a new column of a table ruled "*": keep) -------------
GIVEN = ["Jennifer", "Michael", "Sofia", "Lars", "Priya", "Mr"]
FAMILY = ["Smith", "Okafor", "Lindqvist", "Brown", "Tanaka"]


def remark(i: int) -> str | None:
    if i % 5 == 0:
        return "deliver to dock 3, pallets stacked two high"
    if i % 17 == 0:
        return None
    g, f = GIVEN[i % len(GIVEN)], FAMILY[i % len(FAMILY)]
    return (f"Spoke with {g} {f} ({'+49 30 ' if i % 2 else '(030) '}{5550000 + i}); "
            f"confirmation to {g.lower()}.{f.lower()}{i}@buyer{i % 7}.com before shipping")


def plant_remarks(url: str, rows: int = 5000) -> None:
    """The mini production on any engine, with an orders table ruled "*": keep whose new
    ``remarks`` column holds names, phone numbers and e-mails inside text."""
    md = sa.MetaData()
    people = sa.Table("people", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("name", sa.String(80)), sa.Column("email", sa.String(120)))
    contacts = sa.Table("contacts", md, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("person_id", sa.ForeignKey("people.id")),
                        sa.Column("email", sa.String(120)))
    orders = sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True),
                      sa.Column("person_id", sa.ForeignKey("people.id")),
                      sa.Column("status", sa.String(16)), sa.Column("remarks", sa.Text))
    eng = engines.connect_staging(url) if "://" in url else sa.create_engine(url)
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(people.insert(), [{"id": 1, "name": "Ann Lee", "email": "ann@corp.com"},
                                    {"id": 2, "name": "Bo Chan", "email": "bo@corp.com"}])
        c.execute(contacts.insert(), [{"id": 1, "person_id": 1, "email": "ann@corp.com"}])
        if rows:
            c.execute(orders.insert(), [{"id": i, "person_id": 1 + i % 2, "status": "open",
                                         "remarks": remark(i)} for i in range(1, rows + 1)])
        # a production person's e-mail and name inside a note (in no pattern's word list)
        c.execute(orders.update().where(orders.c.id == 5).values(
            remarks="as agreed with Bo Chan, copy ann@corp.com"))
    eng.dispose()




def remarks_spec(tmp_path: Path, production: str, remarks: str = "") -> Path:
    rules = GOOD + "\n    orders: {" + remarks + '"*": keep}'
    text = MINI.format(sha="0" * 64, refresh=rules)
    text = text.replace('url: "sqlite:///prod.db"', f'url: "{production}"')
    (tmp_path / "plantstage.yaml").write_text(text)
    return tmp_path


def check_scrubbed(prod: str, stage: str) -> None:
    before = {r for r in values(prod, "orders", "remarks") if r}
    after = {r for r in values(stage, "orders", "remarks") if r}
    assert "deliver to dock 3, pallets stacked two high" in after  # the rest of the text stays
    text = "\n".join(after)
    for i in range(1, 200):
        r = remark(i)
        if r and "@" in r:
            g, f = GIVEN[i % len(GIVEN)], FAMILY[i % len(FAMILY)]
            assert f"{g.lower()}.{f.lower()}{i}@" not in text and str(5550000 + i) not in text
            if g != "Mr":
                assert f"{g} {f}" not in text
    assert "ann@corp.com" not in text and "Bo Chan" not in text
    assert len(after) > 100 and not after & (before - {"deliver to dock 3, pallets stacked "
                                                       "two high"})


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mariadb"])
def test_free_text_pii_in_a_kept_table_is_refused_then_scrubbed(engine, tmp_path, request):
    if engine == "sqlite":
        prod, stage = f"sqlite:///{tmp_path / 'prod.db'}", f"sqlite:///{tmp_path / 'stage.db'}"
    else:
        prod = request.getfixturevalue(
            "pg_database" if engine == "postgresql" else "mariadb_database")
        stage = prod + "_stage"
    plant_remarks(prod)
    try:
        proc = run_cli("refresh", str(remarks_spec(tmp_path, prod)), "--to", stage, env=KEY)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        err = proc.stderr.strip()
        assert "orders.remarks" in err and "Traceback" not in err
        for found in ("e-mail addresses", "phone numbers", "person names"):
            assert found in err
        assert "refresh.rules.orders.remarks: scrub" in err
        assert len(err.splitlines()) <= 3
        if engine == "sqlite":  # nothing written
            assert not (tmp_path / "stage.db").exists()
        else:
            with pytest.raises(sa.exc.OperationalError, match="does not exist|Unknown database"):
                refresh_state(stage)

        ok(run_cli("refresh", str(remarks_spec(tmp_path, prod, "remarks: scrub, ")),
                   "--to", stage, env=KEY))
        check_scrubbed(prod, stage)

        # kept as reviewed: the leak scan still looks inside the text and names the column
        proc = run_cli("refresh", str(remarks_spec(
            tmp_path, prod, "remarks: {rule: keep, reviewed: true}, ")), "--to", stage, env=KEY)
        assert proc.returncode == 2 and "leaks: orders.remarks (1: id=5)" in proc.stdout
        assert refresh_state(stage) == "failed"

        # allowed through: free text with personal data is scrubbed, not tokenized
        out = ok(run_cli("refresh", str(remarks_spec(tmp_path, prod)), "--to", stage,
                         "--allow-unclassified", env=KEY))
        assert "scrub" in out
        check_scrubbed(prod, stage)
    finally:
        if engine != "sqlite":
            engines.adapter_for(stage).drop()


# -- column defaults survive a refresh into another engine ------------------------------
DEFAULTS = """
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  status VARCHAR(16) NOT NULL DEFAULT 'open',
  qty INTEGER NOT NULL DEFAULT 0,
  ratio NUMERIC(6, 2) NOT NULL DEFAULT 1.5,
  urgent BOOLEAN NOT NULL DEFAULT 0,
  note VARCHAR(40) DEFAULT 'it''s new',
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  touched_at DATETIME NOT NULL DEFAULT (datetime('now')),
  day DATE DEFAULT CURRENT_DATE
);
INSERT INTO jobs (id) VALUES (1);
"""


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mariadb"])
def test_column_defaults_survive_a_refresh(engine, tmp_path, request):
    import sqlite3

    from plantstage.data import refresh_database
    from plantstage.spec.masking import RefreshSpec

    c = sqlite3.connect(tmp_path / "prod.db")
    c.executescript(DEFAULTS)
    c.commit()
    c.close()
    url = {"sqlite": f"sqlite:///{tmp_path / 'stage.db'}",
           "postgresql": "pg_database", "mariadb": "mariadb_database"}[engine]
    if "://" not in url:
        url = request.getfixturevalue(url)
    target = engines.adapter_for(url)
    spec = RefreshSpec.model_validate({"schema": "source", "rules": {"jobs": {"*": "keep"}}})
    result = refresh_database(f"sqlite:///{tmp_path / 'prod.db'}", target, spec,
                              key=KEY["PLANTSTAGE_MASKING_KEY"].encode(), key_source="test")
    assert result.ok and not result.notes, result.as_dict()
    eng = target.engine()
    try:
        with eng.begin() as conn:  # the app inserts a row naming only its id
            conn.execute(sa.text("INSERT INTO jobs (id) VALUES (2)"))
            row = conn.execute(sa.text("SELECT status, qty, ratio, urgent, note, created_at, "
                                       "touched_at, day FROM jobs WHERE id = 2")).one()
    finally:
        eng.dispose()
    assert (row[0], row[1], float(row[2]), bool(row[3]), row[4]) == (
        "open", 0, 1.5, False, "it's new")
    assert row[5] is not None and row[6] is not None and row[7] is not None


# -- masking coverage at ERP scale ----------------------------------------------------------
def test_plan_lists_every_column_and_its_block_passes(tmp_path):
    """500 tables: patterns keep 200 (their integer foreign keys named account/tax are not
    personal data); 300 more have five sensitive columns each. --plan lists all 1,500 and the
    rules block it prints, pasted into the spec, passes."""
    import sqlite3

    c = sqlite3.connect(tmp_path / "prod.db")
    c.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, code VARCHAR(20))")
    c.execute("INSERT INTO accounts VALUES (1, 'A-1')")
    c.execute("CREATE TABLE taxes (id INTEGER PRIMARY KEY, code VARCHAR(20))")
    c.execute("INSERT INTO taxes VALUES (1, 'VAT-19')")
    for i in range(200):
        c.execute(f"CREATE TABLE ir_t{i} (id INTEGER PRIMARY KEY, account INTEGER REFERENCES "
                  f"accounts(id), tax INTEGER REFERENCES taxes(id), note TEXT)")
        c.execute(f"INSERT INTO ir_t{i} VALUES (1, 1, 1, 'batch closed')")
    for i in range(300):
        c.execute(f"CREATE TABLE res_t{i} (id INTEGER PRIMARY KEY, partner_name VARCHAR(80), "
                  f"email VARCHAR(80), phone VARCHAR(40), street VARCHAR(80), "
                  f"list_price NUMERIC(10, 2))")
        c.execute(f"INSERT INTO res_t{i} VALUES (1, 'Partner {i}', 'p{i}@corp.com', "
                  f"'+49 30 {1000000 + i}', '{i} Mill Street', {i}.5)")
    c.commit()
    c.close()
    rules = '  rules:\n    "ir_*": keep\n    accounts: keep\n    taxes: keep\n'
    (tmp_path / "plantstage.yaml").write_text(MINI.format(sha="0" * 64, refresh=rules))

    proc = run_cli("refresh", str(tmp_path), "--plan", env=KEY)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    assert "2604 columns: 1500 need a rule" in proc.stdout
    block = proc.stdout[proc.stdout.index("refresh:\n  rules:\n"):]
    entries = [ln for ln in block.splitlines() if ln.startswith("      ")
               and not ln.startswith('      "*"')]
    assert len(entries) == 1500
    assert "      email: email  #" in block and "      list_price: {rule: noise" in block
    assert not any("ir_t" in ln for ln in block.splitlines())  # account/tax: not personal

    proc = run_cli("refresh", str(tmp_path), env=KEY)  # every column named in one line
    assert proc.returncode == 2 and "1500 columns need a rule" in proc.stderr
    assert "res_t299.list_price" in proc.stderr and "(and " not in proc.stderr

    pasted = rules + "".join(ln + "\n" for ln in block.splitlines()[2:])
    (tmp_path / "plantstage.yaml").write_text(MINI.format(sha="0" * 64, refresh=pasted))
    ok(run_cli("refresh", str(tmp_path), env=KEY))
    stage = f"sqlite:///{tmp_path / 'stage.db'}"
    assert values(stage, "res_t7", "email") != {"p7@corp.com"}
    assert values(stage, "ir_t3", "account") == {1}


def test_a_rehearsal_whose_provisioning_fails_could_not_run(tmp_path, production_db):
    """Staging cannot be provisioned (a rule writes NULL into a NOT NULL column of the schema
    the migrations made): exit 2, one line naming the table and the cause — never NO-GO (the
    release under test never ran)."""
    text = (EXAMPLE / "plantstage.yaml").read_text()
    text = text.replace("path: releases/", f"path: {EXAMPLE}/releases/")
    text = text.replace("sqlite:///.plantstage/production.sqlite", f"sqlite:///{production_db}")
    assert "      phone: phone\n" in text
    text = text.replace("      phone: phone\n", '      phone: "null"\n', 1)  # customers
    text += f"\npaths: {{allow_outside: [{EXAMPLE}]}}\n"
    import shutil

    plant_dir = tmp_path / "plant"  # the spec's folder: its plugins and config files too
    shutil.copytree(EXAMPLE, plant_dir, ignore=shutil.ignore_patterns(
        ".plantstage", "releases", "__pycache__"))
    (plant_dir / "plantstage.yaml").write_text(text)
    out = tmp_path / "o"
    proc = run_cli("rehearse", str(plant_dir), "--release", "1.1.0", "--out", str(out), env=KEY)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr
    err = proc.stderr.strip()
    assert "loading table 'customers' failed" in err and "NOT NULL" in err, err
    assert "Traceback" not in err and len(err.splitlines()) <= 3
    assert "NO-GO" not in proc.stdout


def test_personal_data_past_the_sample_fails_the_leak_scan(tmp_path):
    """The coverage check reads 500 values; the leak scan reads every value of kept text."""
    prod = f"sqlite:///{tmp_path / 'prod.db'}"
    plant_remarks(prod, rows=0)
    eng = sa.create_engine(prod)
    with eng.begin() as c:
        c.execute(sa.text("INSERT INTO orders (id, person_id, status, remarks) VALUES "
                          "(:i, 1, 'open', :r)"),
                  [{"i": i, "r": "deliver to dock 3" if i <= 800 else
                    f"call back on +49 30 {5550000 + i} first"} for i in range(1, 806)])
    eng.dispose()
    proc = run_cli("refresh", str(remarks_spec(tmp_path, prod)), env=KEY)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    assert "leaks: orders.remarks (5: id=801, id=802, id=803, id=804, id=805)" in proc.stdout
    # reviewed: the finder's findings may be copied (production's own values still may not)
    ok(run_cli("refresh", str(remarks_spec(
        tmp_path, prod, "remarks: {rule: keep, reviewed: true}, ")), env=KEY))
