"""1.1.0: lot tracking for production confirmations (expand only).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "code", name="uq_lots_tenant_id_code"),
    )
    with op.batch_alter_table("inventory_ledger") as batch:
        batch.add_column(sa.Column("lot_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_inventory_ledger_lot_id_lots", "lots", ["lot_id"], ["id"])
    with op.batch_alter_table("production_confirmations") as batch:
        batch.add_column(sa.Column("lot_code", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("production_confirmations") as batch:
        batch.drop_column("lot_code")
    with op.batch_alter_table("inventory_ledger") as batch:
        batch.drop_constraint("fk_inventory_ledger_lot_id_lots", type_="foreignkey")
        batch.drop_column("lot_id")
    op.drop_table("lots")
