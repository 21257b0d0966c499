"""`GET /endpoints` against the published contract (`tests/contract/civis_studios_spec.json`, a
subset of the spec inside the pinned civis client; see `tests/contract/README.md`): every
operation of the contract that the server implements has the same parameters, and every
definition they reach the same fields and types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "tests" / "contract" / "civis_studios_spec.json"
METHODS = ("get", "put", "post", "patch", "delete")
REQUIRED_OPERATIONS = [("/studios/", "post"), ("/studios/{id}", "get"), ("/studios/{id}", "put"), ("/studios/{id}", "patch"), ("/studios/{id}/archive", "put")]


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    assert SPEC_PATH.is_file(), f"the contract {SPEC_PATH} is missing (scripts/refresh_civis_spec.py writes it)"
    return json.loads(SPEC_PATH.read_text())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, open_env: Any) -> dict[str, Any]:
    with open_env(tmp_path_factory.mktemp("discovery")) as env:
        response = env.api.get("/endpoints", json={})  # the client sends no key and maybe a {} body
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(path, method) for path, ops in spec["paths"].items() for method in ops if method in METHODS]


def shape(schema: dict[str, Any]) -> Any:
    """What a client relies on in a schema: its type, or its $ref target, recursively for arrays."""
    if "$ref" in schema:
        return ("$ref", schema["$ref"].rsplit("/", 1)[-1])
    kind = schema.get("type", "object")
    if kind == "array":
        return ("array", shape(schema.get("items", {})))
    return kind


def param_shape(param: dict[str, Any]) -> tuple[Any, ...]:
    if param["in"] == "body":
        return (param["name"], "body", bool(param.get("required")), shape(param["schema"]))
    return (param["name"], param["in"], bool(param.get("required")), shape(param))


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values())) if node else found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def reachable(spec: dict[str, Any], ops: list[tuple[str, str]]) -> set[str]:
    todo = set().union(*(refs(spec["paths"][p][m]) for p, m in ops)) if ops else set()
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= refs(spec["definitions"].get(name, {})) - seen
    return seen


def shared_operations(contract: dict[str, Any], served: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p, m) for p, m in operations(contract) if m in served["paths"].get(p, {})]


def test_is_swagger_2(served: dict[str, Any]) -> None:
    assert served["swagger"] == "2.0"
    assert isinstance(served["paths"], dict) and isinstance(served["definitions"], dict)
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary (the client needs one)"
            assert op.get("responses"), f"{method} {path} has no responses"
            assert "deprecated" not in op["summary"].lower()
            for param in op.get("parameters", []):
                if param["in"] == "body":
                    assert "$ref" in param["schema"] or "properties" in param["schema"], f"{method} {path}: body without properties"
                else:
                    assert "required" in param, f"{method} {path}: {param['name']} lacks 'required'"
        for ref in refs(ops):
            assert ref in served["definitions"], f"{path} refers to a missing definition {ref}"


@pytest.mark.parametrize(("path", "method"), REQUIRED_OPERATIONS)
def test_studio_definition_operations_are_served(served: dict[str, Any], path: str, method: str) -> None:
    assert method in served["paths"].get(path, {}), f"{method.upper()} {path} is missing from /endpoints"


def test_served_operations_have_the_contract_parameters(contract: dict[str, Any], served: dict[str, Any]) -> None:
    ops = shared_operations(contract, served)
    assert len(ops) >= len(REQUIRED_OPERATIONS)
    problems = []
    for path, method in ops:
        want = sorted(param_shape(p) for p in contract["paths"][path][method].get("parameters", []))
        have = sorted(param_shape(p) for p in served["paths"][path][method].get("parameters", []))
        if want != have:
            problems.append(f"{method.upper()} {path}:\n  contract {want}\n  served   {have}")
    assert not problems, "\n".join(problems)


def test_served_operations_have_the_contract_responses(contract: dict[str, Any], served: dict[str, Any]) -> None:
    problems = []
    for path, method in shared_operations(contract, served):
        want = {code: shape(r["schema"]) if "schema" in r else None for code, r in contract["paths"][path][method]["responses"].items()}
        have = {code: shape(r["schema"]) if "schema" in r else None for code, r in served["paths"][path][method]["responses"].items()}
        if want != {code: have.get(code, "absent") for code in want}:
            problems.append(f"{method.upper()} {path}: contract {want}, served {have}")
    assert not problems, "\n".join(problems)


def test_reachable_definitions_have_the_contract_fields_and_types(contract: dict[str, Any], served: dict[str, Any]) -> None:
    names = reachable(contract, shared_operations(contract, served))
    assert {"Studio", "StudioCreateRequest", "StudioUpdateRequest", "ArchiveUpdateRequest30", "UserSimpleUser", "StudioParam", "StudioRequiredResources"} <= names
    problems = []
    for name in sorted(names):
        if name not in served["definitions"]:
            problems.append(f"{name}: not served")
            continue
        want = {k: shape(v) for k, v in contract["definitions"][name].get("properties", {}).items()}
        have = {k: shape(v) for k, v in served["definitions"][name].get("properties", {}).items()}
        if want != have:
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            differ = {k: (want[k], have[k]) for k in set(want) & set(have) if want[k] != have[k]}
            problems.append(f"{name}: missing {missing}, extra {extra}, different types {differ}")
    assert not problems, "\n".join(problems)


def test_the_comparison_can_fail(contract: dict[str, Any]) -> None:
    """The shape functions see the differences the tests above look for."""
    studio = contract["definitions"]["Studio"]["properties"]
    assert shape(studio["id"]) == "integer" and shape(studio["author"]) == ("$ref", "UserSimpleUser")
    assert shape(studio["params"]) == ("array", ("$ref", "StudioParam"))
    assert shape({"type": "number"}) != shape({"type": "integer"})
    assert param_shape({"name": "id", "in": "path", "required": True, "type": "integer"}) != param_shape({"name": "id", "in": "path", "required": True, "type": "string"})
