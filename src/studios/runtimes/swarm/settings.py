"""Settings of the swarm runtime (`STUDIOS_SWARM_*`), one documented field each."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from studios.runtimes.base import RuntimeSettings


class SwarmSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOS_SWARM_", extra="ignore")

    url: str | None = Field(None, description="Docker Engine API URL of a swarm manager (unix:///var/run/docker.sock, tcp://manager:2376 with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, ssh://user@manager). Default: the docker SDK's environment (DOCKER_HOST).")
    node_urls: dict[str, str] = Field(default_factory=dict, description='JSON map of node hostname to that node\'s own Engine API URL, e.g. {"swn2": "tcp://10.0.0.2:2376"}. Used to measure peak memory and cpu on the node that runs a deployment and to tell an out-of-memory kill; without a node\'s URL its usage reads as unknown.')
    node_addresses: dict[str, str] = Field(default_factory=dict, description='JSON map of node hostname to the address Studios reaches that node at, when it differs from the address the node advertises to the swarm (e.g. {"worker-1": "192.0.2.11"}).')
    container_port: int = Field(8080, description="The PORT apps listen on inside the container; published in mode=host on a port the node's engine picks.")
    constraints: list[str] = Field(["node.labels.partition=={partition}"], description='JSON list of placement constraints; {partition} and {instance_type} are replaced by the deployment\'s, and a constraint naming one the deployment lacks is left out. E.g. ["node.labels.partition=={partition}", "node.labels.studios.type.{instance_type}==true"].')
    generic_resources: dict[str, dict[str, int]] = Field(default_factory=dict, description='JSON map of "<partition>" or "<partition>/<instance type>" to the generic resources a deployment reserves there, e.g. {"gpu": {"NVIDIA-GPU": 1}} (nodes advertise them with dockerd --node-generic-resource). The most specific key wins.')
    reserve_fraction: float = Field(1.0, ge=0.0, le=1.0, description="Reservations (what the scheduler counts) as a fraction of the cpu and memory limits; below 1 overcommits nodes.")
    restart_delay_seconds: float = Field(1.0, ge=0.0, description="The swarm waits this long before replacing a failed task. A task whose node died is replaced after it too; an app that exits by itself ends its deployment, and this delay is the window the runtime has to stop the swarm's restart.")
    stop_grace_seconds: float = Field(5.0, ge=0.0, description="SIGTERM to SIGKILL grace the swarm gives a task it stops (service spec StopGracePeriod).")
    poll_seconds: float = Field(0.25, gt=0.0, description="How often the manager's task list is read while every watched deployment is settled.")
    fast_poll_seconds: float = Field(0.05, gt=0.0, description="How often it is read while some deployment is being placed, started or moved.")
    reschedule_timeout_seconds: float = Field(30.0, ge=0.0, description="After a node dies, how long its deployment may wait for another node before it ends, terminated, with a message naming the node.")
    source_limit_mb: float = Field(8.0, gt=0.0, description="Largest compressed checkout of a studio's repo carried to the task (as swarm secrets of 500 KB each); larger repos are refused at start.")
    network: str | None = Field(None, description="An overlay network to attach every deployment to (endpoint mode dnsrr). Default: none.")
