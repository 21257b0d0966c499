"""Seeding a Studios database directly (SQLAlchemy Core, bulk inserts), so a benchmark can run
at scale: `seed(url, username, studios=10_000, deployments=100_000, log_lines=1_000_000)` gives
the user that many studios (each with its author's share row), ended deployments spread over
them (terminated and released: the engine leaves them alone) and log lines spread over the
deployments. Run it on a migrated database while no server writes to it."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Table, create_engine, insert, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from studios.db.models import Deployment, DeploymentLog, Studio, StudioShare, User  # noqa: E402

CHUNK = 10_000


def _table(model: type) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def seed(url: str, username: str, *, studios: int, deployments: int, log_lines: int) -> dict[str, float]:
    engine = create_engine(url)
    t0 = time.monotonic()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
        user_id = conn.execute(select(_table(User).c.id).where(_table(User).c.username == username)).scalar_one()
        first = (conn.execute(select(_table(Studio).c.id).order_by(_table(Studio).c.id.desc()).limit(1)).scalar() or 0) + 1
        studio_ids = list(range(first, first + studios))
        for i in range(0, studios, CHUNK):
            ids = studio_ids[i : i + CHUNK]
            conn.execute(insert(_table(Studio)), [{"id": sid, "author_id": user_id, "name": f"seeded {sid}", "docker_image_name": "busybox",
                                                   "docker_image_tag": "latest", "params": [], "archived": False,
                                                   "created_at": base + timedelta(seconds=sid), "updated_at": base + timedelta(seconds=sid)} for sid in ids])
            conn.execute(insert(_table(StudioShare)), [{"studio_id": sid, "user_id": user_id, "level": "manage"} for sid in ids])
        first_dep = (conn.execute(select(_table(Deployment).c.id).order_by(_table(Deployment).c.id.desc()).limit(1)).scalar() or 0) + 1
        dep_ids = list(range(first_dep, first_dep + deployments))
        for i in range(0, deployments, CHUNK):
            rows = []
            for did in dep_ids[i : i + CHUNK]:
                when = base + timedelta(seconds=did)
                rows.append({"id": did, "studio_id": studio_ids[(did - first_dep) % studios], "user_id": user_id, "name": "seeded", "docker_image_name": "busybox",
                             "docker_image_tag": "latest", "params": [], "runtime": "process", "log_lines": 0, "logs_dropped": 0, "state": "terminated",
                             "state_message": "stopped by seed", "created_at": when, "updated_at": when, "ended_at": when, "released_at": when, "log_seq": 0})
            columns = set(_table(Deployment).c.keys())  # an older schema (another checkout) may lack some
            conn.execute(insert(_table(Deployment)), [{k: v for k, v in row.items() if k in columns} for row in rows])
        if deployments:
            for i in range(0, log_lines, CHUNK):
                conn.execute(insert(_table(DeploymentLog)), [{"deployment_id": dep_ids[n % deployments], "created_at": base + timedelta(milliseconds=n),
                                                              "stream": "stdout", "source": "user", "message": f"seeded line {n}"}
                                                             for n in range(i, min(log_lines, i + CHUNK))])
        if conn.dialect.name == "postgresql":
            for table in ("studios", "deployments"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("COMMIT")
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {"studios": studios, "deployments": deployments, "log_lines": log_lines, "seconds": round(time.monotonic() - t0, 1)}
