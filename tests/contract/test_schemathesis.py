"""Fuzzing the API from its own `GET /endpoints` (Swagger 2.0) with schemathesis, against a real
`studios serve`: every operation gets valid and invalid requests (hypothesis, derandomized so
each run sends the same ones), and every answer must be no server error (5xx) and, where the
status is declared, conform to the declared schema, headers and media type (a 204 carries no
body, hence no Content-Type: the media type is not checked on it).

What it runs against: a regular user's key, with one studio, one credential and one deployment
already made (so small ids exist), on a partition whose runtime this server does not have: a
deployment the fuzzer creates ends at once ("runtime not available") instead of cloning a
generated URL or starting a process. The API itself is all real.

One deliberate difference from the reference spec is configured here, in one place, and
documented in docs/compatibility.md: `Studio.mostRecentDeployment` is null before a first
deployment, while the spec's `$ref` is not nullable (`NULLABLE_REFS`)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_headers_conformance, response_schema_conformance
from schemathesis.openapi import from_dict

from .server import StudiosServer, studios_server

EXAMPLES_PER_MODE = int(os.environ.get("STUDIOS_FUZZ_EXAMPLES", "30"))
"""Per operation, valid and invalid each: 25 operations -> 1,500 requests. Raise it (and set
STUDIOS_FUZZ_RANDOM=1 for new inputs each run) to look deeper by hand."""
DERANDOMIZE = not os.environ.get("STUDIOS_FUZZ_RANDOM")
MIN_REQUESTS = 1000
NULLABLE_REFS = {("Studio", "mostRecentDeployment")}
"""(definition, property) whose `$ref` our answers may leave null, as documented."""

PARTITIONS = """
default_partition = "default"
[partitions.default]
runtime = "docker"
default_instance_type = "small"
[partitions.default.instance_types.small]
cpu = 1000
memory = 2048
disk = 8.0
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudiosServer]:
    root = tmp_path_factory.mktemp("fuzz")
    partitions = root / "partitions.toml"
    partitions.write_text(PARTITIONS)
    # Invalid requests include broken Authorization headers (401s) on purpose: the per-address
    # failure limit (tested in tests/api/test_ratelimit.py) is off here, or it would soon answer
    # every request with a 429 and the fuzzing would stop reaching the routes.
    env = {"STUDIOS_PARTITIONS_FILE": str(partitions), "STUDIOS_IDLE_SLEEP_SECONDS": "0", "STUDIOS_AUTH_FAILURE_LIMIT": ""}
    with studios_server(root / "server", name="fuzz", runtime="process", env=env) as srv:
        yield srv


def with_nullable_refs(spec: dict[str, Any]) -> dict[str, Any]:
    for definition, prop in NULLABLE_REFS:
        node = spec["definitions"][definition]["properties"][prop]
        assert "$ref" in node, f"{definition}.{prop} is no longer a $ref: update NULLABLE_REFS and docs/compatibility.md"
        spec["definitions"][definition]["properties"][prop] = {"x-nullable": True, "allOf": [{"$ref": node["$ref"]}], "description": node.get("description", "")}
    return spec


def seed(url: str, auth: dict[str, str]) -> None:
    with httpx.Client(base_url=url, headers=auth, trust_env=False, timeout=30) as http:
        studio = http.post("/studios", json={"name": "seed", "dockerImageName": "busybox", "gitRepoUrl": "https://example.invalid/r.git"})
        assert studio.status_code == 201, studio.text
        assert http.post("/credentials", json={"name": "seed", "type": "Custom", "username": "u", "password": "p"}).status_code in (200, 201)
        deployed = http.post(f"/studios/{studio.json()['id']}/deployments", json={})
        assert deployed.status_code == 201, deployed.text


def test_fuzzing_finds_no_server_error_and_no_answer_off_its_schema(server: StudiosServer) -> None:
    key = server.studios("users", "create", "fuzzer")
    auth = {"Authorization": f"Bearer {key}"}
    seed(server.url, auth)
    spec = with_nullable_refs(httpx.get(f"{server.url}/endpoints", trust_env=False).json())
    schema = from_dict(spec)
    session = requests.Session()
    session.trust_env = False
    sent: list[int] = []
    failures: list[str] = []
    started = time.monotonic()

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES_PER_MODE, derandomize=DERANDOMIZE, database=None, deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def exercise(case: Any) -> None:
                response = case.call(base_url=server.url, session=session, headers=auth, timeout=30)
                sent.append(response.status_code)
                checks = [not_a_server_error, response_schema_conformance, response_headers_conformance]
                if response.status_code != 204:  # a 204 has no body, so no Content-Type (RFC 9110 15.3.5)
                    checks.append(content_type_conformance)
                case.validate_response(response, checks=checks)

            try:
                exercise()
            except Exception as error:  # one operation's failure is reported, the others still run
                failures.append(f"{operation.label} ({mode.value}): {str(error)[:1500]}")

    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures) + f"\n\nserver log:\n{server.log_tail()}"
    statuses = Counter(sent)
    assert len(sent) >= MIN_REQUESTS, f"only {len(sent)} requests in {elapsed:.0f} s: {statuses}"
    assert not any(status >= 500 for status in statuses), statuses
    # Every operation was reached, not refused wholesale: no 429, and answers beyond 4xx.
    assert statuses[429] == 0 and sum(n for status, n in statuses.items() if status < 300) >= 100, statuses
