"""spent_display_tokens: displayUrl tokens already exchanged, shared by every server

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spent_display_tokens",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_spent_display_tokens_expires_at"), "spent_display_tokens", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_spent_display_tokens_expires_at"), table_name="spent_display_tokens")
    op.drop_table("spent_display_tokens")
