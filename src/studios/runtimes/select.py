"""Which runtimes this service offers and which one is the default (`STUDIOS_RUNTIME`):
`auto` takes Docker when a daemon answers, else host processes; the reason is reported."""

from __future__ import annotations

import hashlib
import shlex
import sys
from pathlib import Path

from studios.runtimes.base import Runtime
from studios.settings import Settings

EXAMPLE_IMAGE = "localhost/studios-hello"
"""The README's first deploy: on Docker, the image `examples/hello/build-image.sh` builds
locally; on host processes, `examples/hello/app.py` of a source checkout."""


def example_image_commands() -> dict[str, str]:
    """The host command of the example image, when this is a source checkout (`pip install -e`)
    that has `examples/hello`: the README's first deploy then runs with no configuration. Like
    the image on Docker, it runs the studio's own checkout instead when it has one (its `start`)."""
    app = Path(__file__).resolve().parents[3] / "examples" / "hello" / "app.py"
    if not app.is_file():
        return {}
    return {EXAMPLE_IMAGE: f"if [ -x ./start ]; then exec ./start; fi; exec {shlex.quote(sys.executable)} {shlex.quote(str(app))}"}


def build_runtimes(settings: Settings) -> tuple[dict[str, Runtime], str, str]:
    """(runtimes by name, default name, a sentence saying why)."""
    from studios.runtimes.docker import DockerRuntime, docker_available
    from studios.runtimes.process import ProcessRuntime

    runtimes: dict[str, Runtime] = {
        "process": ProcessRuntime(state_dir=settings.data_dir / "process-runtime", image_commands={**example_image_commands(), **settings.image_commands}),
    }
    instance = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:12]
    problem = docker_available(settings.docker_url) if settings.runtime in ("auto", "docker") else "not asked for"
    if problem is None:
        runtimes["docker"] = DockerRuntime(settings.docker_url, instance=instance)
    if settings.runtime == "docker":
        if problem is not None:
            raise SystemExit(f"STUDIOS_RUNTIME=docker but no Docker engine answers: {problem}")
        return runtimes, "docker", "docker: STUDIOS_RUNTIME=docker"
    if settings.runtime == "process":
        return runtimes, "process", "process: STUDIOS_RUNTIME=process"
    if problem is None:
        return runtimes, "docker", "docker: auto, and a Docker engine answers"
    return runtimes, "process", f"process: auto, and no Docker engine answers ({problem})"
