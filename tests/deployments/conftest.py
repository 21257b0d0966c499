"""After each deployment test, nothing it started keeps running: workloads outlive the
service by design, so a test that ends mid-start or forgets a DELETE would leak them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Api


@pytest.fixture(autouse=True)
def _no_leftover_workloads(api: Api, ctx: Any) -> Iterator[None]:
    yield

    async def sweep() -> None:
        for runtime in ctx.runtimes.by_name.values():
            for deployment_id in await runtime.orphans(set()):
                await runtime.remove_orphan(deployment_id)

    api.portal.call(sweep)
