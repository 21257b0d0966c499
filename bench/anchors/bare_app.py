"""The bare-FastAPI anchors of `bench/api_bench.py`, served by uvicorn exactly as `studios
serve` serves ours (1 worker, httptools, uvloop, no access log):

- `GET /item`: one JSON route returning a ~1 KB dict from memory;
- `GET /row/{id}`: the least a route reading the database off the event loop does: a validated
  path parameter, a plain (sync) endpoint, which FastAPI runs in its thread pool, reading the
  same ~1 KB as one row of a SQLite table (its JSON text, stored once at start) with the stdlib
  `sqlite3`, one connection per thread. No authentication, no access check, no limits.
- `GET /page`: the same for a list page: 20 rows read in one query, each a studio's list item
  already stored as its JSON text (~600 bytes; ours, of studios without params or
  deployments, ~540), joined into the array. It does nothing per row in Python but fetch
  the text: the floor of a page of 20.
- `PUT /blob` stores a body in memory; `GET /blob` answers it as JSON: the floor of any answer
  of that size over this stack (`bench/logs_bench.py` puts the 10,000 log lines it read from
  ours there, the same bytes).

    .venv/bin/python bench/anchors/bare_app.py --port 8123 --db /tmp/bare.db
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
from typing import Annotated

import uvicorn
from fastapi import FastAPI, HTTPException, Path, Request, Response

# ~1 KB of JSON, shaped like a studio (nested author block, a few params).
PAYLOAD = {
    "id": 1,
    "author": {"id": 1, "name": "Bench User", "username": "bench", "initials": "BU", "online": True},
    "name": "A studio of about one kilobyte",
    "dockerImageName": "civisanalytics/datascience-python",
    "dockerImageTag": "latest",
    "instanceType": "m5.large",
    "requiredResources": {"memory": 2048, "diskSpace": 10.0, "cpu": 1000},
    "createdAt": "2024-01-01T00:00:00.000Z",
    "updatedAt": "2024-01-01T00:00:00.000Z",
    "mostRecentDeployment": None,
    "gitCredentialId": None,
    "params": [
        {"name": f"PARAM_{i}", "description": "a parameter of the bench studio", "type": "string", "value": "x" * 24}
        for i in range(4)
    ],
    "gitRepoId": None,
    "gitRepoUrl": "https://example.invalid/org/repo.git",
    "gitRef": "main",
    "partitionLabel": "default",
    "myPermissionLevel": "manage",
    "archived": False,
}

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/item")
async def item() -> dict:
    return PAYLOAD


_db = {"path": ""}
_local = threading.local()


def _conn() -> sqlite3.Connection:
    """This thread's connection (FastAPI runs the plain `def` routes in its thread pool)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(_db["path"], check_same_thread=False)
    return conn


@app.get("/row/{id}")
def row(id: Annotated[int, Path(gt=0, le=2**31 - 1)]) -> Response:
    found = _conn().execute("SELECT body FROM items WHERE id = ?", (id,)).fetchone()
    if found is None:
        raise HTTPException(404)
    return Response(found[0].encode(), media_type="application/json")


@app.get("/page")
def page() -> Response:
    rows = _conn().execute("SELECT body FROM page_items ORDER BY id DESC LIMIT 20").fetchall()
    return Response(("[" + ",".join(body for (body,) in rows) + "]").encode(), media_type="application/json")


_blob = {"body": b"[]"}


@app.put("/blob")
async def put_blob(request: Request) -> Response:
    _blob["body"] = await request.body()
    return Response(status_code=204)


@app.get("/blob")
async def get_blob() -> Response:
    return Response(_blob["body"], media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default=":memory:", help="SQLite file for GET /row/{id} (made here)")
    args = parser.parse_args()
    _db["path"] = args.db
    with sqlite3.connect(args.db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute("INSERT OR REPLACE INTO items VALUES (1, ?)", (json.dumps(PAYLOAD, separators=(",", ":")),))
        conn.execute("CREATE TABLE IF NOT EXISTS page_items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.executemany("INSERT OR REPLACE INTO page_items VALUES (?, ?)",
                         [(i, json.dumps(PAYLOAD | {"id": i, "params": []}, separators=(",", ":"))) for i in range(1, 21)])
    # The same uvicorn settings as `studios serve` (src/studios/cli.py).
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info", loop="uvloop", http="httptools", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
