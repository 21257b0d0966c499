"""Images and storage for the Docker runtime: make sure an image is there, and say whether
the engine's storage driver can enforce a disk limit.

`ensure_image` uses a local image when one matches, otherwise pulls it and reports the
progress as a few readable lines (statuses, and the download every 10 %), and turns any
failure into a `LaunchError` that carries the engine's or registry's own reason. It never
creates containers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import docker
import docker.errors
from docker.utils import parse_repository_tag

from studios.runtimes.base import LaunchError, Reporter
from studios.runtimes.docker.failures import why
from studios.runtimes.docker.streams import read_in_threads

# Storage drivers that accept `--storage-opt size=...` (overlay2 only on xfs with pquota).
_SIZED_DRIVERS = {"btrfs", "zfs", "devicemapper", "windowsfilter"}


def image_reference(image: str, tag: str | None) -> str:
    """`image:tag`, unless the image already names a tag or a digest (used as it is)."""
    if "@" in image:
        return image
    _, own_tag = parse_repository_tag(image)
    if own_tag:
        return image
    return f"{image}:{tag or 'latest'}"


class _Progress:
    """Turns the engine's per-layer pull events into a handful of lines."""

    def __init__(self, reference: str, report: Reporter) -> None:
        self.reference = reference
        self.report = report
        self.layers: dict[str, tuple[int, int]] = {}
        self.shown = -1

    def feed(self, event: dict[str, Any]) -> None:
        if "error" in event:
            raise LaunchError(f"image {self.reference} could not be pulled: {event['error']}")
        status = str(event.get("status", ""))
        layer = event.get("id")
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and layer and detail.get("total"):
            self.layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif status in ("Download complete", "Pull complete", "Already exists") and layer:
            done = self.layers.get(layer, (1, 1))[1]
            self.layers[layer] = (done, done)
        elif status and (not layer or status.startswith(("Pulling from", "Digest", "Status"))):
            self.report(f"pulling {self.reference}: {status}")  # per-image, not per-layer
            return
        if self.layers:
            current = sum(c for c, _ in self.layers.values())
            total = sum(t for _, t in self.layers.values()) or 1
            step = int(100 * current / total) // 10 * 10
            if step > self.shown:
                self.shown = step
                self.report(f"pulling {self.reference}: {step}% of {total / 1e6:.1f} MB")


async def ensure_image(client: docker.DockerClient, reference: str, report: Reporter) -> None:
    """Return once `reference` is present locally, pulling it if needed; else `LaunchError`."""
    try:
        await asyncio.to_thread(client.images.get, reference)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as error:  # e.g. an invalid reference format
        raise LaunchError(f"image {reference} could not be used: {why(error)}") from None

    report(f"pulling {reference}: not present locally")
    repository, tag = parse_repository_tag(reference)

    def open_pull() -> tuple[Iterable[dict[str, Any]], Callable[[], None]]:
        events = client.api.pull(repository, tag=tag, stream=True, decode=True)
        return events, lambda: None  # a pull is short; its thread ends with it

    progress = _Progress(reference, report)
    try:
        async for batch in read_in_threads([open_pull], name="pull"):
            for event in batch:
                progress.feed(event)
    except LaunchError:
        raise
    except Exception as error:  # engine refused, registry unreachable, invalid name...
        raise LaunchError(f"image {reference} could not be pulled: {why(error)}") from None
    try:
        await asyncio.to_thread(client.images.get, reference)
    except docker.errors.APIError as error:
        raise LaunchError(f"image {reference} could not be pulled: {why(error)}") from None
    report(f"pulled {reference}")


def disk_limit_refusal(info: dict[str, Any]) -> str | None:
    """None if the storage driver can enforce `storage_opt size` (overlay2 still needs xfs
    mounted with pquota: `start` retries without the limit when the engine refuses), else
    why it can't."""
    driver = str(info.get("Driver", ""))
    status = {str(k): str(v) for k, v in info.get("DriverStatus") or []}
    backing = status.get("Backing Filesystem", "")
    if driver in _SIZED_DRIVERS or (driver == "overlay2" and backing == "xfs"):
        return None
    on = f" on {backing}" if backing else ""
    return f"storage driver {driver or 'unknown'}{on} cannot limit a container's disk"


def is_storage_opt_refusal(error: docker.errors.APIError) -> bool:
    text = why(error).lower()
    return "storage-opt" in text or "storage opt" in text or "pquota" in text or "quota" in text
