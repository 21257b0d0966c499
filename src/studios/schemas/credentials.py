"""Wire models of credentials, after the platform's `/credentials` endpoints. The secret
(`password`) is accepted on writes and never appears in any response."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt

from studios.schemas.common import RequestModel, ResponseModel, Time
from studios.schemas.users import UserSimpleUser

CREDENTIAL_TYPES = ("Amazon Web Services S3", "Bitbucket", "Custom", "Database", "Git", "GitHub", "GitLab")
CredentialKind = Literal[CREDENTIAL_TYPES]  # type: ignore[valid-type]


class Credential(ResponseModel):
    id: int = Field(description="The ID of the credential.")
    name: str | None = Field(description="The name identifying the credential")
    type: str = Field(description="The credential's type.")
    username: str | None = Field(description="The username for the credential.")
    description: str | None = Field(description="A long description of the credential.")
    owner: str = Field(description="The username of the user who this credential belongs to. Using user.username is preferred.")
    user: UserSimpleUser = Field(description="The user who this credential belongs to.")
    remote_host_id: int | None = Field(description="The ID of the remote host associated with this credential.")
    remote_host_name: str | None = Field(description="The name of the remote host associated with this credential.")
    state: str | None = Field(description="The U.S. state for the credential. Only for VAN credentials.")
    created_at: Time = Field(description="The creation time for this credential.")
    updated_at: Time = Field(description="The last modification time for this credential.")
    default: bool = Field(description="Whether or not the credential is a default. Only for Database credentials.")
    oauth: bool = Field(description="Whether or not the credential is an OAuth credential.")
    provider: str | None = Field(description='For OAuth User credentials: the OAuth provider (e.g. "salesforce").')
    provider_metadata: dict[str, Any] | None = Field(description="For OAuth User credentials: non-secret provider metadata. Never contains tokens.")


class _CredentialWrite(RequestModel):
    name: str | None = Field(None, max_length=255, description="The name identifying the credential.")
    type: CredentialKind | None = Field(None, description="The type of credential: " + ", ".join(CREDENTIAL_TYPES) + ".")
    description: str | None = Field(None, max_length=10_000, description="A long description of the credential.")
    username: str | None = Field(None, max_length=1024, description="The username for the credential.")
    password: str | None = Field(None, min_length=1, max_length=65_536, description="The password for the credential.")
    remote_host_id: StrictInt | None = Field(None, gt=0, le=2**31 - 1, description="The ID of the remote host associated with the credential.")
    default: StrictBool | None = Field(None, description="Whether or not the credential is a default. Only for Database credentials.")


class CredentialCreateRequest(_CredentialWrite):
    type: CredentialKind = Field(description="The type of credential: " + ", ".join(CREDENTIAL_TYPES) + ".")
    username: str = Field(max_length=1024, description="The username for the credential.")
    password: str = Field(min_length=1, max_length=65_536, description="The password for the credential.")


class CredentialUpdateRequest(CredentialCreateRequest):
    pass


class CredentialPatchRequest(_CredentialWrite):
    pass


class CredentialType(ResponseModel):
    types: list[str] = Field(description="list of acceptable credential types")
