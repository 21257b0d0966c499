"""log lines' times on SQLite stored as the wire shows them, `2026-11-26T06:11:22.497Z`, instead
of SQLAlchemy's DATETIME text `2026-11-26 06:11:22.497000` (studios.db.models.LogTime): a read
of many lines puts each time in its JSON as it is. PostgreSQL keeps its timestamps.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 16:40:00
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # To the millisecond, as the wire has it (the lines of one millisecond keep their ids' order).
        op.execute("UPDATE deployment_logs SET created_at = substr(created_at, 1, 10) || 'T' || substr(created_at, 12, 12) || 'Z' WHERE length(created_at) = 26")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE deployment_logs SET created_at = substr(created_at, 1, 10) || ' ' || substr(created_at, 12, 12) || '000' WHERE length(created_at) = 24")
