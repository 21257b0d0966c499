"""The Docker Swarm runtime: a deployment is a swarm service with one task (docs/runtimes/swarm.md)."""

from studios.runtimes.swarm.runtime import SwarmRuntime
from studios.runtimes.swarm.settings import SwarmSettings

__all__ = ["SwarmRuntime", "SwarmSettings"]
