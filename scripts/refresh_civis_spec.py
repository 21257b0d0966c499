#!/usr/bin/env python3
"""Refresh the copies of the published Civis spec kept in `tests/contract/` from the installed
`civis` package (the version pinned in pyproject.toml), or check that they still match it.

    .venv/bin/python scripts/refresh_civis_spec.py          # rewrite both files
    .venv/bin/python scripts/refresh_civis_spec.py --check  # exit 1 if either differs

The `civis` client ships the platform's whole Swagger 2.0 spec as
`civis/resources/civis_api_spec.json`. We keep two subsets of it:

- `civis_studios_spec.json`: every path starting with `/studios` and every definition those
  operations reach, top-level metadata copied verbatim. `tests/api/test_discovery.py` holds our
  `GET /endpoints` against it.
- `civis_companion_spec.json`: the operations (below) that show the patterns Studios' own
  extensions follow (credentials, git repos, users/me, services' list and shares), with their
  `x-examples` emptied. Read by people (`docs/compatibility.md`), not by tests.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent / "tests" / "contract"
STUDIOS_FILE = HERE / "civis_studios_spec.json"
COMPANION_FILE = HERE / "civis_companion_spec.json"
SOURCE_FILE = "civis/resources/civis_api_spec.json"

COMPANION_OPERATIONS: dict[str, tuple[str, ...]] = {
    "/credentials/": ("get", "post"),
    "/credentials/{id}": ("get", "put", "patch", "delete"),
    "/credentials/types": ("get",),
    "/users/me": ("get",),
    "/services/": ("get",),
    "/services/{id}/shares": ("get",),
    "/services/{id}/shares/users": ("put",),
    "/services/{id}/shares/users/{user_id}": ("delete",),
    "/git_repos/": ("get", "post"),
    "/git_repos/{id}": ("get", "delete"),
}


def published_spec() -> tuple[dict[str, Any], str]:
    """The whole spec bundled with the installed civis client, and the client's version."""
    text = importlib.resources.files("civis").joinpath("resources", "civis_api_spec.json").read_text(encoding="utf-8")
    return json.loads(text), importlib.metadata.version("civis")


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        found = set()
        for value in node:
            found |= _refs(value)
        return found
    return set()


def _reachable(spec: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """Every definition the operations in `paths` reach, transitively, in the spec's order."""
    todo, seen = _refs(paths), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= _refs(spec["definitions"][name]) - seen
    return {name: body for name, body in spec["definitions"].items() if name in seen}


def studios_subset(spec: dict[str, Any], version: str) -> dict[str, Any]:
    paths = {path: ops for path, ops in spec["paths"].items() if path.startswith("/studios")}
    meta = {key: value for key, value in spec.items() if key not in ("paths", "definitions")}
    return {
        "x-source": {
            "package": f"civis (civis-python) {version} from PyPI",
            "file": SOURCE_FILE,
            "note": "Exact subset of the Swagger 2.0 spec bundled with the client: all paths starting with /studios plus every transitively referenced definition. Top-level metadata copied verbatim. Refreshed by scripts/refresh_civis_spec.py.",
        },
        **meta,
        "paths": paths,
        "definitions": _reachable(spec, paths),
    }


def companion_subset(spec: dict[str, Any], version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in COMPANION_OPERATIONS.items():
        paths[path] = {}
        for method in methods:
            operation = dict(spec["paths"][path][method])
            if "x-examples" in operation:
                operation["x-examples"] = None
            paths[path][method] = operation
    return {
        "x-source": {
            "package": f"civis (civis-python) {version} from PyPI",
            "file": SOURCE_FILE,
            "note": "Subset of the Swagger 2.0 spec bundled with the client: credentials, git repos, users/me, and the services list and shares endpoints, as the patterns that Studios extensions should follow. x-examples dropped. Refreshed by scripts/refresh_civis_spec.py.",
        },
        "swagger": spec["swagger"],
        "info": spec["info"],
        "paths": paths,
        "definitions": _reachable(spec, paths),
    }


def expected() -> dict[Path, dict[str, Any]]:
    """What each stored file should hold, from the installed client."""
    spec, version = published_spec()
    return {STUDIOS_FILE: studios_subset(spec, version), COMPANION_FILE: companion_subset(spec, version)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a stored copy differs")
    args = parser.parse_args(argv)
    stale = []
    for path, content in expected().items():
        stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if stored == content:
            print(f"{path.name}: up to date")
            continue
        if args.check:
            stale.append(path.name)
            print(f"{path.name}: differs from the installed civis package", file=sys.stderr)
        else:
            path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path.name}: written")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
