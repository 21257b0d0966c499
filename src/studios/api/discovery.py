"""`GET /endpoints`: the Swagger 2.0 document the civis client builds its methods from.

It is derived from FastAPI's own OpenAPI output, so it lists exactly the routes and the wire
models the server uses; nothing here is a hand-kept copy. Conversion rules: components become
definitions, request bodies become a `body` parameter named after their model, `X | None`
becomes `X` with `x-nullable`, and a top-level collection path gets the platform's trailing
slash (`/studios/`)."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

router = APIRouter()

REF_3 = "#/components/schemas/"
REF_2 = "#/definitions/"
DROP_KEYS = {"title", "default", "examples", "discriminator"}
DROP_SCHEMAS = {"HTTPValidationError", "ValidationError"}


def _schema(node: Any) -> Any:
    """Rewrite one JSON-schema node from OpenAPI 3.1 to Swagger 2.0."""
    if isinstance(node, list):
        return [_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in DROP_KEYS}
    for key in ("anyOf", "oneOf"):
        if key in node:
            every = node.pop(key)
            options = [o for o in every if o.get("type") != "null"]
            if len(options) == 1:
                node = {**options[0], **node}
                if len(options) < len(every):
                    node["x-nullable"] = True
                return _schema(node)
            types = {o.get("type") for o in options}
            node["type"] = "number" if types <= {"number", "integer"} else "string"
    if "$ref" in node:
        ref = node["$ref"].replace(REF_3, REF_2)
        extra = {k: v for k, v in node.items() if k not in ("$ref",)}
        # Swagger 2.0 ignores siblings of $ref; keep the description the way Civis does.
        node = {"$ref": ref, **{k: v for k, v in extra.items() if k == "description"}}
        return node
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node.get("exclusiveMinimum"), bool):
        node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if isinstance(node.get("exclusiveMaximum"), (int, float)) and not isinstance(node.get("exclusiveMaximum"), bool):
        node["maximum"], node["exclusiveMaximum"] = node["exclusiveMaximum"], True
    if node.get("type") == "number" and "format" not in node:
        node["format"] = "float"
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _schema(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "allOf"):
            out[key] = _schema(value)
        else:
            out[key] = value
    return out


def _path(path: str) -> str:
    segments = path.strip("/").split("/")
    return f"/{segments[0]}/" if len(segments) == 1 else path


def _parameter(param: dict[str, Any]) -> dict[str, Any]:
    schema = _schema(param.get("schema", {}))
    out: dict[str, Any] = {"name": param["name"], "in": param["in"], "required": bool(param.get("required", False))}
    if param.get("description") or schema.get("description"):
        out["description"] = param.get("description") or schema.get("description")
    for key in ("type", "format", "enum", "items", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "maxLength"):
        if key in schema:
            out[key] = schema[key]
    out.setdefault("type", "string")
    return out


def swagger(openapi: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, operations in openapi.get("paths", {}).items():
        converted: dict[str, Any] = {}
        for method, op in operations.items():
            params = [_parameter(p) for p in op.get("parameters", [])]
            body = op.get("requestBody")
            if body:
                schema = body["content"]["application/json"]["schema"]
                schema = _schema(schema)
                name = schema.get("$ref", "").rsplit("/", 1)[-1] or "body"
                params.append({"name": name, "in": "body", "schema": {"$ref": schema["$ref"]} if "$ref" in schema else schema, "required": bool(body.get("required", False))})
            responses: dict[str, Any] = {}
            for code, resp in op.get("responses", {}).items():
                if code == "422":
                    continue
                out: dict[str, Any] = {"description": "success" if code.startswith("2") else resp.get("description", "")}
                content = resp.get("content", {}).get("application/json")
                if content and content.get("schema") and code != "204":
                    out["schema"] = _schema(content["schema"])
                responses[code] = out
            converted[method] = {"summary": op.get("summary", ""), "deprecated": False, "parameters": params, "responses": responses, "x-examples": None, "x-deprecation-warning": None}
        paths.setdefault(_path(path), {}).update(converted)
    definitions = {name: _schema(copy.deepcopy(schema)) for name, schema in openapi.get("components", {}).get("schemas", {}).items() if name not in DROP_SCHEMAS}
    return {
        "swagger": "2.0",
        "info": {"title": "Civis Analytics API", "version": "1"},
        "produces": ["application/json"],
        "consumes": ["application/json"],
        "securityDefinitions": {"api_key": {"type": "apiKey", "name": "Authorization", "in": "header"}},
        "security": [{"api_key": []}],
        "paths": paths,
        "definitions": definitions,
    }


def document(app: FastAPI) -> bytes:
    cached = getattr(app.state, "swagger_json", None)
    if cached is None:
        import json

        spec = swagger(get_openapi(title="Studios", version="1", routes=app.routes))
        cached = app.state.swagger_json = json.dumps(spec).encode()
    return cached


@router.get("/endpoints", include_in_schema=False)
async def endpoints(request: Request) -> Response:
    return Response(document(request.app), media_type="application/json")
