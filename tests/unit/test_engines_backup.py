"""Backup, verify and restore on each engine, with the engines' own tools (docs/backup.md)."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.engines.backups import take_backup, verify_backup
from plantstage.errors import EngineError
from plantstage.rehearsal.steps import StepFailed
from plantstage.rehearsal.steps.backup import Backup
from tests.conftest import requires_mariadb, requires_postgres

# Per engine: the schema (a keyed table, a view, a trigger that writes an audit row), and how
# to read the key generator's next value back.
SCHEMA = {
    "sqlite": [
        "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT NOT NULL, "
        "price NUMERIC(12,2))",
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, item_id INTEGER)",
        "CREATE VIEW dear AS SELECT code FROM items WHERE price > 2",
        "CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN "
        "INSERT INTO audit (item_id) VALUES (new.id); END",
    ],
    "postgresql": [
        "CREATE TABLE items (id SERIAL PRIMARY KEY, code TEXT NOT NULL, price NUMERIC(12,2))",
        "CREATE TABLE audit (id SERIAL PRIMARY KEY, item_id INTEGER)",
        "CREATE SEQUENCE batch_no START 100",
        "CREATE VIEW dear AS SELECT code FROM items WHERE price > 2",
        "CREATE FUNCTION audit_item() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO audit (item_id) VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW "
        "EXECUTE FUNCTION audit_item()",
    ],
    "mariadb": [
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, code TEXT NOT NULL, "
        "price DECIMAL(12,2))",
        "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, item_id INT)",
        "CREATE SEQUENCE batch_no START WITH 100",
        "CREATE VIEW dear AS SELECT code FROM items WHERE price > 2",
        "CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW "
        "INSERT INTO audit (item_id) VALUES (NEW.id)",
    ],
}


def _key_state(engine_name: str, conn: sa.Connection) -> dict[str, int]:
    """Where each key generator is: the next key it would hand out."""
    if engine_name == "sqlite":
        return {n: s for n, s in conn.execute(sa.text("SELECT name, seq FROM sqlite_sequence"))}
    if engine_name == "postgresql":
        return {n: conn.execute(sa.text(f"SELECT last_value FROM {n}")).scalar()
                for n in ("items_id_seq", "batch_no")}
    return {"items": conn.execute(sa.text(
                "SELECT auto_increment FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = 'items'")).scalar(),
            "batch_no": conn.execute(sa.text("SELECT next_not_cached_value FROM batch_no")
                                     ).scalar()}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_postgres),
                        pytest.param("mariadb", marks=requires_mariadb)])
def staging(request, tmp_path):
    """An adapter on a scratch database of each engine, with the schema and five items."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'staging.sqlite'}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = request.getfixturevalue("mariadb_database")
    adapter = engines.adapter_for(url)
    if request.param == "sqlite":
        adapter.create()
    eng = adapter.engine()
    with eng.begin() as c:
        for stmt in SCHEMA[request.param]:
            c.execute(sa.text(stmt))
        for i in range(5):
            c.execute(sa.text("INSERT INTO items (code, price) VALUES (:c, :p)"),
                      {"c": f"I{i}", "p": i + 0.5})
        # Keys handed out and rolled back or deleted stay used: the generator is past the rows.
        c.execute(sa.text("DELETE FROM items WHERE code = 'I4'"))
        if request.param != "sqlite":
            c.execute(sa.text("SELECT nextval(batch_no)" if request.param == "mariadb"
                              else "SELECT nextval('batch_no')"))
    eng.dispose()
    adapter.test_engine_name = request.param
    yield adapter
    if request.param != "sqlite":
        adapter.drop()  # the restore re-created it; the fixture drops it again (IF EXISTS)


def _state(adapter) -> dict:
    eng = adapter.engine()
    try:
        with eng.connect() as c:
            return {
                "items": c.execute(sa.text("SELECT id, code, price FROM items ORDER BY id")).all(),
                "audit": c.execute(sa.text("SELECT item_id FROM audit ORDER BY id")).all(),
                "dear": c.execute(sa.text("SELECT code FROM dear ORDER BY code")).all(),
                "keys": _key_state(adapter.test_engine_name, c),
            }
    finally:
        eng.dispose()


def test_round_trip_keeps_rows_keys_views_triggers(staging, tmp_path):
    before = _state(staging)
    taken = take_backup(staging, tmp_path)
    check = verify_backup(staging, taken)
    assert check.verified, check.differences
    assert check.restore_seconds is not None and check.restore_seconds > 0
    assert taken.snapshot["items"]["rows"] == 4 and taken.bytes > 0

    # The release damages staging: extra rows, rows gone, the view dropped.
    eng = staging.engine()
    with eng.begin() as c:
        c.execute(sa.text("INSERT INTO items (code, price) VALUES ('X', 9)"))
        c.execute(sa.text("DELETE FROM items WHERE code = 'I0'"))
        c.execute(sa.text("DROP VIEW dear"))
        assert c.execute(sa.text("SELECT count(*) FROM items")).scalar() == 4
    eng.dispose()

    seconds = staging.restore(taken.path)
    assert isinstance(seconds, float) and seconds > 0
    after = _state(staging)
    assert after == before  # exactly the backup's rows, key generators where they were
    # The trigger came back and fires; the next key is past every key handed out before.
    eng = staging.engine()
    with eng.begin() as c:
        c.execute(sa.text("INSERT INTO items (code, price) VALUES ('N', 1)"))
        new_id = c.execute(sa.text("SELECT id FROM items WHERE code = 'N'")).scalar()
        audited = c.execute(sa.text("SELECT count(*) FROM audit WHERE item_id = :i"),
                            {"i": new_id}).scalar()
    eng.dispose()
    assert new_id == 6 and audited == 1


def test_truncated_backup_fails_verify_in_one_line(staging, tmp_path):
    taken = take_backup(staging, tmp_path)
    data = taken.path.read_bytes()
    taken.path.write_bytes(data[: len(data) // 2])
    check = verify_backup(staging, taken)
    assert not check.verified
    assert check.problem and "\n" not in check.problem
    assert check.problem.startswith(("the backup does not restore", "table ")), check.problem
    # The scratch database is gone again; staging itself is untouched.
    assert _state(staging)["items"]
    with pytest.raises(EngineError):
        staging.scratch("verify").restore(tmp_path / "no-such-backup")


def test_backup_missing_rows_names_the_table(tmp_path):
    """A backup that restores cleanly but lacks data fails on the first differing table."""
    adapter = engines.adapter_for(f"sqlite:///{tmp_path / 's.sqlite'}")
    adapter.create()
    eng = adapter.engine()
    with eng.begin() as c:
        for stmt in SCHEMA["sqlite"]:
            c.execute(sa.text(stmt))
        c.execute(sa.text("INSERT INTO items (code, price) VALUES ('A', 1), ('B', 3)"))
    eng.dispose()
    taken = take_backup(adapter, tmp_path)
    db = sqlite3.connect(taken.path)
    db.execute("DELETE FROM audit WHERE item_id = 2")
    db.commit()
    db.close()
    check = verify_backup(adapter, taken)
    assert not check.verified
    assert check.problem == "table audit: 2 rows backed up, 1 restored"


@requires_mariadb
def test_mariadb_dump_cut_at_a_statement_names_the_table(mariadb_database, tmp_path):
    adapter = engines.adapter_for(mariadb_database)
    eng = adapter.engine()
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE lots (id INT PRIMARY KEY, qty INT)"))
        c.execute(sa.text("INSERT INTO lots VALUES (1, 5), (2, 7)"))
    eng.dispose()
    taken = take_backup(adapter, tmp_path)
    # Drop the table's INSERT statement (it may span lines): the dump still restores cleanly.
    text = taken.path.read_text()
    start = text.index("INSERT INTO `lots`")
    taken.path.write_text(text[:start] + text[text.index(";\n", start) + 2:])
    check = verify_backup(adapter, taken)
    assert check.problem == "table lots: 2 rows backed up, 0 restored"


@pytest.mark.parametrize("engine_name", [
    "sqlite", pytest.param("postgresql", marks=requires_postgres)])
def test_fingerprint_is_the_backups_own_snapshot(engine_name, tmp_path, request):
    """A write that lands while the backup is taken is in neither the backup nor its
    fingerprint: verification holds (the engines share the dump's snapshot)."""
    url = (f"sqlite:///{tmp_path / 's.sqlite'}" if engine_name == "sqlite"
           else request.getfixturevalue("pg_database"))
    adapter = engines.adapter_for(url)
    if engine_name == "sqlite":
        adapter.create()
    eng = adapter.engine()
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE lots (id INTEGER PRIMARY KEY, qty INTEGER)"))
        c.execute(sa.text("INSERT INTO lots VALUES (1, 5)"))

    def read(conn):
        with eng.begin() as other:  # the app writes in the middle of the backup
            other.execute(sa.text("INSERT INTO lots VALUES (2, 7)"))
        return engines.snapshot(conn)

    path, snap = adapter.backup_consistent(tmp_path, read)
    eng.dispose()
    assert snap["lots"]["rows"] == 1
    restored = adapter.scratch("t")
    try:
        restored.restore(path)
        e2 = restored.engine()
        assert engines.snapshot(e2) == snap
        e2.dispose()
    finally:
        restored.drop()


def test_backup_step_records_signals_and_fails_unverified(tmp_path, monkeypatch):
    adapter = engines.adapter_for(f"sqlite:///{tmp_path / 's.sqlite'}")
    adapter.create()
    eng = adapter.engine()
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE lots (id INTEGER PRIMARY KEY, qty INTEGER)"))
        c.execute(sa.text("INSERT INTO lots VALUES (1, 5)"))
    eng.dispose()
    signals: dict[str, float] = {}
    ctx = SimpleNamespace(staging_db=adapter, run_dir=tmp_path, signals_from=signals.update,
                          signal=signals.__setitem__, cleanups=[])
    results = Backup().run(ctx)
    assert results["verify"]["verified"] and ctx.backup_snapshot["lots"]["rows"] == 1
    assert signals["backup.verified"] == 1.0 and signals["backup.bytes"] > 0
    assert {"backup.seconds", "backup.verify_seconds", "backup.restore_seconds"} <= set(signals)
    assert results["pitr"]["available"] is False and results["pitr"]["reason"]

    # The copy the backup tool wrote loses a row on its way to disk (the verify must see it).
    real = type(adapter).backup_consistent

    def lossy(self, dest_dir, read):
        path, value = real(self, dest_dir, read)
        db = sqlite3.connect(path)
        db.execute("DELETE FROM lots")
        db.commit()
        db.close()
        return path, value

    monkeypatch.setattr(type(adapter), "backup_consistent", lossy)
    with pytest.raises(StepFailed, match=r"backup did not verify: table lots: 1 rows backed up, "
                                         r"0 restored"):
        Backup().run(ctx)
    assert signals["backup.verified"] == 0.0
    # The rollback drill sees no backup to restore (the unverified one is not offered).
    assert ctx.backup_snapshot is None and ctx.backup_path is None


@requires_postgres
def test_postgresql_restore_into_the_prepared_database(pg_database, tmp_path):
    """The empty database ``prepare_restore`` made is the one the restore fills; a spare that
    is not empty is never used; ``drop`` removes both."""
    adapter = engines.adapter_for(pg_database)
    eng = adapter.engine()
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE lots (id SERIAL PRIMARY KEY, qty INTEGER)"))
        c.execute(sa.text("INSERT INTO lots (qty) VALUES (5), (7)"))
    eng.dispose()
    path = adapter.backup(tmp_path)
    spare = adapter.scratch("restoring")
    adapter.prepare_restore()
    e = spare.engine()
    with e.begin() as c:  # a leftover half-restored spare: must not receive the restore
        c.execute(sa.text("CREATE TABLE junk (x INTEGER)"))
    e.dispose()
    adapter.restore(path)
    adapter.prepare_restore()
    adapter.restore(path)

    def tables(url) -> set[str]:
        e = engines.connect_staging(str(url))
        try:
            return set(sa.inspect(e).get_table_names())
        finally:
            e.dispose()

    assert tables(adapter.url) == {"lots"}
    admin = sa.create_engine("postgresql+psycopg://root@127.0.0.1:5432/postgres")

    def names() -> set[str]:
        with admin.connect() as c:
            return {r[0] for r in c.execute(sa.text("SELECT datname FROM pg_database"))}

    assert spare.url.database not in names()  # consumed by the restore (renamed)
    adapter.prepare_restore()
    assert spare.url.database in names()
    adapter.drop()
    assert not {adapter.url.database, spare.url.database} & names()
    admin.dispose()


def _databases(adapter) -> set[str]:
    eng = adapter._admin()
    try:
        with eng.connect() as c:
            sql = ("SELECT datname FROM pg_database" if adapter.name == "postgresql"
                   else "SHOW DATABASES")
            return {r[0] for r in c.execute(sa.text(sql))}
    finally:
        eng.dispose()


def _with_lots(url: str):
    adapter = engines.adapter_for(url)
    eng = adapter.engine()
    with eng.begin() as c:
        c.execute(sa.text("CREATE TABLE lots (id INT PRIMARY KEY, qty INT)"))
        c.execute(sa.text("INSERT INTO lots VALUES (1, 5), (2, 7)"))
    eng.dispose()
    return adapter


def _lots(adapter) -> int:
    eng = adapter.engine()
    try:
        with eng.connect() as c:
            return c.execute(sa.text("SELECT count(*) FROM lots")).scalar()
    finally:
        eng.dispose()


@requires_postgres
def test_postgresql_restore_of_a_bad_dump_says_where_staging_is(pg_database, tmp_path):
    """Not a dump at all: refused before anything is dropped. A dump cut after its table of
    contents lists but fails to load: the part-restored copy is dropped, never renamed to
    staging, and the one-line error says staging is gone."""
    adapter = _with_lots(pg_database)
    eng = adapter.engine()
    with eng.begin() as c:  # enough rows that the compressed data is most of the dump
        c.execute(sa.text("INSERT INTO lots SELECT g, g FROM generate_series(3, 2000) g"))
    eng.dispose()
    path = adapter.backup(tmp_path)
    junk = tmp_path / "junk.pgdump"
    junk.write_bytes(b"not a dump\n" * 100)
    with pytest.raises(EngineError) as bad:
        adapter.restore(junk)
    assert "\n" not in bad.value.one_line() and "left as it was" in bad.value.message
    assert _lots(adapter) == 2000  # untouched

    data = bytearray(path.read_bytes())  # the table of contents reads, the rows do not
    at = len(data) * 8 // 10
    data[at:at + 40] = bytes(40)
    path.write_bytes(bytes(data))
    with pytest.raises(EngineError) as cut:
        adapter.restore(path)
    msg = cut.value.one_line()
    assert "\n" not in msg and msg.count("pg_restore failed") == 1, msg
    assert f"staging database {adapter.url.database} was dropped and is gone" in msg, msg
    assert "part-restored copy was dropped" in msg, msg
    assert not {adapter.url.database, adapter._spare_name()} & _databases(adapter)


@requires_mariadb
def test_mariadb_restore_of_a_bad_dump_says_where_staging_is(mariadb_database, tmp_path):
    """A dump cut short (no "-- Dump completed" trailer) is refused before staging is
    dropped; a complete dump that fails while loading leaves no part-restored staging."""
    adapter = _with_lots(mariadb_database)
    path = adapter.backup(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(EngineError) as cut:
        adapter.restore(path)
    assert "\n" not in cut.value.one_line() and "left as it was" in cut.value.message
    assert _lots(adapter) == 2  # untouched

    start = text.index("INSERT INTO `lots`")
    path.write_text(text[:start] + "INSERT INTO `no_such_table` VALUES (1);\n" + text[start:])
    with pytest.raises(EngineError) as broken:
        adapter.restore(path)
    msg = broken.value.one_line()
    assert "\n" not in msg and msg.startswith(f"{adapter.label}: mariadb restore failed"), msg
    assert f"staging database {adapter.url.database} was dropped and is gone" in msg, msg
    assert adapter.url.database not in _databases(adapter)


@pytest.mark.parametrize("url,tool", [("postgresql://root@127.0.0.1:5432/x", "pg_dump"),
                                      ("mysql://root@127.0.0.1:3306/x", "mariadb-dump")])
def test_a_client_tool_that_hangs_is_stopped_with_one_line(url, tool, tmp_path, monkeypatch):
    """The tool is a stand-in that never finishes (a dump waiting on a lock forever): it is
    killed at the timeout, and the backup fails in one line saying so."""
    import plantstage.engines._tools as tools

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / tool).write_text("#!/bin/sh\nexec sleep 600\n")
    (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(tools, "TOOL_TIMEOUT_S", 0.5)
    with pytest.raises(EngineError) as exc:
        engines.adapter_for(url).backup(tmp_path)
    assert exc.value.message.endswith(f"failed: error: {tool} timed out after 0.5 s")
    assert "\n" not in exc.value.one_line()


@requires_postgres
def test_keep_staging_keeps_no_spare_restore_database(pg_database, tmp_path, monkeypatch):
    """A rehearsal kept with --keep-staging keeps its staging database, not the empty
    ``<staging>_restoring`` the backup step made for a restore that never came."""
    from plantstage.rehearsal.runner import run_rehearsal
    from plantstage.rehearsal.steps import Step
    from plantstage.spec.loader import load_spec
    from tests.conftest import EXAMPLE

    adapter = _with_lots(pg_database)

    class UsesStaging(Step):
        name, title = "uses-staging", "Staging is the scratch database"

        def run(self, ctx):
            ctx.staging_db = adapter
            return {}

    monkeypatch.setenv("PLANTSTAGE_KEY_DIR", str(tmp_path / "keys"))
    loaded = load_spec(EXAMPLE)
    run_rehearsal(loaded, loaded.spec.release("1.1.0"), loaded.spec.release("1.0.0"),
                  tmp_path / "run", plan=[UsesStaging(), Backup()], keep_staging=True)
    names = _databases(adapter)
    assert adapter.url.database in names and adapter._spare_name() not in names
    adapter.drop()


_PASSWORD = 'p:w"d\\ #x'  # a colon, a quote, a backslash, a space and a comment sign


@requires_mariadb
def test_mariadb_tools_get_the_password_from_a_private_file(mariadb_database, tmp_path,
                                                            monkeypatch):
    """A user with a password (no MYSQL_PWD anywhere): mariadb-dump and mariadb authenticate
    through the 0600 option file, which is gone afterwards."""
    import tempfile
    import uuid
    from urllib.parse import quote

    adapter = _with_lots(mariadb_database)
    user = f"ps_pw_{uuid.uuid4().hex[:8]}"
    admin = adapter._admin()
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw"), {"pw": _PASSWORD})
        c.execute(sa.text(f"GRANT ALL ON `{adapter.url.database}`.* TO '{user}'@'%'"))
    secrets_dir = tmp_path / "tmp"
    secrets_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(secrets_dir))
    monkeypatch.delenv("MYSQL_PWD", raising=False)
    import plantstage.engines.mariadb as mariadb_engine

    calls: list[tuple[list[str], dict]] = []
    real_run = mariadb_engine.run_tool

    def recording(cmd, **kw):  # passes through; remembers how each tool was started
        calls.append((cmd, kw["env"]))
        return real_run(cmd, **kw)

    monkeypatch.setattr(mariadb_engine, "run_tool", recording)
    try:
        url = (f"mysql://{user}:{quote(_PASSWORD, safe='')}@127.0.0.1:3306/"
               f"{adapter.url.database}")
        with_pw = engines.adapter_for(url)
        path = with_pw.backup(tmp_path)
        assert "INSERT INTO `lots`" in path.read_text()
        with_pw.restore(path)
        assert _lots(adapter) == 2
        assert list(secrets_dir.iterdir()) == []
        assert len(calls) == 2 and all(
            cmd[1].startswith("--defaults-extra-file=") and "MYSQL_PWD" not in env
            and not any(_PASSWORD in a for a in cmd) for cmd, env in calls)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"DROP USER '{user}'@'%'"))
        admin.dispose()


def test_postgresql_tools_get_the_password_from_a_private_passfile(tmp_path, monkeypatch):
    """pg_dump (a stand-in that reports what it was given: the server here trusts every
    local connection, so it would not ask) gets a 0600 PGPASSFILE with the password escaped,
    and no PGPASSWORD, even one set outside; the file is gone afterwards."""
    import json
    import tempfile
    from urllib.parse import quote

    bin_dir, secrets_dir = tmp_path / "bin", tmp_path / "tmp"
    bin_dir.mkdir()
    secrets_dir.mkdir()
    report = tmp_path / "seen.json"
    (bin_dir / "pg_dump").write_text(
        "#!/usr/bin/env python3\nimport json, os, stat, sys\n"
        "pf = os.environ.get('PGPASSFILE')\n"
        f"json.dump({{'PGPASSWORD': os.environ.get('PGPASSWORD'), 'file': open(pf).read(), "
        f"'mode': stat.S_IMODE(os.stat(pf).st_mode)}}, open({str(report)!r}, 'w'))\n"
        "open(sys.argv[sys.argv.index('-f') + 1], 'w').close()\n")
    (bin_dir / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PGPASSWORD", "from-outside")
    monkeypatch.setattr(tempfile, "tempdir", str(secrets_dir))
    adapter = engines.adapter_for(
        f"postgresql://app:{quote(_PASSWORD, safe='')}@127.0.0.1:5432/x")
    adapter.backup(tmp_path)
    seen = json.loads(report.read_text())
    assert seen == {"PGPASSWORD": None, "file": '*:*:*:*:p\\:w"d\\\\ #x\n', "mode": 0o600}
    assert list(secrets_dir.iterdir()) == []
