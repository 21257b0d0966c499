"""Base classes of the wire models: camelCase out; snake_case, camelCase or both mixed in,
at every nesting level; Civis time format; and the shared small types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, field_validator
from pydantic.alias_generators import to_camel


def civis_time(value: datetime) -> str:
    """`2026-04-17T18:36:28.000Z`, as the platform writes times (naive times are UTC)."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


Time = Annotated[datetime, PlainSerializer(civis_time, return_type=str, when_used="json")]


class RequestModel(BaseModel):
    """A request body: unknown keys are refused (a typo must not be silently dropped)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        str_strip_whitespace=False,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text cannot hold NUL; refuse it on every database alike.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


class ResponseModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, from_attributes=True)
