"""From a deployment's `LaunchSpec` to the parts of a swarm service: its name and labels, the
placement constraints and generic resources of its partition and instance type, its limits and
reservations. Pure functions; the runtime sends what they return to the manager.
"""

from __future__ import annotations

import re
from typing import Any

LABEL_INSTANCE = "studios.instance"
LABEL_DEPLOYMENT = "studios.deployment_id"
LABEL_STUDIO = "studios.studio_id"
LABEL_EXIT = "studios.exit"
"""Set on the service when the runtime ends it (JSON of the `Exit`): every server agrees on how
it ended, even one that restarted meanwhile."""
LABEL_USAGE = "studios.usage"
"""Set with the exit: the peak usage measured while it ran (JSON)."""
ENDED_CONSTRAINT = "node.id==studios-ended"
"""Added to an ended service's placement constraints (no node has that id): the swarm shuts its
task down and keeps it in the task history with its log, where a scale to 0 would have the
task, and its log, deleted (`runtime._retire`)."""

WORKSPACE = "/workspace"
"""The working directory a studio's code is unpacked into (as in the Docker runtime)."""


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9-]", "-", text).strip("-") or "x"


def service_name(instance: str, deployment_id: int) -> str:
    """`studios-<instance>-d<id>`: a valid service name (letters, digits, dashes; ≤ 63)."""
    return f"studios-{_safe(instance)[:32]}-d{deployment_id}"


def labels(instance: str, deployment_id: int, studio_id: int) -> dict[str, str]:
    return {LABEL_INSTANCE: instance, LABEL_DEPLOYMENT: str(deployment_id), LABEL_STUDIO: str(studio_id)}


def constraints(templates: list[str], partition: str | None, instance_type: str | None) -> list[str]:
    """The templates with {partition} and {instance_type} filled in; a template that names a
    value the deployment lacks is left out (no partition: no partition constraint)."""
    values = {"partition": partition, "instance_type": instance_type}
    result = []
    for template in templates:
        names = re.findall(r"{(\w+)}", template)
        if any(values.get(name) is None for name in names):
            continue
        result.append(template.format(**{name: values[name] for name in names}))
    return result


def generic_resources(table: dict[str, dict[str, int]], partition: str | None, instance_type: str | None) -> dict[str, int]:
    """The generic resources declared for "<partition>/<instance type>", else "<partition>"."""
    if partition is None:
        return {}
    if instance_type is not None and f"{partition}/{instance_type}" in table:
        return dict(table[f"{partition}/{instance_type}"])
    return dict(table.get(partition, {}))


def resources(memory_mb: int | None, cpu_millicores: int | None, fraction: float, generic: dict[str, int]) -> dict[str, Any]:
    """Keyword arguments of `docker.types.Resources`: limits enforced by the node's engine,
    reservations (a fraction of them) counted by the scheduler."""
    options: dict[str, Any] = {}
    if memory_mb:
        options["mem_limit"] = memory_mb * 2**20
        if fraction > 0:
            options["mem_reservation"] = int(memory_mb * 2**20 * fraction)
    if cpu_millicores:
        options["cpu_limit"] = cpu_millicores * 1_000_000
        if fraction > 0:
            options["cpu_reservation"] = int(cpu_millicores * 1_000_000 * fraction)
    if generic:
        options["generic_resources"] = generic
    return options
