"""The Docker runtime: `runtime.py` (the `Runtime`), `cgroups.py`, `exits.py`, `images.py`,
`logs.py` and `streams.py`."""

from studios.runtimes.docker.runtime import DockerRuntime, docker_available

__all__ = ["DockerRuntime", "docker_available"]
