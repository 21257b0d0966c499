"""generations: a counter per set of tables that every write to them bumps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute("INSERT INTO generations (name, value) VALUES ('studios', 0)")


def downgrade() -> None:
    op.drop_table("generations")
