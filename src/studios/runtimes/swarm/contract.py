"""The parts of the coming runtime contract (issue 13, docs: /work/design/runtime-contract.md)
that `studios.runtimes.base` does not hold yet: `Status`, `Source`, `RuntimeEnv` and the new
`LaunchSpec` fields. Transitional: once the new base lands these names are imported from it
and this module goes away. Nothing here knows about Docker.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from studios.runtimes.base import Exit, Handle
from studios.runtimes.base import LaunchSpec as BaseLaunchSpec


@dataclasses.dataclass(frozen=True)
class Source:
    """The studio's git repository; `password` is a secret."""

    url: str
    ref: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class RuntimeEnv:
    """What the service gives every runtime: a private directory, the installation's short id
    (for names and labels), and the API's URL as apps reach it."""

    data_dir: Path
    instance: str
    public_url: str = "http://localhost:8000"


@dataclasses.dataclass(frozen=True)
class Status:
    """One change a user should see, yielded by `watch` (see the contract)."""

    message: str
    running: bool
    handle: Handle | None = None
    exit: Exit | None = None
    log: str | None = None


@dataclasses.dataclass(frozen=True)
class LaunchSpec(BaseLaunchSpec):
    """Today's `LaunchSpec` with the new contract's fields."""

    partition: str | None = None
    instance_type: str | None = None
    secret_env: dict[str, str] = dataclasses.field(default_factory=dict)
    source: Source | None = None


def spec_field(spec: Any, name: str, default: Any = None) -> Any:
    """A `LaunchSpec` field that today's spec may lack (partition, instance_type, secret_env,
    source): read with a default so both the old and the new spec work."""
    return getattr(spec, name, default)
