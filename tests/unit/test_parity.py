"""Unit tests of plantstage.parity: parsing, secrets, comparison rules, schema reflection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from plantstage.parity._compare import compare_layer
from plantstage.parity._model import Finding, LayerFacts, ParityReport
from plantstage.parity.collectors import config as cfg
from plantstage.parity.collectors import schema as sch
from plantstage.spec.parity import AllowedDifference, ParitySpec
from tests.conftest import requires_mariadb, requires_postgres

NAMES = ("production", "staging")
TIERS = {"erp": 1, "erp-db": 1, "wms": 2, "hist": 4}


def facts(layer: str, **kv) -> LayerFacts:
    lf = LayerFacts(layer)
    for k, (comp, v) in kv.items():
        lf.add(k.replace("__", "."), v, comp)
    return lf


def by_key(findings: list[Finding]) -> dict[str, Finding]:
    return {f.key: f for f in findings}


# -- config parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,text,expected", [
    ("a.yaml", "server:\n  workers: 4\n  tags: [a, b]\n", {"server.workers": 4,
                                                          "server.tags": ["a", "b"]}),
    ("a.json", '{"db": {"pool": 5}, "x": null}', {"db.pool": 5, "x": None}),
    ("a.ini", "[server]\nworkers = 4\n", {"server.workers": "4"}),
    ("a.env", "# c\nA=1\nexport B='two words'\n", {"A": "1", "B": "two words"}),
])
def test_config_formats_flatten(tmp_path: Path, name, text, expected):
    p = tmp_path / name
    p.write_text(text)
    assert cfg.flatten(cfg.load_source(p)) == expected


@pytest.mark.parametrize("name,text,line", [
    ("bad.yaml", "a: 1\nb: [unclosed\nc: 2\n", ":"),
    ("bad.json", '{"a": 1,\n "b": }', ":2:"),
    ("bad.ini", "[s]\nno equals sign here\n", ":2"),
    ("bad.env", "A=1\nthis is not env\n", ":2:"),
])
def test_config_parse_errors_name_file_and_line(tmp_path: Path, name, text, line):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(cfg.ConfigUnreadable) as exc:
        cfg.load_source(p)
    assert f"{p}{line}" in str(exc.value)


def test_secrets_are_compared_by_digest_and_never_shown():
    pats = ParitySpec().secrets
    shown, secret = cfg.redact("database.password", "hunter2", pats)
    assert secret and "hunter2" not in shown and shown.startswith("secret:")
    assert cfg.redact("DB_PASSWORD", "hunter2", pats)[0] == shown  # same value, same digest
    assert cfg.redact("DB_PASSWORD", "hunter3", pats)[0] != shown
    url, secret = cfg.redact("dsn", "postgresql://erp:s3cr3t@db:5432/erp", pats)
    assert secret and "s3cr3t" not in url and url.startswith("postgresql://erp:secret-")
    assert cfg.redact("server.workers", 4, pats) == (4, False)


def test_config_collector_hides_secret_values(tmp_path: Path):
    lf = LayerFacts("config")
    (tmp_path / "x.env").write_text("ERP_SECRET_KEY=abc123xyz\nLEVEL=info\n")
    data = cfg.flatten(cfg.load_source(tmp_path / "x.env"))
    for k, v in data.items():
        lf.add(k, cfg.redact(k, v, ParitySpec().secrets)[0], "erp")
    assert "abc123xyz" not in repr(lf.facts)
    assert lf.facts["LEVEL"].value == "info"


# -- comparison -------------------------------------------------------------------------------
def test_same_drift_and_severity_from_tier():
    a = facts("config", k1=("erp", 1), k2=("wms", "x"), k3=("hist", True))
    b = facts("config", k1=("erp", 1), k2=("wms", "y"), k3=("hist", False))
    found, _ = compare_layer("config", a, b, NAMES, ParitySpec(), TIERS)
    f = by_key(found)
    assert f["k1"].status == "same"
    assert (f["k2"].status, f["k2"].severity, f["k2"].blocking) == ("drift", "high", True)
    assert (f["k3"].status, f["k3"].severity, f["k3"].blocking) == ("drift", "low", False)


def test_missing_on_one_side_is_drift_with_direction():
    a = facts("schema", index__items=("erp-db", "index"))
    b = facts("schema")
    f = by_key(compare_layer("schema", a, b, NAMES, ParitySpec(), TIERS)[0])["index.items"]
    assert f.status == "drift" and f.severity == "critical" and "missing in staging" in f.reason


def test_scale_down_is_allowed_but_scale_up_is_drift():
    spec = ParitySpec(allowed=[AllowedDifference(key="*.scale", differ="scale-down",
                                                 reason="smaller staging")])
    a = facts("topology", erp__scale=("erp", 3), wms__scale=("wms", 1))
    b = facts("topology", erp__scale=("erp", 1), wms__scale=("wms", 2))
    f = by_key(compare_layer("topology", a, b, NAMES, spec, TIERS)[0])
    assert f["erp.scale"].status == "allowed" and f["erp.scale"].reason == "smaller staging"
    assert f["wms.scale"].status == "drift" and "scaled above" in f["wms.scale"].reason


def test_hostname_rule_allows_only_host_and_port():
    spec = ParitySpec(allowed=[AllowedDifference(layer="config", key="*url", differ="hostname",
                                                 reason="own hosts")])
    a = facts("config", a_url=("erp", "http://wms.plant:9000/api"),
              b_url=("erp", "http://wms.plant:9000/api"))
    b = facts("config", a_url=("erp", "http://127.0.0.1:9100/api"),
              b_url=("erp", "http://127.0.0.1:9100/v2"))
    f = by_key(compare_layer("config", a, b, NAMES, spec, TIERS)[0])
    assert f["a_url"].status == "allowed"
    assert f["b_url"].status == "drift" and "more than host" in f["b_url"].reason


def test_rule_of_another_layer_does_not_apply():
    spec = ParitySpec(allowed=[AllowedDifference(layer="schema", key="*", reason="x")])
    f = compare_layer("config", facts("config", k=("erp", 1)), facts("config", k=("erp", 2)),
                      NAMES, spec, TIERS)[0]
    assert f[0].status == "drift"


def test_unknown_is_never_same_and_hides_its_scope():
    a = facts("config", **{"s:x": ("erp", 1), "t:y": ("erp", 1)})
    b = facts("config", **{"t:y": ("erp", 1)})
    b.fail("s:", "erp", "x.yaml:3: does not parse as YAML")
    found, _ = compare_layer("config", a, b, NAMES, ParitySpec(), TIERS)
    f = by_key(found)
    assert f["s"].status == "unknown" and "x.yaml:3" in f["s"].reason
    assert "s:x" not in f and f["t:y"].status == "same"


def test_unknown_blocks_unless_declared_may_be_unknown():
    a = facts("versions", **{"erp__version": ("erp", "1.0"), "hist__version": ("hist", "2")})
    b = LayerFacts("versions")
    b.fail("erp.version", "erp", "http://erp/health unreachable")
    b.fail("hist.version", "hist", "http://hist/health unreachable")
    f = by_key(compare_layer("versions", a, b, NAMES, ParitySpec(), TIERS)[0])
    # unknown blocks whatever the tier: what was not read is not known to be faithful
    assert (f["erp.version"].status, f["erp.version"].blocking) == ("unknown", True)
    assert (f["hist.version"].status, f["hist.version"].blocking) == ("unknown", True)
    spec = ParitySpec(allowed=[AllowedDifference(layer="versions", key="hist.*",
                                                 differ="unknown", reason="no endpoint")])
    f = by_key(compare_layer("versions", a, b, NAMES, spec, TIERS)[0])
    assert f["hist.version"].status == "unknown" and not f["hist.version"].blocking
    assert "no endpoint" in f["hist.version"].reason
    assert f["erp.version"].blocking


def test_may_be_unknown_does_not_allow_a_difference():
    spec = ParitySpec(allowed=[AllowedDifference(key="k", differ="unknown", reason="x")])
    f = compare_layer("config", facts("config", k=("erp", 1)), facts("config", k=("erp", 2)),
                      NAMES, spec, TIERS)[0][0]
    assert f.status == "drift" and f.blocking and "unreadable, not to differ" in f.reason


def test_whole_layer_failure_is_unknown_and_blocks():
    a, b = facts("schema", t=("erp-db", 1)), LayerFacts("schema")
    b.fail("", None, "internal error in the schema collector: RuntimeError: boom")
    found, _ = compare_layer("schema", a, b, NAMES, ParitySpec(), TIERS)
    assert [(f.key, f.status, f.blocking) for f in found] == [("*", "unknown", True)]


def test_blocking_signals_separate_drift_and_unknown():
    r = ParityReport("s", NAMES, [Finding("schema", "t", "same"),
                                  Finding("config", "k", "drift", blocking=True),
                                  Finding("versions", "v", "unknown", blocking=True),
                                  Finding("versions", "w", "unknown")], {})
    sig = r.signals()
    assert sig["parity.drift.blocking"] == 1 and sig["parity.unknown.blocking"] == 1
    assert r.exit_code == 1 and r.outcome == "blocking drift and unknown"


def test_not_applicable_on_both_sides_is_a_note():
    a, b = LayerFacts("access"), LayerFacts("access")
    for lf in (a, b):
        lf.fail("grant.db:", "erp-db", "n/a: SQLite has no roles or grants")
    found, notes = compare_layer("access", a, b, NAMES, ParitySpec(), TIERS)
    assert found == [] and notes == ["SQLite has no roles or grants"]


def test_not_applicable_on_one_side_hides_the_other_sides_scope():
    a = facts("access", **{"grant.db:app.items": ("erp-db", "SELECT"),
                           "permissions.op": ("erp", ["a"])})
    b = facts("access", **{"permissions.op": ("erp", ["a"])})
    b.fail("grant.db:", "erp-db", "n/a: SQLite has no roles or grants")
    found, notes = compare_layer("access", a, b, NAMES, ParitySpec(), TIERS)
    assert [(f.key, f.status) for f in found] == [("permissions.op", "same")]
    assert notes == ["staging: SQLite has no roles or grants; production's 1 grant(s) of db "
                     "not compared"]


def test_problem_fact_is_drift_even_when_both_sides_agree():
    a, b = LayerFacts("topology"), LayerFacts("topology")
    for lf in (a, b):
        lf.add("edge.erp->hist", "http", "erp", problem="undeclared edge")
    f = compare_layer("topology", a, b, NAMES, ParitySpec(), TIERS)[0][0]
    assert f.status == "drift" and f.reason == "undeclared edge" and f.severity == "critical"


def test_list_values_show_what_was_added():
    a = facts("access", permissions__op=("erp", ["a.read"]))
    b = facts("access", permissions__op=("erp", ["a.read", "b.write"]))
    f = compare_layer("access", a, b, NAMES, ParitySpec(), TIERS)[0][0]
    assert f.status == "drift" and "+b.write" in f.reason


def test_exit_codes():
    def report(*fs: Finding) -> ParityReport:
        return ParityReport("s", NAMES, list(fs), {})

    same = Finding("schema", "t", "same")
    assert report(same).exit_code == 0
    assert report(same, Finding("config", "k", "drift", severity="low")).exit_code == 0
    assert report(same, Finding("config", "k", "drift", blocking=True)).exit_code == 1
    assert report(Finding("schema", "*", "unknown")).exit_code == 2
    # topology alone is mostly the spec's own declaration: nothing was read
    assert report(Finding("topology", "erp.scale", "same"),
                  Finding("schema", "*", "unknown")).exit_code == 2


def test_spec_severity_needs_every_tier():
    with pytest.raises(ValueError):
        ParitySpec(severity={1: "critical"})


# -- schema reflection ------------------------------------------------------------------------
DDL = """
CREATE TABLE items (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,
                    code VARCHAR(64) NOT NULL, price NUMERIC(12, 2), active BOOLEAN,
                    UNIQUE (tenant_id, code));
CREATE TABLE ledger (id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id),
                     qty INTEGER NOT NULL, created_at DATETIME);
CREATE INDEX ix_ledger_item ON ledger (item_id);
"""


def _db(path: Path, extra: str = "") -> sa.Engine:
    con = sqlite3.connect(path)
    con.executescript(DDL + extra)
    con.close()
    return sa.create_engine(f"sqlite:///{path}")


def _reflect(engine: sa.Engine) -> LayerFacts:
    lf = LayerFacts("schema")
    with engine.connect() as c:
        sch.reflect(c, lf, "erp-db")
    engine.dispose()
    return lf


def test_reflect_sees_columns_keys_and_indexes(tmp_path: Path):
    lf = _reflect(_db(tmp_path / "a.db"))
    v = {k: f.value for k, f in lf.facts.items()}
    assert v["column.items.code"] == "string(64) not null"
    assert v["column.items.price"] == "numeric(12,2) null"
    assert v["column.ledger.created_at"] == "datetime null"
    assert v["pk.items"] == "(id)"
    assert v["fk.ledger(item_id)"] == "items(id)"
    assert v["unique.items(tenant_id, code)"] == "unique"
    assert v["index.ledger(item_id)"] == "index"


def test_missing_index_and_changed_type_are_schema_drift(tmp_path: Path):
    prod = _reflect(_db(tmp_path / "p.db"))
    stage = _reflect(_db(tmp_path / "s.db",
                         "DROP INDEX ix_ledger_item; ALTER TABLE items ADD COLUMN note TEXT;"))
    f = by_key(compare_layer("schema", prod, stage, NAMES, ParitySpec(), TIERS)[0])
    assert f["index.ledger(item_id)"].status == "drift"
    assert f["index.ledger(item_id)"].severity == "critical"
    assert f["column.items.note"].reason == "only in staging"


def test_type_names_map_across_engines():
    from sqlalchemy.dialects import mysql, postgresql

    assert sch.type_name(postgresql.VARCHAR(64)) == sch.type_name(sa.String(64)) == "string(64)"
    assert sch.type_name(postgresql.TIMESTAMP()) == sch.type_name(sa.DateTime()) == "datetime"
    assert sch.type_name(mysql.BIGINT()) == "bigint"
    eq = sch.equivalences([["json", "jsonb", "text"]])
    assert sch.type_name(postgresql.JSONB(), eq) == "json"
    assert sch.type_name(sa.Text(), eq) == "json"


# -- column defaults ----------------------------------------------------------------------------
@pytest.mark.parametrize("spellings,type_,expected", [
    (["'open'::character varying", "'open'", "('open')"], "string(16)", "'open'"),
    (["0", "'0'", "(0)", "'0'::integer", "(-0)"], "integer", "0"),
    (["0.00", "'0.00'::numeric", "0", "'0'"], "numeric(12,2)", "0"),
    (["now()", "CURRENT_TIMESTAMP", "current_timestamp()", "(datetime('now'))"], "datetime",
     "now"),
    (["false", "0", "'f'", "b'0'"], "boolean", "false"),
    (["true", "1", "'t'"], "boolean", "true"),
    (["NULL", None, "nextval('items_id_seq'::regclass)"], "integer", None),
    (["'it''s'", "'it''s'::text"], "text", "'it''s'"),
])
def test_default_engine_spellings_are_one_default(spellings, type_, expected):
    assert {sch.normalise_default(s, type_) for s in spellings} == {expected}


def test_changed_defaults_stay_different():
    n = sch.normalise_default
    assert n("'open'", "string") != n("'closed'", "string")
    assert n("0", "integer") != n("1", "integer")
    assert n("'0'", "string") != n("''", "string")
    assert n("now()", "datetime") != n("CURRENT_DATE", "date")
    # a string that merely looks like an expression is not unquoted into one
    assert n("('a'||'b')", "text") == "'a'||'b'" != n("'ab'", "text")


DEFAULTS_DDL = """
CREATE TABLE orders (id INTEGER PRIMARY KEY, status VARCHAR(16) NOT NULL DEFAULT 'open',
                     qty INTEGER NOT NULL DEFAULT 0, price NUMERIC(12, 2) DEFAULT 0.00,
                     urgent BOOLEAN NOT NULL DEFAULT {false},
                     created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, note TEXT)
"""


def _default_facts(engine: sa.Engine, status_default: str = "open") -> dict[str, str]:
    false = "0" if engine.dialect.name == "sqlite" else "false"
    with engine.begin() as c:
        c.execute(sa.text("DROP TABLE IF EXISTS orders"))
        c.execute(sa.text(DEFAULTS_DDL.format(false=false).replace("'open'",
                                                                    f"'{status_default}'")))
    lf = _reflect(engine)
    return {k: f.value for k, f in lf.facts.items() if k.startswith("default.")}


def test_sqlite_defaults_reflected_and_changed_default_is_drift(tmp_path: Path):
    prod = _default_facts(sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}"))
    assert prod == {"default.orders.status": "'open'", "default.orders.qty": "0",
                    "default.orders.price": "0", "default.orders.urgent": "false",
                    "default.orders.created_at": "now"}
    lp, ls = LayerFacts("schema"), LayerFacts("schema")
    for k, v in prod.items():
        lp.add(k, v, "erp-db")
    for k, v in _default_facts(sa.create_engine(f"sqlite:///{tmp_path / 's.db'}"),
                               "new").items():
        ls.add(k, v, "erp-db")
    f = by_key(compare_layer("schema", lp, ls, NAMES, ParitySpec(), TIERS)[0])
    changed = f["default.orders.status"]
    assert changed.status == "drift" and changed.severity == "critical"
    assert (changed.production, changed.staging) == ("'open'", "'new'")
    assert f["default.orders.qty"].status == "same"


def _server_engine(url: str) -> sa.Engine:
    from plantstage import engines

    return sa.create_engine(engines.normalize_url(url))


@requires_postgres
def test_postgres_and_sqlite_spell_defaults_differently_but_compare_same(tmp_path, pg_database):
    lite = _default_facts(sa.create_engine(f"sqlite:///{tmp_path / 'l.db'}"))
    eng = _server_engine(pg_database)
    try:
        pg = _default_facts(eng)
        with eng.connect() as c:  # the raw spellings really differ
            raw = c.execute(sa.text("SELECT column_default FROM information_schema.columns "
                                    "WHERE table_name = 'orders' AND column_name = 'status'"))
            assert "::character varying" in raw.scalar_one()
    finally:
        eng.dispose()
    assert pg == lite


@requires_mariadb
def test_mariadb_and_sqlite_spell_defaults_differently_but_compare_same(tmp_path,
                                                                        mariadb_database):
    lite = _default_facts(sa.create_engine(f"sqlite:///{tmp_path / 'l.db'}"))
    eng = _server_engine(mariadb_database)
    try:
        my = _default_facts(eng)
        changed = _default_facts(eng, "held")
    finally:
        eng.dispose()
    assert my == lite
    assert changed["default.orders.status"] == "'held'"


def test_config_files_are_read_within_bounds(tmp_path):
    """An alias bomb or a file that is not UTF-8 is one line naming the file, at once."""
    from plantstage.parity.collectors.config import ConfigUnreadable, load_source

    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefg"):
        prev = "abcdef"[i]
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigUnreadable, match=r"bomb\.yaml:\d+: does not parse as YAML"):
        load_source(bomb)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe key: value\n")
    with pytest.raises(ConfigUnreadable, match="not UTF-8"):
        load_source(bad)


def test_running_version_is_read_the_way_the_health_probe_declares():
    """No JSON `version` assumption: a header, a regex or JSON, as the binding's probe says."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from plantstage.parity.collectors.versions import _observe
    from plantstage.spec.smoke import HealthProbe

    class Status(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b"mixingplant up" if self.path == "/status" else b"no"
            self.send_response(200 if self.path == "/status" else 404)
            self.send_header("X-App-Version", "2.0.0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    view = SimpleNamespace(expand=lambda u: u, name="production",
                           spec=SimpleNamespace(parity=SimpleNamespace(health_timeout=5)))
    try:
        out = LayerFacts("versions")
        _observe(view, out, "app", url,
                 HealthProbe(path="/status", version={"header": "X-App-Version"}))
        assert out.facts["app.version"].value == "2.0.0"
        out = LayerFacts("versions")
        _observe(view, out, "app", url, HealthProbe(path="/status", version={"json": "v"}))
        assert "app.version" in out.unknown and "not JSON" in out.unknown["app.version"][1]
        out = LayerFacts("versions")
        _observe(view, out, "app", url, "/status")  # no version declared: cannot compare
        assert "does not say where" in out.unknown["app.version"][1]
    finally:
        server.shutdown()


def test_production_is_probed_only_with_a_request_that_reads():
    """A probe declared as a POST (not JSON-RPC) or a DELETE is not sent to production's app:
    the version is unknown, saying why. A JSON-RPC POST is; staging gets the probe as declared."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    from plantstage.parity.collectors.versions import _observe
    from plantstage.spec.smoke import HealthProbe

    seen: list[str] = []

    class App(BaseHTTPRequestHandler):
        def _answer(self):
            seen.append(self.command)
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"v": "3.1"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_DELETE = _answer  # noqa: N815 - http.server's names

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def view(name):
        return SimpleNamespace(expand=lambda u: u, name=name,
                               spec=SimpleNamespace(parity=SimpleNamespace(health_timeout=5)))

    writes = HealthProbe(method="POST", path="/reset", json={"force": True},
                         version={"json": "result.v"})
    rpc = HealthProbe(method="POST", path="/rpc", version={"json": "result.v"},
                      json={"jsonrpc": "2.0", "id": 1, "method": "status"})
    try:
        for probe in (writes, HealthProbe(method="DELETE", path="/x",
                                          version={"json": "result.v"})):
            out = LayerFacts("versions")
            _observe(view("production"), out, "app", url, probe)
            why = out.unknown["app.version"][1]
            assert why.startswith("not asked: production is read-only") and "\n" not in why
        assert seen == []  # nothing reached production's app
        out = LayerFacts("versions")
        _observe(view("production"), out, "app", url, rpc)
        assert out.facts["app.version"].value == "3.1"
        out = LayerFacts("versions")
        _observe(view("staging"), out, "app", url, writes)
        assert out.facts["app.version"].value == "3.1" and seen == ["POST", "POST"]
    finally:
        server.shutdown()
