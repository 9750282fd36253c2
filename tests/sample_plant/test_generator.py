from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invariant_violations, run_generate, scalar

CLEAN = {"on_hand_mismatch": 0, "on_hand_orphans": 0, "double_posted": 0}


def test_generated_database_holds_invariants(template_db: Path) -> None:
    url = f"sqlite:///{template_db}"
    assert invariant_violations(url) == CLEAN
    assert scalar(url, "SELECT version_num FROM alembic_version") == "0001"
    assert scalar(url, "SELECT COUNT(DISTINCT archetype) FROM tenants") == 4
    assert scalar(url, "SELECT COUNT(*) FROM inventory_ledger") > 3000
    assert scalar(url, "SELECT COUNT(*) FROM work_orders WHERE status = 'released'") > 0
    assert scalar(url, "SELECT COUNT(*) FROM inventory_ledger "
                       "WHERE source = 'consumption' AND ref IS NULL") == 0
    # three BOM levels: finished -> component -> raw
    assert scalar(url, """SELECT COUNT(*) FROM bom_lines b1 JOIN bom_lines b2
                          ON b2.parent_item_id = b1.component_item_id""") > 0
    assert scalar(url, "SELECT COUNT(*) FROM customers WHERE email NOT LIKE '%@%'") == 0
    assert scalar(url, """SELECT COUNT(*) FROM (
        SELECT l.item_id, SUM(l.reserved_qty) AS r FROM sales_order_lines l
        JOIN sales_orders o ON o.id = l.order_id WHERE o.status = 'open'
        GROUP BY l.item_id) x JOIN on_hand h ON h.item_id = x.item_id WHERE x.r > h.qty""") == 0


def test_generator_is_deterministic_and_refuses_non_empty(tmp_path: Path) -> None:
    dumps = []
    for name in ("a.db", "b.db"):
        url = f"sqlite:///{tmp_path / name}"
        proc = run_generate(url, "--scale", "0.03", "--seed", "11", "--tenants", "2")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("generated ") and len(proc.stdout.splitlines()) == 1
        dumps.append([scalar(url, sql) for sql in (
            "SELECT COUNT(*) FROM items", "SELECT COUNT(*) FROM inventory_ledger",
            "SELECT SUM(qty * id) FROM inventory_ledger", "SELECT MAX(email) FROM customers",
            "SELECT SUM(reserved_qty * id) FROM sales_order_lines")])
    assert dumps[0] == dumps[1]
    again = run_generate(f"sqlite:///{tmp_path / 'a.db'}", "--scale", "0.03")
    assert again.returncode == 2
    assert "not empty" in again.stderr and len(again.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
def test_generator_on_postgres(pg_url: str) -> None:
    proc = run_generate(pg_url, "--scale", "0.05")
    assert proc.returncode == 0, proc.stderr
    assert invariant_violations(pg_url) == CLEAN
    # sequences were advanced past the explicit ids
    assert scalar(pg_url, "SELECT nextval('inventory_ledger_id_seq')") > scalar(
        pg_url, "SELECT MAX(id) FROM inventory_ledger") - 1
