"""Preparing a deployment's service before it is created: the repo's code packed for the task,
the image's own command (which the init step runs), and the service's options (the spec as the
docker SDK takes it). Talks to engines only to read an image's configuration (or pull it)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import ContainerSpec, DriverConfig, EndpointSpec, Placement, Resources, RestartPolicy, SecretReference, ServiceMode, TaskTemplate  # fmt: skip

from studios.runtimes import git
from studios.runtimes.base import LaunchError, LaunchSpec, Reporter
from studios.runtimes.docker.failures import why
from studios.runtimes.swarm import payload
from studios.runtimes.swarm import spec as naming
from studios.runtimes.swarm.settings import SwarmSettings

_NS = 1_000_000_000


async def pack_source(spec: LaunchSpec, settings: SwarmSettings, scratch_dir: Path, report: Reporter) -> list[bytes]:
    """The studio's repo (`spec.source`) as secret-sized pieces, cloned here on the Studios
    server (where the credential is, and stays); [] without a repo."""
    if spec.source is None:
        return []
    limit = int(settings.source_limit_mb * 2**20)

    def make_scratch() -> Path:
        scratch_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"checkout-d{spec.deployment_id}-", dir=scratch_dir))

    scratch = await asyncio.to_thread(make_scratch)
    try:
        await git.fetch(spec.source, scratch / "repo", report)
        pieces = await asyncio.to_thread(payload.pack, scratch / "repo", limit)
    except git.CheckoutError as error:
        raise LaunchError(str(error)) from None
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    size = sum(len(p) for p in pieces)
    report(f"the repo travels to the task as {len(pieces)} swarm secret{'s' if len(pieces) != 1 else ''} ({size / 1024:.0f} KB compressed)")
    return pieces


async def image_command(apis: list[docker.APIClient], reference: str, report: Reporter) -> tuple[list[str] | None, list[str] | None]:
    """The image's ENTRYPOINT and CMD: from the first engine in `apis` that has the image (the
    manager first, then nodes), else pulled on the first (the manager)."""
    for api in apis:
        try:
            attrs = await asyncio.to_thread(api.inspect_image, reference)
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError as error:
            raise LaunchError(f"image {reference} could not be used: {why(error)}") from None
        config = attrs.get("Config") or {}
        return config.get("Entrypoint"), config.get("Cmd")
    report(f"pulling {reference} on the swarm manager to read its command")
    try:
        await asyncio.to_thread(apis[0].pull, reference)
        attrs = await asyncio.to_thread(apis[0].inspect_image, reference)
    except docker.errors.APIError as error:
        raise LaunchError(f"image {reference} could not be pulled: {why(error)}") from None
    config = attrs.get("Config") or {}
    return config.get("Entrypoint"), config.get("Cmd")


def service_options(
    settings: SwarmSettings, spec: LaunchSpec, reference: str, name: str, labels: dict[str, str],
    command: list[str] | None, refs: list[SecretReference], has_source: bool, report: Reporter,
) -> dict[str, Any]:  # fmt: skip
    """Keyword arguments of `APIClient.create_service` for one deployment."""
    s = settings
    partition, instance_type = spec.partition, spec.instance_type
    generic = naming.generic_resources(s.generic_resources, partition, instance_type)
    if spec.disk_gb:
        report(f"disk limit of {spec.disk_gb:g} GB is not enforced: swarm services cannot limit a container's disk")
    container = ContainerSpec(
        image=reference,
        command=command,
        env={**spec.env, "PORT": str(s.container_port)},
        labels=labels,
        workdir=naming.WORKSPACE if has_source else None,
        secrets=refs or None,
        init=True,
        stop_grace_period=int(s.stop_grace_seconds * _NS),
    )
    template = TaskTemplate(
        container_spec=container,
        resources=Resources(**naming.resources(spec.memory_mb, spec.cpu_millicores, s.reserve_fraction, generic)),
        restart_policy=RestartPolicy(condition="on-failure", delay=int(s.restart_delay_seconds * _NS), max_attempts=0),
        placement=Placement(constraints=naming.constraints(s.constraints, partition, instance_type)),
        log_driver=DriverConfig("json-file", {"max-size": "20m", "max-file": "3"}),
        networks=[s.network] if s.network else None,
    )
    return {
        "task_template": template,
        "name": name,
        "labels": labels,
        "mode": ServiceMode("replicated", 1),
        "endpoint_spec": EndpointSpec(mode="dnsrr" if s.network else None, ports={0: (s.container_port, "tcp", "host")}),
    }
