"""Wire models of deployments and their logs, as civis_studios_spec.json defines them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictInt

from studios.schemas.common import RequestModel, ResponseModel, Time

State = Literal["pending", "running", "terminated", "sleeping"]


class StudioDeploymentCreateRequest(RequestModel):
    deployment_id: StrictInt | None = Field(None, gt=0, le=2**31 - 1, description="The ID for this deployment")


class StudioDeploymentSummary(ResponseModel):
    deployment_id: int = Field(description="The ID for this deployment.")
    user_id: int = Field(description="The ID of the owner.")
    host: str | None = Field(description="Domain of the deployment.")
    name: str | None = Field(description="Name of the deployment.")
    docker_image_name: str | None = Field(description="The name of the docker image to pull from DockerHub.")
    docker_image_tag: str | None = Field(description="The tag of the docker image to pull from DockerHub (default: latest).")
    instance_type: str | None = Field(description="The EC2 instance type requested for the deployment.")
    memory: int | None = Field(description="The memory allocated to the deployment, in MB.")
    cpu: int | None = Field(description="The cpu allocated to the deployment, in millicores.")
    state: State | None = Field(description="The state of the deployment. One of pending, running, terminated or sleeping.")
    state_message: str | None = Field(description="A detailed description of the state.")
    max_memory_usage: float | None = Field(description="If the deployment has finished, the maximum amount of memory used during the deployment, in MB.")
    max_cpu_usage: float | None = Field(description="If the deployment has finished, the maximum amount of cpu used during the deployment, in millicores.")
    created_at: Time
    updated_at: Time
    studio_id: int = Field(description="The ID of the owning Studio")


class StudioDeployment(StudioDeploymentSummary):
    display_url: str | None = Field(description="A signed URL for viewing the deployed item.")


class LogDeploymentLogResponseSummary(ResponseModel):
    message: str = Field(description="The log message.")
    stream: Literal["stdout", "stderr"] = Field(description='The stream of the log. One of "stdout", "stderr".')
    created_at: Time = Field(description="The time the log was created.")
    source: Literal["system", "user"] = Field(description='The source of the log. One of "system", "user".')
