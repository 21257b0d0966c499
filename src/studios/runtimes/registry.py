"""Which runtimes this service has: plug-ins found through the `studios.runtimes` entry-point
group, each built with its own settings model (read from `STUDIOS_<NAME>_*` variables), and
checked at start against the partitions that name them.

`STUDIOS_RUNTIME` picks the default runtime (what partitions with `runtime = "default"` use):
a runtime's name, or `auto` (Docker when an engine answers, else host processes). A partition
that names a runtime which is not installed or not usable here stops `studios serve` with a
sentence saying which and why, instead of failing each deployment later.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from studios.partitions import Partitions
from studios.runtimes.base import Handle, Runtime, RuntimeEnv, RuntimeSettings
from studios.settings import Settings, markdown_table

GROUP = "studios.runtimes"


class RuntimeUnavailable(Exception):
    """The runtimes this service is configured with can't all be used here (the message says why)."""


def discover() -> dict[str, type[Runtime]]:
    """Every installed runtime class by name."""
    found: dict[str, type[Runtime]] = {}
    for point in entry_points(group=GROUP):
        cls = point.load()
        if not (isinstance(cls, type) and issubclass(cls, Runtime)):
            raise RuntimeUnavailable(f"entry point {point.name} = {point.value} is not a Runtime class")
        found[point.name] = cls
    return found


def config_table() -> str:
    """The README's configuration table: the service's settings, then each installed runtime's
    (in name order; a runtime without settings of its own adds no rows)."""
    models = [cls.settings_model for _, cls in sorted(discover().items()) if cls.settings_model.model_fields]
    return markdown_table([Settings, *dict.fromkeys(models)])


def instance_id(database_url: str, configured: str | None = None) -> str:
    """A short id of this installation, the same on every server of one database: the
    configured one, else a hash of the database URL without its password."""
    if configured:
        return configured
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        url = url.set(database=str(Path(url.database).resolve()))
    return hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]


@dataclasses.dataclass
class Runtimes:
    """The runtimes built for this service, and the default one."""

    by_name: dict[str, Runtime]
    default: str
    reason: str
    """A sentence saying which runtime is the default and why (printed by `studios serve`)."""
    partitions: Partitions

    def get(self, name: str | None) -> Runtime | None:
        return self.by_name.get(name or "")

    def for_partition(self, label: str | None) -> str:
        """The runtime a new deployment of this partition runs on."""
        wanted = self.partitions.partition(label).runtime
        return self.default if wanted == "default" else wanted

    def address(self, name: str | None, handle: Handle | None) -> tuple[str, int] | None:
        runtime = self.get(name)
        return runtime.address(handle) if runtime is not None and handle else None

    async def close(self) -> None:
        for runtime in self.by_name.values():
            await runtime.close()


def build(
    default: str,
    partitions: Partitions,
    env_for: Callable[[str], RuntimeEnv],
    *,
    classes: dict[str, type[Runtime]] | None = None,
    settings_for: Callable[[type[Runtime]], RuntimeSettings] | None = None,
) -> Runtimes:
    """Build the default runtime and every runtime a partition names; `RuntimeUnavailable`
    says which one can't be used and why."""
    classes = classes if classes is not None else discover()
    settings_for = settings_for or (lambda cls: cls.settings_model())
    settings = {name: settings_for(cls) for name, cls in classes.items()}
    known = ", ".join(sorted(classes))

    def problem(name: str) -> str | None:
        return classes[name].available(settings[name])

    if default == "auto":
        trouble = problem("docker") if "docker" in classes else "not installed"
        if trouble is None:
            chosen, reason = "docker", "docker: auto, and a Docker engine answers"
        else:
            chosen, reason = "process", f"process: auto, and no Docker engine answers ({trouble})"
    else:
        if default not in classes:
            raise RuntimeUnavailable(f"STUDIOS_RUNTIME={default}: no such runtime (installed: {known})")
        chosen, reason = default, f"{default}: STUDIOS_RUNTIME={default}"
    needed = {chosen: "STUDIOS_RUNTIME"}
    for label, partition in partitions.by_label.items():
        if partition.runtime != "default":
            needed.setdefault(partition.runtime, f"partition {label!r}")
    built: dict[str, Runtime] = {}
    for name, who in needed.items():
        if name not in classes:
            raise RuntimeUnavailable(f"{who} runs on runtime {name!r}, which is not installed (installed: {known})")
        trouble = problem(name)
        if trouble is not None:
            raise RuntimeUnavailable(f"{who} runs on runtime {name!r}, which can't be used here: {trouble}")
        built[name] = classes[name](settings[name], env_for(name))
    return Runtimes(built, chosen, reason, partitions)
