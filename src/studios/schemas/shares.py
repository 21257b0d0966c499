"""Wire models of shares, after the platform's `ShareIndex` convention."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool

from studios.schemas.common import RequestModel, ResponseModel

Level = Literal["read", "write", "manage"]


class ShareUserSummary(ResponseModel):
    id: int
    name: str


class ShareGroupSummary(ResponseModel):
    id: int
    name: str


class ShareUserSetSummary(ResponseModel):
    users: list[ShareUserSummary]
    groups: list[ShareGroupSummary]


class ShareIndex(ResponseModel):
    readers: ShareUserSetSummary
    writers: ShareUserSetSummary
    owners: ShareUserSetSummary
    total_user_shares: int = Field(description="For owners, the number of total users shared. For writers and readers, the number of visible users shared.")
    total_group_shares: int = Field(description="For owners, the number of total groups shared. For writers and readers, the number of visible groups shared.")


class ShareUsersUpdateRequest(RequestModel):
    user_ids: list[Annotated[int, Field(gt=0, le=2**31 - 1, strict=True)]] = Field(min_length=1, max_length=1000, description="An array of one or more user IDs.")
    permission_level: Level = Field(description='Options are: "read", "write", or "manage".')
    share_email_body: str | None = Field(None, max_length=10000, description="Custom body text for e-mail sent on a share.")
    send_shared_email: StrictBool | None = Field(None, description="Send email to the recipients of a share.")
