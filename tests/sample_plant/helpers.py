"""Small helpers shared by the sample plant tests."""

from __future__ import annotations

from conftest import scalar

TENANT = "acme-discrete"


def released_wo(url: str, tenant: str = TENANT, with_bom: bool = True) -> tuple[str, str]:
    """(work order number, item code) of a released work order whose item has a BOM."""
    bom = "AND EXISTS (SELECT 1 FROM bom_lines b WHERE b.parent_item_id = w.item_id)"
    number = scalar(url, f"""
        SELECT w.number FROM work_orders w JOIN tenants t ON t.id = w.tenant_id
        WHERE t.code = '{tenant}' AND w.status = 'released' {bom if with_bom else ''}
        ORDER BY w.number LIMIT 1""")
    item = scalar(url, f"""SELECT i.code FROM work_orders w JOIN items i ON i.id = w.item_id
                           WHERE w.number = '{number}'""")
    return number, item


def confirmation(message_id: str, work_order: str, good: int = 10, scrap: int = 1,
                 lot: str | None = None) -> dict:
    return {"message_id": message_id, "work_order": work_order, "good_qty": good,
            "scrap_qty": scrap, "sent_at": "2025-03-14T09:30:00+01:00", "lot": lot}


def ledger_rows(url: str, ref: str, source: str = "confirmation") -> int:
    return scalar(url, f"SELECT COUNT(*) FROM inventory_ledger "
                       f"WHERE ref = '{ref}' AND source = '{source}'")


def import_payload(client, tenant: str = TENANT, orders: int = 3, lines: int = 4,
                   prefix: str = "T") -> dict:
    customers = [c["code"] for c in client.get(f"/api/{tenant}/customers?limit=20").json()]
    items = [i["code"] for i in client.get(f"/api/{tenant}/items?kind=finished&limit=50").json()]
    return {"orders": [
        {"external_ref": f"{prefix}-{o:04d}", "customer_code": customers[o % len(customers)],
         "lines": [{"item_code": items[(o * lines + n) % len(items)], "qty": 5 + n,
                    "unit_price": "19.90"} for n in range(lines)]}
        for o in range(orders)]}
