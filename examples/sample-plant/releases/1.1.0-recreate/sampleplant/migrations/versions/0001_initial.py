"""1.0.0 initial schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(12, 2)


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True)


def _tenant() -> sa.Column:
    return sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False)


def _item(name: str = "item_id") -> sa.Column:
    return sa.Column(name, sa.Integer, sa.ForeignKey("items.id"), nullable=False)


def _ts(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime, nullable=False)


def _str(name: str, length: int = 120, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _int(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer, nullable=False)


def upgrade() -> None:
    op.create_table(
        "tenants", _id(), _str("code", 40), _str("name"), _str("archetype", 40),
        sa.UniqueConstraint("code", name="uq_tenants_code"),
    )
    op.create_table(
        "items", _id(), _tenant(), _str("code", 40), _str("name"), _str("kind", 16),
        sa.Column("unit_cost", MONEY, nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.UniqueConstraint("tenant_id", "code", name="uq_items_tenant_id_code"),
    )
    op.create_table(
        "bom_lines", _id(), _tenant(), _item("parent_item_id"), _item("component_item_id"),
        _int("qty_per"),
    )
    op.create_index("ix_bom_lines_parent_item_id", "bom_lines", ["parent_item_id"])
    op.create_table(
        "customers", _id(), _tenant(), _str("code", 40), _str("name"), _str("email"),
        _str("phone", 40), sa.Column("credit_limit", MONEY, nullable=False),
        sa.UniqueConstraint("tenant_id", "code", name="uq_customers_tenant_id_code"),
    )
    op.create_table(
        "suppliers", _id(), _tenant(), _str("code", 40), _str("name"), _str("contact_name"),
        _str("email"), _str("phone", 40),
        sa.UniqueConstraint("tenant_id", "code", name="uq_suppliers_tenant_id_code"),
    )
    op.create_table(
        "supplier_items",
        sa.Column("supplier_id", sa.Integer, sa.ForeignKey("suppliers.id"), primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
        sa.Column("price", MONEY, nullable=False),
    )
    op.create_table(
        "work_orders", _id(), _tenant(), _str("number", 40), _item(), _int("qty"),
        _int("qty_done"), _str("status", 16), _ts(),
        sa.UniqueConstraint("tenant_id", "number", name="uq_work_orders_tenant_id_number"),
    )
    op.create_table(
        "production_confirmations", _id(), _tenant(), _str("message_id", 64),
        sa.Column("work_order_id", sa.Integer, sa.ForeignKey("work_orders.id"), nullable=False),
        _int("good_qty"), _int("scrap_qty"), _ts("sent_at"), _ts("posted_at"),
        sa.UniqueConstraint("message_id", name="uq_production_confirmations_message_id"),
    )
    op.create_table(
        "inventory_ledger", _id(), _tenant(), _item(), _int("qty"), _str("source", 16),
        _str("ref", 64, nullable=True), _ts(),
    )
    op.create_index("ix_inventory_ledger_tenant_item", "inventory_ledger", ["tenant_id", "item_id"])
    op.create_index("ix_inventory_ledger_tenant_ref", "inventory_ledger", ["tenant_id", "ref"])
    op.create_table(
        "on_hand",
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
        _int("qty"),
    )
    op.create_table(
        "sales_orders", _id(), _tenant(), _str("external_ref", 64),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        _str("status", 16), _ts(),
        sa.UniqueConstraint("tenant_id", "external_ref",
                            name="uq_sales_orders_tenant_id_external_ref"),
    )
    op.create_table(
        "sales_order_lines", _id(),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("sales_orders.id"), nullable=False),
        _item(), _int("qty"), sa.Column("unit_price", MONEY, nullable=False), _int("reserved_qty"),
    )
    op.create_index("ix_sales_order_lines_order_id", "sales_order_lines", ["order_id"])
    op.create_index("ix_sales_order_lines_item_id", "sales_order_lines", ["item_id"])


def downgrade() -> None:
    for table in (
        "sales_order_lines", "sales_orders", "on_hand", "inventory_ledger",
        "production_confirmations", "work_orders", "supplier_items", "suppliers",
        "customers", "bom_lines", "items", "tenants",
    ):
        op.drop_table(table)
