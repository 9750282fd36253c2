from __future__ import annotations

import pytest
from conftest import invariant_violations, migrate, scalar
from helpers import TENANT, confirmation, import_payload, ledger_rows, released_wo
from sqlalchemy import event


@pytest.fixture
def new_db(db_url: str) -> str:
    migrate("1.1.0", db_url, "upgrade", "head")
    return db_url


def test_read_endpoints(new_db: str, client_for) -> None:
    c = client_for("1.1.0", new_db)
    assert c.get("/health").json() == {"status": "ok", "version": "1.1.0", "schema": "0002"}
    tenants = c.get("/api/tenants").json()
    assert {t["archetype"] for t in tenants} == {
        "high-volume-discrete", "process", "multi-plant", "heavily-integrated"}
    items = c.get(f"/api/{TENANT}/items?kind=raw&limit=5").json()
    assert len(items) == 5 and set(items[0]) == {"code", "name", "kind", "unit_cost", "unit_price"}
    assert {i["kind"] for i in items} == {"raw"}
    customers = c.get(f"/api/{TENANT}/customers?limit=3").json()
    assert len(customers) == 3 and set(customers[0]) == {"code", "name", "email", "phone"}
    wos = c.get(f"/api/{TENANT}/work-orders?status=released&limit=7").json()
    assert len(wos) == 7 and {w["status"] for w in wos} == {"released"}
    assert set(wos[0]) == {"number", "item_code", "qty", "qty_done", "status"}
    assert c.get("/api/nope/items").status_code == 404
    assert c.get(f"/api/{TENANT}/items?limit=0").status_code == 422


def test_work_order_adjustment_on_hand(new_db: str, client_for) -> None:
    c = client_for("1.1.0", new_db)
    item = c.get(f"/api/{TENANT}/items?kind=finished&limit=1").json()[0]["code"]
    r = c.post(f"/api/{TENANT}/work-orders", json={"item_code": item, "qty": 25})
    assert r.status_code == 201
    number = r.json()["number"]
    listed = c.get(f"/api/{TENANT}/work-orders?status=released&limit=5").json()
    assert listed[0] == {"number": number, "item_code": item, "qty": 25, "qty_done": 0,
                         "status": "released"}
    before = c.get(f"/api/{TENANT}/on-hand/{item}").json()["qty"]
    r = c.post(f"/api/{TENANT}/inventory/adjustments",
               json={"item_code": item, "qty": -3, "reason": "cycle count"})
    assert r.status_code == 201 and isinstance(r.json()["ledger_id"], int)
    assert c.get(f"/api/{TENANT}/on-hand/{item}").json() == {"item_code": item, "qty": before - 3}
    assert c.post(f"/api/{TENANT}/work-orders",
                  json={"item_code": "NOPE", "qty": 1}).status_code == 422
    assert c.get(f"/api/{TENANT}/on-hand/NOPE").status_code == 404
    assert invariant_violations(new_db)["on_hand_mismatch"] == 0


def test_confirmation_posts_once_with_lot(new_db: str, client_for) -> None:
    c = client_for("1.1.0", new_db)
    wo, item = released_wo(new_db)
    on_hand = c.get(f"/api/{TENANT}/on-hand/{item}").json()["qty"]
    body = confirmation("MSG-A-1", wo, good=10, scrap=2)
    assert c.post(f"/api/{TENANT}/confirmations", json=body).json() == {
        "status": "posted", "message_id": "MSG-A-1"}
    assert c.post(f"/api/{TENANT}/confirmations", json=body).json()["status"] == "duplicate"
    assert c.get(f"/api/{TENANT}/on-hand/{item}").json()["qty"] == on_hand + 10
    assert ledger_rows(new_db, "MSG-A-1") == 1
    n_bom = scalar(new_db, f"""SELECT COUNT(*) FROM bom_lines b JOIN work_orders w
                               ON w.item_id = b.parent_item_id WHERE w.number = '{wo}'""")
    assert ledger_rows(new_db, "MSG-A-1", "consumption") == n_bom > 0
    # derived lot <work_order>-<YYYYMMDD> (sent_at normalised to UTC)
    assert scalar(new_db, "SELECT l.code FROM lots l JOIN inventory_ledger g ON g.lot_id = l.id "
                          "WHERE g.ref = 'MSG-A-1'") == f"{wo}-20250314"
    c.post(f"/api/{TENANT}/confirmations", json=confirmation("MSG-A-2", wo, lot="L-77"))
    assert scalar(new_db, "SELECT lot_code FROM production_confirmations "
                          "WHERE message_id = 'MSG-A-2'") == "L-77"
    wos = {w["number"]: w for w in c.get(f"/api/{TENANT}/work-orders?limit=1000").json()}
    assert c.post(f"/api/{TENANT}/confirmations",
                  json=confirmation("MSG-A-3", "WO-NOPE")).status_code == 422
    assert invariant_violations(new_db) == {
        "on_hand_mismatch": 0, "on_hand_orphans": 0, "double_posted": 0}
    assert wos[wo]["qty_done"] >= 20


def test_dup_confirmations_release_posts_redelivery_twice(db_url: str, client_for) -> None:
    migrate("1.1.0-dup-confirmations", db_url, "upgrade", "head")
    c = client_for("1.1.0-dup-confirmations", db_url)
    wo, _ = released_wo(db_url)
    body = confirmation("MSG-D-1", wo)
    assert c.post(f"/api/{TENANT}/confirmations", json=body).json()["status"] == "posted"
    assert c.post(f"/api/{TENANT}/confirmations", json=body).json()["status"] == "posted"
    assert ledger_rows(db_url, "MSG-D-1") == 2
    assert invariant_violations(db_url)["double_posted"] == 1
    # with an explicit lot the redelivery is still recognised
    lot = confirmation("MSG-D-2", wo, lot="L-1")
    c.post(f"/api/{TENANT}/confirmations", json=lot)
    assert c.post(f"/api/{TENANT}/confirmations", json=lot).json()["status"] == "duplicate"


def test_import_reserves_is_idempotent_and_rejects_unknown_codes(new_db: str, client_for) -> None:
    c = client_for("1.1.0", new_db)
    payload = import_payload(c, orders=4, lines=3)
    r = c.post(f"/api/{TENANT}/sales-orders/import", json=payload)
    assert r.status_code == 200 and r.json() == {"imported": 4, "lines": 12}
    assert c.post(f"/api/{TENANT}/sales-orders/import", json=payload).json() == {
        "imported": 0, "lines": 0}
    bad = import_payload(c, orders=1, prefix="B")
    bad["orders"][0]["lines"][0]["item_code"] = "FG-DOES-NOT-EXIST"
    r = c.post(f"/api/{TENANT}/sales-orders/import", json=bad)
    assert r.status_code == 422 and "FG-DOES-NOT-EXIST" in r.json()["detail"]
    bad = import_payload(c, orders=1, prefix="C")
    bad["orders"][0]["customer_code"] = "CUST-NOPE"
    r = c.post(f"/api/{TENANT}/sales-orders/import", json=bad)
    assert r.status_code == 422 and "CUST-NOPE" in r.json()["detail"]
    assert scalar(new_db, "SELECT COUNT(*) FROM sales_orders WHERE external_ref LIKE 'B-%' "
                          "OR external_ref LIKE 'C-%'") == 0
    # reservations never exceed what is available
    assert scalar(new_db, """
        SELECT COUNT(*) FROM (
          SELECT l.item_id, SUM(l.reserved_qty) AS r FROM sales_order_lines l
          JOIN sales_orders o ON o.id = l.order_id WHERE o.status = 'open'
          GROUP BY l.item_id) x JOIN on_hand h ON h.item_id = x.item_id
        WHERE x.r > h.qty""") == 0


def _count_queries(client, fn) -> int:
    counter = {"n": 0}

    def on_exec(*_args) -> None:
        counter["n"] += 1

    engine = client.app.state.engine
    event.listen(engine, "before_cursor_execute", on_exec)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", on_exec)
    return counter["n"]


@pytest.mark.parametrize("lines", [2, 10])
def test_import_query_count(db_url: str, client_for, lines: int) -> None:
    migrate("1.1.0", db_url, "upgrade", "head")
    good = client_for("1.1.0", db_url)
    slow = client_for("1.1.0-slow-import", db_url)
    counts = {}
    for name, c in (("good", good), ("slow", slow)):
        payload = import_payload(c, orders=5, lines=lines, prefix=f"Q{name}")
        counts[name] = _count_queries(
            c, lambda c=c, p=payload: c.post(f"/api/{TENANT}/sales-orders/import", json=p))
        assert scalar(db_url, f"SELECT COUNT(*) FROM sales_order_lines l JOIN sales_orders o "
                              f"ON o.id = l.order_id WHERE o.external_ref LIKE 'Q{name}-%'") \
            == 5 * lines
    assert counts["good"] <= 16  # constant per batch
    assert counts["slow"] >= 5 * lines * 3  # several queries per line
