"""Database operations on deployments and their log lines. Return objects or None; never
commit; know nothing of runtimes or of what a state means."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Row, Select, String, Table, Text, and_, bindparam, func, insert, select, type_coerce, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from studios.db.models import Deployment, DeploymentLog, Studio, StudioShare, utcnow
from studios.schemas.common import civis_time
from studios.store.studios import CALLERS_SHARE, SUMMARY_COLUMNS
from studios.store.times import CivisTime


def get(session: Session, deployment_id: int) -> Deployment | None:
    return session.get(Deployment, deployment_id)


_VIEW_ONE = (
    select(Studio.id.label("studio_found"), StudioShare.level, *SUMMARY_COLUMNS, Deployment.ready_at, Deployment.last_activity_at)
    .select_from(Studio)
    .outerjoin(StudioShare, CALLERS_SHARE)
    .outerjoin(Deployment, and_(Deployment.studio_id == Studio.id, Deployment.id == bindparam("did")))
    .where(Studio.id == bindparam("sid"))
)


def view_row(conn: Connection, studio_id: int, deployment_id: int, user_id: int) -> Row | None:
    """The deployment's view row for this user: its summary columns (`id` None: no such
    deployment of the studio), `ready_at` and `last_activity_at`, and the user's share `level`
    of its studio (None: no share); None if there is no such studio. One Core statement: the
    API's GET of a deployment, which clients poll while they wait for one."""
    return conn.execute(_VIEW_ONE, {"sid": studio_id, "did": deployment_id, "uid": user_id}).first()


_ACCESS = (
    select(Studio.id, StudioShare.level)
    .outerjoin(StudioShare, CALLERS_SHARE)
    .where(Studio.id == bindparam("sid"))
)


def access_row(conn: Connection, studio_id: int, user_id: int) -> Row | None:
    """The studio's id and the user's share `level` of it (None: no share); None if there is
    no such studio."""
    return conn.execute(_ACCESS, {"sid": studio_id, "uid": user_id}).first()


def summaries(conn: Connection, studio_id: int, deployment_id: int | None, descending: bool, limit: int, offset: int) -> tuple[list[Row], int]:
    """A page of the studio's deployments as summary rows (`SUMMARY_COLUMNS`), newest or oldest
    first, and how many there are in all."""
    where = [Deployment.studio_id == studio_id] + ([Deployment.id == deployment_id] if deployment_id is not None else [])
    total = conn.execute(select(func.count()).select_from(Deployment).where(*where)).scalar_one()
    order = Deployment.id.desc() if descending else Deployment.id.asc()
    return list(conn.execute(select(*SUMMARY_COLUMNS).where(*where).order_by(order).limit(limit).offset(offset))), int(total)


def get_for_update(session: Session, deployment_id: int) -> Deployment | None:
    # FOR NO KEY UPDATE: rows that reference it (log lines, keys) can still be added meanwhile.
    return session.scalar(select(Deployment).where(Deployment.id == deployment_id).with_for_update(key_share=True))


_DEPLOYMENTS = cast(Table, Deployment.__table__)


def move(session: Session, deployment_id: int, sources: frozenset[str], values: dict[str, Any]) -> tuple[int, int] | None:
    """Set `values` on the deployment if its state is one of `sources`, in one UPDATE (its row
    lock is the UPDATE's own); its (studio id, user id), or None if it is in no such state."""
    return _update(session, deployment_id, _DEPLOYMENTS.c.state.in_(sorted(sources)), values)


def set_fields(session: Session, deployment_id: int, **values: Any) -> None:
    _update(session, deployment_id, None, values)


def _update(session: Session, deployment_id: int, condition: ColumnElement[bool] | None, values: dict[str, Any]) -> tuple[int, int] | None:
    """One UPDATE of the deployment's row on the table (the ORM's load and flush, or its bulk
    UPDATE, cost a few ms more under a deploy's load); (studio id, user id) if a row matched.
    The session's own copy of the row, if it holds one, is expired (read again when next
    used); changes made to it and not yet written are written first."""
    session.flush()  # at once when nothing is waiting
    statement = update(_DEPLOYMENTS).where(_DEPLOYMENTS.c.id == deployment_id, *([condition] if condition is not None else []))
    row = session.connection().execute(statement.values(**values).returning(_DEPLOYMENTS.c.studio_id, _DEPLOYMENTS.c.user_id)).first()
    held = session.identity_map.get(session.identity_key(Deployment, deployment_id))
    if held is not None:
        session.expire(held)
    return None if row is None else (int(row[0]), int(row[1]))


def create(session: Session, values: dict[str, Any]) -> Deployment:
    dep = Deployment(**values)
    session.add(dep)
    session.flush()
    return dep


def of_studio_in(session: Session, studio_id: int, states: Sequence[str]) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.studio_id == studio_id, Deployment.state.in_(states)).order_by(Deployment.id)))


def in_states(session: Session, states: Sequence[str]) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.state.in_(states)).order_by(Deployment.id)))


def _clean(message: str) -> str:
    """A NUL is stored as U+FFFD on every database: PostgreSQL's text cannot hold one, and
    SQLite's JSON functions would end the string there."""
    return message.replace("\x00", "\ufffd") if "\x00" in message else message


_LOGS = cast(Table, DeploymentLog.__table__)
_SYSTEM_LINE = insert(_LOGS).values(source="system").returning(_LOGS.c.id)
"""Built once: a Core statement compiles once and is cached, where an ORM insert built per
call went through the ORM's bulk-insert path (~1.8 ms a line under a deploy's load, py-spy)."""


def add_system_line(session: Session, deployment_id: int, message: str, when: datetime | None = None, stream: str = "stdout") -> int:
    """A line from the service itself (lifecycle steps), in the caller's transaction; its id."""
    row = {"deployment_id": deployment_id, "created_at": when or utcnow(), "stream": stream, "message": _clean(message)}
    return int(session.connection().execute(_SYSTEM_LINE, row).scalar_one())


_INSERT_SQLITE = "INSERT INTO deployment_logs (deployment_id, created_at, stream, source, message) VALUES (?, ?, ?, ?, ?)"
_INSERT_SQLITE_RUN = (
    "INSERT INTO deployment_logs (deployment_id, created_at, stream, source, message) SELECT ?, ?, ?, 'user', value FROM json_each(?) ORDER BY key"
)
RUN_MIN = 8
"""Lines sharing a time and stream from this many on go in as one statement (below)."""


def add_user_logs(session: Session, deployment_id: int, lines: Sequence[Any]) -> None:
    """Insert an app's lines (objects with time, stream, message), in their order.

    On SQLite this is the ingestion hot path. A host process's chunk of lines shares one time,
    so a run of lines with the same time and stream is one `INSERT ... SELECT` over a JSON
    array of its messages: the database makes the rows in one step, with the GIL released
    throughout, where an `executemany` binds five values per row and takes the GIL back for
    each (1,000-line runs: about 2x the rows per second, half the CPU). Short runs (a Docker
    app's lines each have their own time) go through one `executemany` per stretch, each
    distinct time formatted once."""
    if not lines:
        return
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        conn.execute(insert(_LOGS), [{"deployment_id": deployment_id, "created_at": line.time, "stream": line.stream, "source": "user", "message": _clean(line.message)} for line in lines])
        return
    texts: dict[datetime, str] = {}
    rows: list[tuple[int, str, str, str, str]] = []
    start, count = 0, len(lines)
    while start < count:
        first = lines[start]
        end = start + 1
        while end < count and lines[end].time == first.time and lines[end].stream == first.stream:
            end += 1
        text = texts.get(first.time)
        if text is None:
            text = texts[first.time] = civis_time(first.time)  # as `LogTime` stores it
        if end - start < RUN_MIN:
            rows.extend((deployment_id, text, line.stream, "user", _clean(line.message)) for line in lines[start:end])
        else:
            payload = json.dumps([line.message for line in lines[start:end]])
            if "\\u0000" in payload:  # a NUL (JSON writes it so; also a line holding that text): clean the lines
                payload = json.dumps([_clean(line.message) for line in lines[start:end]])
            if rows:
                conn.exec_driver_sql(_INSERT_SQLITE, rows)
                rows = []
            conn.exec_driver_sql(_INSERT_SQLITE_RUN, (deployment_id, text, first.stream, payload))
        start = end
    if rows:
        conn.exec_driver_sql(_INSERT_SQLITE, rows)


def logs_body(conn: Connection, deployment_id: int, start_at: datetime | None, end_at: datetime | None, limit: int) -> bytes:
    """The lines as the body of `GET .../logs`: a JSON array of `LogDeploymentLogResponseSummary`s
    (message, stream, createdAt as the platform writes times, source), in time order (ties in
    arrival order). With `start_at`: the first `limit` lines at or after it; without: the
    newest `limit` lines (the tail). `end_at` bounds both. Bounds compare with the times the
    lines show, to the millisecond, on either database (`_from_ms`, `_past_ms`).

    The database builds each line's JSON, so no line is made into Python objects. On SQLite it
    also joins them, in one statement: the tail's first line is found on the index (an OFFSET
    on it, in the same statement, so one snapshot), then the lines from it are read forward
    and concatenated in that order (a subquery with ORDER BY under an aggregate is not
    flattened, so the aggregate gets its rows in order; `tests/api/test_log_lines.py` holds
    the order). 10,000 lines: 0.69x the time of fetching their four columns into Python,
    against 1.07x for the same JSON fetched line by line and joined here (`bench/logs_bench.py`'s
    database, 2026-11-28)."""
    start = _from_ms(start_at) if start_at is not None else None
    past = _past_ms(end_at) if end_at is not None else None
    if conn.dialect.name == "sqlite":
        return _sqlite_body(conn, deployment_id, start, past, limit)
    created = func.to_char(func.timezone("UTC", DeploymentLog.created_at), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    line = sql_cast(func.json_build_object("message", DeploymentLog.message, "stream", DeploymentLog.stream, "createdAt", created, "source", DeploymentLog.source), Text)
    query = select(type_coerce(line, String)).where(DeploymentLog.deployment_id == deployment_id)
    if start is not None:
        query = query.where(DeploymentLog.created_at >= start)
    if past is not None:
        query = query.where(DeploymentLog.created_at < past)
    if start is not None:
        texts = _texts(conn, query.order_by(DeploymentLog.created_at, DeploymentLog.id).limit(limit))
    else:
        # The tail is read newest first, as the index gives it, and turned round here.
        texts = _texts(conn, query.order_by(DeploymentLog.created_at.desc(), DeploymentLog.id.desc()).limit(limit))
        texts.reverse()
    return ("[" + ",".join(texts) + "]").encode()


_SQLITE_LINE = "json_object('message', message, 'stream', stream, 'createdAt', created_at, 'source', source)"
"""A line's wire JSON: its time is stored as the wire has it (`LogTime`)."""


def _sqlite_body(conn: Connection, deployment_id: int, start: datetime | None, past: datetime | None, limit: int) -> bytes:
    params: dict[str, Any] = {"d": deployment_id, "n": limit}
    bound = ""
    if past is not None:
        bound = " AND created_at < :past"
        params["past"] = civis_time(past)  # as `LogTime` binds it
    if start is not None:
        params["start"] = civis_time(start)
        lines = f"SELECT {_SQLITE_LINE} AS line FROM deployment_logs WHERE deployment_id = :d AND created_at >= :start{bound} ORDER BY created_at, id LIMIT :n"
    else:
        params["skip"] = limit - 1
        first = (f"SELECT created_at, id FROM (SELECT created_at, id FROM deployment_logs WHERE deployment_id = :d{bound} ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET :skip)"
                 " UNION ALL SELECT '', 0 LIMIT 1")  # fewer lines than the limit: from the first  # fmt: skip
        lines = f"SELECT {_SQLITE_LINE} AS line FROM deployment_logs WHERE deployment_id = :d{bound} AND (created_at, id) >= ({first}) ORDER BY created_at, id LIMIT :n"
    body = conn.exec_driver_sql(f"SELECT '[' || coalesce(group_concat(line, ','), '') || ']' FROM ({lines})", params).scalar_one()
    return str(body).encode()


def _from_ms(start: datetime) -> datetime:
    """A lower bound on the times lines show (to the millisecond, as the wire has them), as a
    bound on their stored times: the first millisecond at or after `start`. On SQLite lines are
    stored to the millisecond (`LogTime`); on PostgreSQL to the microsecond, and the two
    databases must agree."""
    past = start.microsecond % 1000
    return start if not past else start + timedelta(microseconds=1000 - past)


def _past_ms(end: datetime) -> datetime:
    """The first stored time past an upper bound on the times lines show: the millisecond after
    `end`'s (a line shown at `end`'s millisecond is within it)."""
    return end - timedelta(microseconds=end.microsecond % 1000) + timedelta(milliseconds=1)


def _texts(conn: Connection, query: Select[Any]) -> list[str]:
    """The one text column of each row, fetched from the driver's cursor: SQLAlchemy's own rows
    and scalars cost ~5 ms more for 10,000 lines and convert nothing here (a text column)."""
    result = conn.execute(query)
    try:
        return [row[0] for row in result.cursor.fetchall()]
    finally:
        result.close()


def logs_after(session: Session, deployment_id: int, after_id: int, limit: int, since: datetime | None = None) -> list[tuple[int, str, str, str, str]]:
    """Lines stored after the line `after_id` (in storage order), or, with `since`, the lines
    at or after that time: (id, civis time text, stream, source, message)."""
    time_col = type_coerce(DeploymentLog.created_at, CivisTime)
    query = select(DeploymentLog.id, time_col, DeploymentLog.stream, DeploymentLog.source, DeploymentLog.message).where(DeploymentLog.deployment_id == deployment_id, DeploymentLog.id > after_id)
    if since is not None:
        query = query.where(DeploymentLog.created_at >= _from_ms(since))
    rows: list[Row[int, str, str, str, str]] = list(session.connection().execute(query.order_by(DeploymentLog.id).limit(limit)))
    return [(i, t, stream, source, message) for i, t, stream, source, message in rows]


def tail_start(session: Session, deployment_id: int, lines: int) -> int:
    """The id just before the last `lines` lines of a deployment (0: from its first line)."""
    ids = session.scalars(select(DeploymentLog.id).where(DeploymentLog.deployment_id == deployment_id).order_by(DeploymentLog.id.desc()).offset(lines).limit(1)).all()
    return int(ids[0]) if ids else 0


def recent_system_lines(session: Session, deployment_id: int, count: int) -> list[tuple[int, str]]:
    """The deployment's last `count` system lines (start-up steps, lifecycle notes) as (id,
    message), oldest first."""
    query = (
        select(DeploymentLog.id, DeploymentLog.message)
        .where(DeploymentLog.deployment_id == deployment_id, DeploymentLog.source == "system")
        .order_by(DeploymentLog.created_at.desc(), DeploymentLog.id.desc())
        .limit(count)
    )
    return [(line_id, message) for line_id, message in reversed(session.execute(query).all())]


def count_by_state_and_runtime(session: Session) -> dict[tuple[str, str], int]:
    """How many deployments are in each (state, runtime)."""
    rows = session.execute(select(Deployment.state, Deployment.runtime, func.count()).group_by(Deployment.state, Deployment.runtime))
    return {(state, runtime or "unknown"): count for state, runtime, count in rows}


def runtime_of(session: Session, deployment_id: int) -> str | None:
    return session.scalar(select(Deployment.runtime).where(Deployment.id == deployment_id))
