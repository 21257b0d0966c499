"""Wire models of users: the simple user embedded in objects, and `GET /users/me`."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from studios.schemas.common import ResponseModel, Time


class UserSimpleUser(ResponseModel):
    id: int = Field(description="The ID of this user.")
    name: str = Field(description="This user's name.")
    username: str = Field(description="This user's username.")
    initials: str = Field(description="This user's initials.")
    online: bool = Field(description="Whether this user is online.")


class UserGroup(ResponseModel):
    id: int
    name: str
    slug: str
    organization_id: int
    organization_name: str


class UserMe(ResponseModel):
    id: int = Field(description="The ID of this user.")
    name: str = Field(description="This user's name.")
    email: str | None = Field(description="This user's email address.")
    username: str = Field(description="This user's username.")
    initials: str = Field(description="This user's initials.")
    last_checked_announcements: Time | None = None
    feature_flags: dict[str, Any] = Field(default_factory=dict)
    roles: list[str] = Field(default_factory=list, description="The roles this user has, listed by slug.")
    preferences: dict[str, Any] = Field(default_factory=dict)
    custom_branding: str | None = None
    primary_group_id: int | None = None
    groups: list[UserGroup] = Field(default_factory=list)
    organization_name: str | None = None
    organization_slug: str | None = None
    organization_default_theme_id: int | None = None
    created_at: Time
    sign_in_count: int = 0
    assuming_role: bool = False
    role_assumer: dict[str, Any] | None = None
    assuming_admin: bool = False
    assuming_admin_expiration: Time | None = None
    superadmin_mode_expiration: Time | None = None
    disable_non_compliant_fedramp_features: bool = False
    persona_role: str | None = None
    created_by_id: int | None = None
    last_updated_by_id: int | None = None
