from __future__ import annotations

import pytest
from conftest import invariant_violations, migrate, run_generate, scalar
from helpers import TENANT, confirmation, import_payload, ledger_rows, released_wo
from sqlalchemy import create_engine, text

CLEAN = {"on_hand_mismatch": 0, "on_hand_orphans": 0, "double_posted": 0}


def _blue_green(url: str, client_for) -> None:
    assert migrate("1.0.0", url, "current") == "0001"
    assert migrate("1.1.0", url, "upgrade", "head") == "0002"
    old = client_for("1.0.0", url)
    new = client_for("1.1.0", url)
    assert old.get("/health").json() == {"status": "ok", "version": "1.0.0", "schema": "0002"}
    assert new.get("/health").json() == {"status": "ok", "version": "1.1.0", "schema": "0002"}
    wo, item = released_wo(url, TENANT)
    before = old.get(f"/api/{TENANT}/on-hand/{item}").json()["qty"]
    # both versions post against the 0002 schema; redeliveries are caught across versions
    for client, msg in ((old, "BG-OLD-1"), (new, "BG-NEW-1")):
        body = confirmation(msg, wo, good=7, lot="L-BG")
        assert client.post(f"/api/{TENANT}/confirmations", json=body).json()["status"] == "posted"
        for other in (old, new):
            assert other.post(f"/api/{TENANT}/confirmations",
                              json=body).json()["status"] == "duplicate"
    assert new.get(f"/api/{TENANT}/on-hand/{item}").json()["qty"] == before + 14
    assert scalar(url, "SELECT COUNT(*) FROM inventory_ledger WHERE ref = 'BG-OLD-1' "
                       "AND lot_id IS NULL AND source = 'confirmation'") == 1
    assert scalar(url, "SELECT COUNT(*) FROM inventory_ledger WHERE ref = 'BG-NEW-1' "
                       "AND lot_id IS NOT NULL") == 1
    assert old.post(f"/api/{TENANT}/sales-orders/import",
                    json=import_payload(old, prefix="BGO")).json()["imported"] == 3
    assert new.post(f"/api/{TENANT}/sales-orders/import",
                    json=import_payload(new, prefix="BGN")).json()["imported"] == 3
    r = old.post(f"/api/{TENANT}/inventory/adjustments",
                 json={"item_code": item, "qty": 2, "reason": "recount"})
    assert r.status_code == 201
    assert old.post(f"/api/{TENANT}/work-orders",
                    json={"item_code": item, "qty": 5}).status_code == 201
    assert invariant_violations(url) == CLEAN


def test_blue_green_old_code_on_new_schema(db_url: str, client_for) -> None:
    _blue_green(db_url, client_for)


def _post_lot_confirmations(release: str, url: str, client_for, n: int = 3) -> None:
    migrate(release, url, "upgrade", "head")
    c = client_for(release, url)
    wo, _ = released_wo(url, TENANT)
    for i in range(n):
        body = confirmation(f"DG-{i}", wo, good=4)
        assert c.post(f"/api/{TENANT}/confirmations", json=body).json()["status"] == "posted"
    c.app.state.engine.dispose()


def test_correct_downgrade_preserves_ledger(db_url: str, client_for) -> None:
    _post_lot_confirmations("1.1.0", db_url, client_for)
    rows = scalar(db_url, "SELECT COUNT(*) FROM inventory_ledger")
    total = scalar(db_url, "SELECT SUM(qty) FROM inventory_ledger")
    assert migrate("1.1.0", db_url, "downgrade", "0001") == "0001"
    assert scalar(db_url, "SELECT COUNT(*) FROM inventory_ledger") == rows
    assert scalar(db_url, "SELECT SUM(qty) FROM inventory_ledger") == total
    assert invariant_violations(db_url) == CLEAN
    # 1.0.0 runs on the downgraded schema and still recognises the 1.1.0 postings
    old = client_for("1.0.0", db_url)
    assert old.get("/health").json()["schema"] == "0001"
    wo, _ = released_wo(db_url, TENANT)
    r = old.post(f"/api/{TENANT}/confirmations", json=confirmation("DG-0", wo, good=4))
    assert r.json()["status"] == "duplicate"
    assert migrate("1.1.0", db_url, "upgrade", "head") == "0002"  # and up again


def test_irreversible_downgrade_loses_ledger_rows(db_url: str, client_for) -> None:
    _post_lot_confirmations("1.1.0-irreversible", db_url, client_for)
    rows = scalar(db_url, "SELECT COUNT(*) FROM inventory_ledger")
    assert migrate("1.1.0-irreversible", db_url, "downgrade", "0001") == "0001"
    assert scalar(db_url, "SELECT COUNT(*) FROM inventory_ledger") == rows - 3
    assert ledger_rows(db_url, "DG-0") == 0
    assert invariant_violations(db_url)["on_hand_mismatch"] > 0


def test_dup_release_schema_allows_double_posting(db_url: str) -> None:
    """The defect is in the schema too: the same message may be stored again under a lot."""
    migrate("1.1.0-dup-confirmations", db_url, "upgrade", "head")
    sql = ("INSERT INTO production_confirmations (tenant_id, message_id, work_order_id, good_qty, "
           "scrap_qty, sent_at, posted_at, lot_code) SELECT tenant_id, message_id, work_order_id, "
           "good_qty, scrap_qty, sent_at, posted_at, 'SPLIT' FROM production_confirmations "
           "WHERE id = 1")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(sql))  # would violate uq_production_confirmations_message_id in 1.1.0
    engine.dispose()
    assert scalar(db_url, "SELECT COUNT(*) FROM production_confirmations "
                          "GROUP BY message_id ORDER BY COUNT(*) DESC LIMIT 1") == 2


@pytest.mark.postgres
def test_postgres_blue_green_and_downgrade(pg_url: str, client_for) -> None:
    proc = run_generate(pg_url, "--scale", "0.05", "--tenants", "1")
    assert proc.returncode == 0, proc.stderr
    _blue_green(pg_url, client_for)
    rows = scalar(pg_url, "SELECT COUNT(*) FROM inventory_ledger")
    assert migrate("1.1.0", pg_url, "downgrade", "0001") == "0001"
    assert scalar(pg_url, "SELECT COUNT(*) FROM inventory_ledger") == rows
    assert invariant_violations(pg_url) == CLEAN


@pytest.mark.postgres
def test_postgres_defective_migrations(pg_url: str, client_for) -> None:
    proc = run_generate(pg_url, "--scale", "0.05", "--tenants", "1")
    assert proc.returncode == 0, proc.stderr
    migrate("1.1.0-dup-confirmations", pg_url, "upgrade", "head")
    c = client_for("1.1.0-dup-confirmations", pg_url)
    wo, _ = released_wo(pg_url, TENANT)
    for _ in range(2):
        c.post(f"/api/{TENANT}/confirmations", json=confirmation("PG-DUP", wo))
    assert ledger_rows(pg_url, "PG-DUP") == 2
    c.app.state.engine.dispose()
    rows = scalar(pg_url, "SELECT COUNT(*) FROM inventory_ledger")
    assert migrate("1.1.0-irreversible", pg_url, "downgrade", "0001") == "0001"
    assert scalar(pg_url, "SELECT COUNT(*) FROM inventory_ledger") == rows - 2
