"""The bare-FastAPI anchor of `bench/api_bench.py`: one JSON route returning a ~1 KB dict
from memory, served by uvicorn exactly as `studios serve` serves ours (1 worker, httptools,
uvloop, no access log).

    .venv/bin/python bench/anchors/bare_app.py --port 8123
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same uvicorn settings as `studios serve` (src/studios/cli.py).
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="info", loop="uvloop", http="httptools", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
