"""The COPY fast path (PostgreSQL → PostgreSQL) writes exactly what the row-by-row path writes.

Raw COPY → COPY for tables without masked columns, masking in COPY text for the others, shifts
done inside the SELECT, the subset filter, and the COPY-text leak scan — each checked against
the driver path on awkward values: tabs, newlines, backslashes, non-ASCII text, NULLs,
fractional seconds, time zones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from plantstage import engines
from plantstage.data import _load, _marker, _refresh, _result
from plantstage.data._copy import LeakScanner, blocks, escape, unescape
from plantstage.data._mask import value_hash
from plantstage.spec.masking import RefreshSpec

KEY = b"copy-test-key-0123456789abcdef"
NOTES = ["plain", "tab\there", "new\nline", "back\\slash", "Grüße, Ζεύς", "\\N", "  ", None,
         "cr\rlf", "ΣΑΣ end"]

RULES = {
    "tenants": {"id": "keep", "code": "keep", "name": "company"},
    "people": {"id": "keep", "tenant_id": "keep", "name": "person", "email": "email",
               "phone": "phone", "note": "keep", "price": {"rule": "noise", "tolerance": 0.1},
               "qty": {"rule": "noise", "tolerance": 0.2},
               "seen_at": {"rule": "shift", "by": "tenant_id"},
               "born": {"rule": "shift"},
               "zoned": {"rule": "shift", "by": "tenant_id"}},
    "orders": {"id": "keep", "person_id": "keep", "tenant_id": "keep",
               "placed": {"rule": "shift", "by": "tenant_id"}, "ref": "keep"},
}


def _production(url: str, rows: int = 300) -> None:
    md = sa.MetaData()
    sa.Table("tenants", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("code", sa.String(20), unique=True), sa.Column("name", sa.String(80)))
    sa.Table("people", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("tenant_id", sa.ForeignKey("tenants.id"), nullable=True),
             sa.Column("name", sa.String(80)), sa.Column("email", sa.String(120)),
             sa.Column("phone", sa.String(40)), sa.Column("note", sa.Text),
             sa.Column("price", sa.Numeric(12, 2)), sa.Column("qty", sa.Integer),
             sa.Column("seen_at", sa.DateTime), sa.Column("born", sa.Date),
             sa.Column("zoned", sa.DateTime(timezone=True)))
    sa.Table("orders", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("person_id", sa.ForeignKey("people.id")),
             sa.Column("tenant_id", sa.ForeignKey("tenants.id")),
             sa.Column("placed", sa.DateTime), sa.Column("ref", sa.String(40)))
    sa.Table("codes", md, sa.Column("code", sa.String(10), primary_key=True),  # no rules: raw
             sa.Column("label", sa.Text), sa.Column("weight", sa.Float))
    eng = sa.create_engine(engines.normalize_url(url))
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(md.tables["tenants"].insert(), [
            {"id": i, "code": f"t{i}", "name": f"Tenant {i} AG"} for i in (1, 2, 3)])
        c.execute(md.tables["people"].insert(), [
            {"id": i, "tenant_id": None if i % 7 == 0 else 1 + i % 3,
             "name": f"Person Number{i}", "email": f"p{i}@corp{i % 5}.com",
             "phone": f"+49 (30) {i:07d}", "note": NOTES[i % len(NOTES)],
             "price": Decimal(i % 50) + Decimal("0.99"), "qty": i % 13 - 6,
             "seen_at": None if i % 11 == 0 else datetime(2024, 1 + i % 12, 1 + i % 28, i % 24,
                                                          i % 60, i % 60, (i * 137) % 1_000_000),
             "born": date(1960 + i % 40, 1 + i % 12, 1 + i % 28),
             "zoned": datetime(2024, 3, 1 + i % 28, 12, tzinfo=UTC)} for i in range(1, rows)])
        c.execute(md.tables["orders"].insert(), [
            {"id": i, "person_id": 1 + i % (rows - 1), "tenant_id": 1 + i % 3,
             "placed": datetime(2024, 5, 1 + i % 28, 8, 30), "ref": f"PO-{i}\t{i % 3}"}
            for i in range(1, 2 * rows)])
        c.execute(md.tables["codes"].insert(), [
            {"code": f"c{i}", "label": NOTES[i % len(NOTES)], "weight": i / 3}
            for i in range(1, 50)])
    eng.dispose()


def _dump(url: str) -> dict[str, list[tuple]]:
    eng = sa.create_engine(engines.normalize_url(url))
    md = sa.MetaData()
    md.reflect(eng)
    out = {}
    with eng.connect() as c:
        for t in md.sorted_tables:
            if t.name != _marker.MARKER:
                out[t.name] = [tuple(r) for r in c.execute(
                    sa.select(t).order_by(*t.primary_key.columns))]
    eng.dispose()
    return out


def _refresh_into(prod: str, stage: str, spec: RefreshSpec) -> _result.RefreshResult:
    target = engines.adapter_for(stage)
    return _refresh.refresh_database(prod, target, spec, key=KEY, key_source="test")


@pytest.fixture
def production(pg_database):
    _production(pg_database)
    stages = [pg_database + "_copy", pg_database + "_rows"]
    yield pg_database, stages
    for s in stages:
        engines.adapter_for(s).drop()


@pytest.mark.parametrize("subset", [None, {"tenants": {"codes": ["t2"]}}])
def test_copy_path_writes_what_the_row_path_writes(production, monkeypatch, subset):
    prod, (via_copy, via_rows) = production
    spec = RefreshSpec.model_validate({"rules": RULES, "subset": subset, "batch": 100})
    got = _refresh_into(prod, via_copy, spec)
    monkeypatch.setattr(_load, "USE_COPY", False)
    want = _refresh_into(prod, via_rows, spec)
    assert got.ok and want.ok, (got.as_dict(), want.as_dict())
    a, b = _dump(via_copy), _dump(via_rows)
    assert a == b
    assert [(t["table"], t["written"]) for t in got.tables] == [
        (t["table"], t["written"]) for t in want.tables]
    # and it did mask: nothing of the sensitive columns survived, dates moved
    before = _dump(prod)
    if subset is None:
        assert len(a["people"]) == len(before["people"])
    names = {r[0]: r for r in before["people"]}
    for r in a["people"]:
        src = names[r[0]]
        assert r[2] != src[2] and r[3] != src[3] and r[3].endswith(".example")
        assert r[5] == src[5]  # note: kept, awkward characters and all
        assert r[8] is None or r[8] != src[8]
        assert r[10] != src[10]
    assert a["codes"] == before["codes"]  # raw COPY → COPY, floats exact


def test_copy_leak_scan_counts_a_kept_copy(production):
    prod, (stage, _) = production
    eng = sa.create_engine(engines.normalize_url(prod))
    with eng.begin() as c:  # a kept column holding sensitive values (case and spaces differ)
        c.execute(sa.text("UPDATE people SET note = '  ' || upper(email) WHERE id IN (3, 4)"))
        c.execute(sa.text("UPDATE codes SET label = 'Person Number5' WHERE code = 'c1'"))
        c.execute(sa.text("UPDATE codes SET label = 'Tenant 1 AG' WHERE code = 'c2'"))
    eng.dispose()
    # (the content check would refuse the note; reviewed says keep it: the scan still looks)
    rules = {**RULES, "people": {**RULES["people"], "note": {"rule": "keep", "reviewed": True}}}
    result = _refresh_into(prod, stage, RefreshSpec.model_validate({"rules": rules}))
    assert result.leaks == {"people.note": 2, "codes.label": 2}
    assert result.leak_rows == {"people.note": ["id=3", "id=4"],
                                "codes.label": ["code=c1", "code=c2"]}
    assert not result.ok and _marker.refresh_state(stage) == "failed"


def test_escape_round_trip_and_blocks():
    for v in ["a\tb", "x\\ny", "\\", "\r\n", "plain", "Grüße"]:
        assert unescape(escape(v.encode())) == v.encode()
    assert unescape(rb"\x41\101\z") == b"AAz"
    assert b"".join(blocks([b"a\n", b"b\n", b"c\n"], size=2)) == b"a\nb\nc\n"


def test_leak_scanner_block_and_rows_agree():
    secret = ["Ann@Corp.com", "Σίσυφος Ltd", "x"]
    avoid = {value_hash(s) for s in secret if len(s) >= 3}
    rows = [("ann@corp.com ", "ok", None), ("other", " σίσυφος ltd", "ann@corp.com"),
            ("tab\there", "\\N", "ANN@CORP.COM"), ("x", "xx", None)]
    by_rows = LeakScanner(avoid, 3)
    by_rows.scan_rows(rows)
    assert by_rows.hits == [1, 1, 2]
    text = b"".join(b"\t".join(b"\\N" if v is None else escape(v.encode()) for v in r) + b"\n"
                    for r in rows)
    for block in (text, text.replace(b"\xcf\x83", b"s")):  # non-ASCII and ASCII-only blocks
        scan = LeakScanner(avoid, 3)
        scan.scan_block(block)
        assert scan.hits[0] == 1 and scan.hits[2] == 2
    scan = LeakScanner(avoid, 3)
    scan.scan_block(text)
    assert scan.hits == [1, 1, 2]
    # by the values' text (the refresh's way): the same hits, with and without outer spaces,
    # escapes and non-ASCII text in the block
    plain = {s.strip().lower().encode() for s in secret if len(s) >= 3}
    spaced = text.replace(b"ann@corp.com ", b"zzz")
    for block, want in ((text, [1, 1, 2]), (text.replace(b"\xcf\x83", b"s"), [1, 0, 2]),
                        (spaced, [0, 1, 2]), (b"ann@corp.com\tok\tsomething\n", [1, 0, 0]),
                        (b"zz\tANN@corp.COM\t ann@corp.com\x1f\n", [0, 1, 1])):
        scan = LeakScanner(avoid, 3, plain=plain)
        scan.scan_block(block)
        assert scan.hits == want, block


def test_copy_out_only_reads(pg_database):
    adapter = engines.adapter_for(pg_database)
    with engines.connect_staging(pg_database).begin() as c:
        c.execute(sa.text("CREATE TABLE victim (id int)"))
        c.execute(sa.text("INSERT INTO victim VALUES (1)"))
    eng = engines.connect_production(pg_database)
    try:
        with eng.connect() as c:
            with pytest.raises(Exception, match="refused"):
                list(adapter.copy_out(c, "DELETE FROM victim RETURNING 1"))
            with pytest.raises(Exception, match="refused"):
                list(adapter.copy_out(c, "SELECT 1; DROP TABLE victim"))
        with eng.connect() as c:  # a write hidden in a SELECT: the read-only session refuses
            with pytest.raises(Exception, match="read-only"):
                list(adapter.copy_out(c, "WITH d AS (DELETE FROM victim RETURNING id) "
                                      "SELECT * FROM d"))
        with eng.connect() as c:
            assert list(adapter.copy_out(c, "SELECT id, 'a\tb' FROM victim")) == [b"1\ta\\tb\n"]
    finally:
        eng.dispose()
    with engines.connect_staging(pg_database).connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM victim")).scalar() == 1
