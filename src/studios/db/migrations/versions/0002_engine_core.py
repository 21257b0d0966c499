"""engine core: released_at, claimed_by, log_seq on deployments; leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("log_seq", sa.Integer(), server_default="0", nullable=False))
    # Deployments that ended before this migration were released by the engine of their day.
    op.execute("UPDATE deployments SET released_at = COALESCE(ended_at, updated_at) WHERE state = 'terminated'")
    op.create_index("ix_deployments_unreleased", "deployments", ["id"], unique=False, sqlite_where=sa.text("released_at IS NULL"), postgresql_where=sa.text("released_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_deployments_unreleased", table_name="deployments", sqlite_where=sa.text("released_at IS NULL"), postgresql_where=sa.text("released_at IS NULL"))
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("log_seq")
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("released_at")
    op.drop_table("leases")
