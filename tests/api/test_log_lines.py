"""`GET .../logs` returns each stored line as the platform writes it, whatever the line holds:
the database builds each line's JSON (`store.deployments.logs_body`), so hold its output, on
SQLite and on PostgreSQL, to what the wire model says for awkward messages and times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from studios.runtimes.base import LogLine
from studios.schemas.deployments import LogDeploymentLogResponseSummary
from studios.store import deployments as dep_store

AWKWARD = ['say "hi"', "back\\slash", "tab\there", "ctrl \x01\x1f end", "", "é ü 中文 😀", "</script>", "trailing space ", "{\"json\": [1]}"]


def test_log_lines_keep_every_character_order_and_time(api: Any, ctx: Any, studio: dict[str, Any], as_author: Any) -> None:
    did = as_author.post(f"/studios/{studio['id']}/deployments", json={}).json()["deploymentId"]
    # After every system line the engine may still write about this deployment (now).
    base = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=891234)
    lines = [LogLine("stderr" if i % 3 == 0 else "stdout", message, base + timedelta(microseconds=i * 500)) for i, message in enumerate(AWKWARD)]
    lines.append(LogLine("stdout", "same time as the last", lines[-1].time))  # a tie: arrival order
    with ctx.db.writing() as session:
        dep_store.add_user_logs(session, did, lines)

    got = as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs").json()
    user = [line for line in got if line["source"] == "user"]
    expected = [{"message": line.message, "stream": line.stream, "source": "user",
                 "createdAt": line.time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{line.time.microsecond // 1000:03d}Z"} for line in lines]
    assert user == expected
    for line in got:
        LogDeploymentLogResponseSummary.model_validate(line)
        assert set(line) == {"message", "stream", "createdAt", "source"}

    # The tail (no start_at) and a page from start_at agree with the whole.
    tail = as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs", params={"limit": 3}).json()
    assert tail == user[-3:]
    page = as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs", params={"start_at": user[2]["createdAt"], "limit": 4}).json()
    assert page == user[2:6]
    # Bounds compare with the times the lines show (to the millisecond), on either database: lines
    # 2 and 3 (500 us apart) both show line 2's millisecond, so an end there keeps both; a start
    # within line 0's millisecond, past its microseconds, begins at the next one.
    bounded = as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs", params={"start_at": user[0]["createdAt"], "end_at": user[2]["createdAt"]}).json()
    assert bounded == user[:4]
    within = (lines[0].time + timedelta(microseconds=100)).isoformat()
    assert as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs", params={"start_at": within, "end_at": user[4]["createdAt"]}).json() == user[2:6]
    # The tail under an end: the newest lines that show a time at or before it.
    assert as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs", params={"end_at": user[2]["createdAt"], "limit": 2}).json() == user[2:4]


def test_runs_of_lines_sharing_a_time_keep_their_order_and_text(api: Any, ctx: Any, studio: dict[str, Any], as_author: Any) -> None:
    """A host process's chunk of lines shares one time: such runs are stored by a statement of
    their own (`RUN_MIN` lines and more). Short runs, a run with a NUL in it, and runs that
    differ only by stream sit between them; every line must come back, in its order, whole,
    but for a NUL, which every database stores as U+FFFD (PostgreSQL's text cannot hold one)."""
    did = as_author.post(f"/studios/{studio['id']}/deployments", json={}).json()["deploymentId"]
    base = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=123456)
    long_run = [f"{i} {AWKWARD[i % len(AWKWARD)]}" for i in range(3 * dep_store.RUN_MIN)]
    with_nul = [f"nul {i}" if i != 4 else "before\x00after" for i in range(2 * dep_store.RUN_MIN)]
    with_nul[6] = "the text \\u0000, not a NUL"
    short_nul = ["short \x00 nul"]
    plan = [("stdout", 0, long_run), ("stdout", 1, ["short a", "short b"]), ("stderr", 1, long_run[: dep_store.RUN_MIN]),
            ("stdout", 1, long_run[: dep_store.RUN_MIN - 1]), ("stdout", 2, with_nul), ("stderr", 2, short_nul), ("stdout", 2, long_run)]
    lines = [LogLine(stream, message, base + timedelta(milliseconds=step)) for stream, step, messages in plan for message in messages]
    with ctx.db.writing() as session:
        dep_store.add_user_logs(session, did, lines)

    got = as_author.get(f"/studios/{studio['id']}/deployments/{did}/logs", params={"limit": 1000}).json()
    user = [(line["stream"], line["message"], line["createdAt"]) for line in got if line["source"] == "user"]
    assert user == [(line.stream, line.message.replace("\x00", "\ufffd"), line.time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{line.time.microsecond // 1000:03d}Z") for line in lines]
    assert ("stdout", "before\ufffdafter") in [(s, m) for s, m, _ in user] and ("stdout", "the text \\u0000, not a NUL") in [(s, m) for s, m, _ in user]
