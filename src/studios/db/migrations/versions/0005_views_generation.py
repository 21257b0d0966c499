"""generations bumped by triggers: "studios" on every write to studios and their shares (both
databases; it was bumped by the service's code, so writes from elsewhere went unseen), and on
SQLite "views" whenever anything a studio's view shows changes (studios.store.views_generation)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 23:30:00
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

VIEWS = "UPDATE generations SET value = value + 1 WHERE name = 'views'"
BOTH = "UPDATE generations SET value = value + 1 WHERE name IN ('studios', 'views')"
# Only the columns a view shows: the log sink's counters, the proxy's activity times and the
# engine's handles leave the views alone.
DEPLOYMENT_COLUMNS = (
    "studio_id, user_id, name, docker_image_name, docker_image_tag, instance_type, memory, cpu, "
    "state, state_message, max_memory_usage, max_cpu_usage, created_at, updated_at"
)
TRIGGERS = {  # name: (when, what)
    "views_studios_insert": ("AFTER INSERT ON studios", BOTH),
    "views_studios_update": ("AFTER UPDATE ON studios", BOTH),
    "views_studios_delete": ("AFTER DELETE ON studios", BOTH),
    "views_studio_shares_insert": ("AFTER INSERT ON studio_shares", BOTH),
    "views_studio_shares_update": ("AFTER UPDATE ON studio_shares", BOTH),
    "views_studio_shares_delete": ("AFTER DELETE ON studio_shares", BOTH),
    "views_users_update": ("AFTER UPDATE OF name, username, is_admin, last_seen_at ON users", VIEWS),
    "views_users_delete": ("AFTER DELETE ON users", VIEWS),
    "views_deployments_insert": ("AFTER INSERT ON deployments", VIEWS),
    "views_deployments_update": (f"AFTER UPDATE OF {DEPLOYMENT_COLUMNS} ON deployments", VIEWS),
    "views_deployments_delete": ("AFTER DELETE ON deployments", VIEWS),
}


# PostgreSQL: "studios" only, once per statement (no read model there: a "views" counter bumped
# by every state change would make writers on every server queue on its row).
PG_FUNCTION = """CREATE FUNCTION studios_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE generations SET value = value + 1 WHERE name = 'studios';
    RETURN NULL;
END $$"""
PG_TABLES = ("studios", "studio_shares")


def upgrade() -> None:
    op.execute("INSERT INTO generations (name, value) VALUES ('views', 0)")
    if op.get_bind().dialect.name == "sqlite":
        for name, (when, what) in TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN {what}; END")
    else:
        op.execute(PG_FUNCTION)
        for table in PG_TABLES:
            op.execute(f"CREATE TRIGGER studios_generation_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION studios_generation_bump()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for table in PG_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS studios_generation_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS studios_generation_bump()")
    op.execute("DELETE FROM generations WHERE name = 'views'")
