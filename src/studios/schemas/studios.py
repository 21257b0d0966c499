"""Wire models of studios: what `POST/PUT/PATCH /studios` accept and what every studio
response looks like. Field names, types and descriptions follow civis_studios_spec.json."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, WithJsonSchema, field_validator, model_validator

from studios import git_input
from studios.schemas.common import RequestModel, ResponseModel, Time
from studios.schemas.deployments import StudioDeployment
from studios.schemas.users import UserSimpleUser

PARAM_TYPES = (
    "string",
    "multi_line_string",
    "integer",
    "float",
    "bool",
    "file",
    "table",
    "database",
    "credential_aws",
    "credential_redshift",
    "credential_custom",
)
ParamType = Literal[PARAM_TYPES]  # type: ignore[valid-type]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IMAGE_NAME = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
IMAGE_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
BOOL_VALUES = {"true", "false", "1", "0", "yes", "no", "t", "f"}

Name = Annotated[str, Field(min_length=1, max_length=255)]
Label = Annotated[str, Field(max_length=255)]


def check_param_value(type_: str, value: str | None) -> None:
    """Raise ValueError when `value` is not a valid `type_` value (None is always allowed)."""
    if value is None:
        return
    if type_ == "integer":
        if not re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
            raise ValueError(f"value {value!r} is not an integer")
    elif type_ == "float":
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"value {value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"value {value!r} is not a finite number")
    elif type_.startswith("credential_") or type_ == "database":
        if not re.fullmatch(r"\d{1,10}", value.strip()):
            raise ValueError(f"value {value!r} is not a credential id (a {type_} param holds the id of a credential)")
    elif type_ == "bool" and value.strip().lower() not in BOOL_VALUES:
        raise ValueError(f"value {value!r} is not a boolean (true or false)")


class StudioParamCreateRequest(RequestModel):
    name: str = Field(max_length=255, description="The variable's name as used within your code.")
    description: str | None = Field(None, max_length=1000, description="A short sentence or fragment describing this parameter.")
    type: ParamType = Field(description="The type of parameter. Valid options: string, multi_line_string, integer, float, bool, file, table, database, credential_aws, credential_redshift, or credential_custom")
    value: Annotated[StrictBool | StrictInt | StrictFloat | str | None, WithJsonSchema({"type": "string"})] = Field(None, description="The value you would like to set this param to.")

    @field_validator("name")
    @classmethod
    def _env_name(cls, name: str) -> str:
        if not ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name (letters, digits and _, not starting with a digit)")
        return name

    @field_validator("value", mode="after")
    @classmethod
    def _as_text(cls, value: object) -> str | None:
        if value is None:
            return None
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if len(text) > 65536:
            raise ValueError("value is longer than 65536 characters")
        return text

    @model_validator(mode="after")
    def _typed_value(self) -> StudioParamCreateRequest:
        try:
            check_param_value(self.type, self.value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"param {self.name}: {exc}") from None
        return self


class StudioRequiredResourcesCreateRequest(RequestModel):
    memory: StrictInt | None = Field(None, gt=0, le=1_048_576, description="The amount of memory allocated to the studio.")
    disk_space: Annotated[StrictFloat | StrictInt | None, WithJsonSchema({"type": "number", "format": "float"}), Field(gt=0, le=100_000)] = Field(None, description="The amount of disk space, in GB, to allocate for the studio. Fractional values (e.g. 0.25) are supported.")
    cpu: StrictInt | None = Field(None, gt=0, le=1_024_000, description="The amount of cpu allocated to the studio.")


class _StudioWrite(RequestModel):
    name: Name | None = Field(None, description="The name of the studio.")
    docker_image_name: Label | None = Field(None, description="The name of the docker image to pull from DockerHub.")
    docker_image_tag: Label | None = Field(None, description="The tag of the docker image to pull from DockerHub (default: latest).")
    instance_type: Label | None = Field(None, description="The EC2 instance type to deploy to.")
    required_resources: StudioRequiredResourcesCreateRequest | None = None
    git_credential_id: StrictInt | None = Field(None, gt=0, le=2**31 - 1, description="The id of the git credential to be used when checking out the specified git repo. If not supplied, the first git credential you've submitted will be used. ")
    params: list[StudioParamCreateRequest] | None = Field(None, max_length=200, description="A definition of the parameters to use as environment variables in this studio.")
    git_repo_url: Annotated[str, Field(max_length=2048)] | None = Field(None, description="The URL of the git repository (e.g., https://github.com/organization/repo_name.git).")
    git_ref: Label | None = Field(None, description="The git reference if git repo is specified")
    partition_label: Label | None = Field(None, description="The partition label used to run this object.")

    @field_validator("docker_image_name")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid docker image name")
        return value

    @field_validator("docker_image_tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_TAG.match(value):
            raise ValueError(f"{value!r} is not a valid docker image tag")
        return value

    @field_validator("git_repo_url")
    @classmethod
    def _git_url(cls, value: str | None) -> str | None:
        if value:
            git_input.check_url(value, allow_local=True)  # whether local ones are allowed: services.studios
        return value or None

    @field_validator("git_ref")
    @classmethod
    def _git_ref(cls, value: str | None) -> str | None:
        if value:
            git_input.check_ref(value)
        return value or None

    @field_validator("params")
    @classmethod
    def _unique_params(cls, params: list[StudioParamCreateRequest] | None) -> list[StudioParamCreateRequest] | None:
        seen: set[str] = set()
        for param in params or []:
            if param.name in seen:
                raise ValueError(f"param name {param.name!r} is used more than once")
            seen.add(param.name)
        return params


class StudioCreateRequest(_StudioWrite):
    pass


class StudioUpdateRequest(_StudioWrite):
    pass


class ArchiveUpdateRequest30(RequestModel):
    status: StrictBool = Field(description="The desired archived status of the object.")


class StudioRequiredResources(ResponseModel):
    memory: int | None = Field(description="The amount of memory allocated to the studio.")
    disk_space: float | None = Field(description="The amount of disk space, in GB, to allocate for the studio. Fractional values (e.g. 0.25) are supported.")
    cpu: int | None = Field(description="The amount of cpu allocated to the studio.")


class StudioParam(ResponseModel):
    name: str = Field(description="The variable's name as used within your code.")
    description: str | None = Field(description="A short sentence or fragment describing this parameter.")
    type: str = Field(description="The type of parameter. Valid options: string, multi_line_string, integer, float, bool, file, table, database, credential_aws, credential_redshift, or credential_custom")
    value: str | None = Field(description="The value you would like to set this param to.")


class Studio(ResponseModel):
    id: int = Field(description="The ID of the studio.")
    author: UserSimpleUser = Field(description="The user who owns the studio.")
    name: str = Field(description="The name of the studio.")
    docker_image_name: str | None = Field(description="The name of the docker image to pull from DockerHub.")
    docker_image_tag: str = Field(description="The tag of the docker image to pull from DockerHub (default: latest).")
    instance_type: str | None = Field(description="The EC2 instance type to deploy to.")
    required_resources: StudioRequiredResources
    created_at: Time
    updated_at: Time
    most_recent_deployment: StudioDeployment | None
    git_credential_id: int | None = Field(description="The id of the git credential to be used when checking out the specified git repo. If not supplied, the first git credential you've submitted will be used. ")
    params: list[StudioParam] = Field(description="A definition of the parameters to use as environment variables in this studio.")
    git_repo_id: int | None = Field(description="The ID of the git repository.")
    git_repo_url: str | None = Field(description="The URL of the git repository (e.g., https://github.com/organization/repo_name.git).")
    git_ref: str | None = Field(description="The git reference if git repo is specified")
    partition_label: str | None = Field(description="The partition label used to run this object.")
    my_permission_level: Literal["read", "write", "manage"] = Field(description='Your permission level on the object. One of "read", "write", or "manage".')
    archived: bool = Field(description="The archival status of the requested item(s).")
