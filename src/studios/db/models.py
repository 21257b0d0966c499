"""ORM classes: the tables and nothing else. Queries live in `studios.store`; the schema
changes only through an Alembic migration (a test checks that both agree)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from studios.schemas.common import civis_time


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL.

    On SQLite the value is stored as SQLAlchemy's DATETIME text (`2026-11-26 06:11:22.497000`)
    but read with `datetime.fromisoformat` (C) instead of the dialect's regex: times are on
    every row of every list."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name == "sqlite":
            parse = datetime.fromisoformat
            utc = UTC
            return lambda value: None if value is None else parse(value).replace(tzinfo=utc)
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class LogTime(UTCDateTime):
    """A log line's time. On SQLite it is stored as the text the wire shows,
    `2026-11-26T06:11:22.497Z` (to the millisecond, as the platform writes times; fixed width,
    so the text's order is the time's), so that a read of 10,000 lines puts it in each line's
    JSON as it is: making it from the DATETIME text there took about 30% of that query
    (`store.deployments.logs_body`). Lines of one millisecond keep their arrival order (by id).
    On PostgreSQL, a `UTCDateTime`."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            text = civis_time
            return lambda value: None if value is None else text(value)
        return super().bind_processor(dialect)


BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GitRepo(Base):
    __tablename__ = "git_repos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_url: Mapped[str] = mapped_column(String(2048), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Credential(Base):
    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(1024))
    description: Mapped[str | None] = mapped_column(Text)
    remote_host_id: Mapped[int | None] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    """The password/secret, encrypted with a key derived from the service's secret key."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Studio(Base):
    __tablename__ = "studios"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    docker_image_name: Mapped[str | None] = mapped_column(String(255))
    docker_image_tag: Mapped[str] = mapped_column(String(128), default="latest")
    instance_type: Mapped[str | None] = mapped_column(String(255))
    memory: Mapped[int | None] = mapped_column(Integer)
    cpu: Mapped[int | None] = mapped_column(Integer)
    disk_space: Mapped[float | None] = mapped_column(Float)
    git_credential_id: Mapped[int | None] = mapped_column(ForeignKey("credentials.id", ondelete="SET NULL"))
    git_repo_id: Mapped[int | None] = mapped_column(ForeignKey("git_repos.id"))
    git_repo_url: Mapped[str | None] = mapped_column(String(2048))
    git_ref: Mapped[str | None] = mapped_column(String(255))
    partition_label: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class StudioShare(Base):
    """One user's permission on one studio; the author holds a `manage` row."""

    __tablename__ = "studio_shares"

    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    level: Mapped[str] = mapped_column(String(8))


class Deployment(Base):
    """One run of a studio: a snapshot of what it runs, its state, and the runtime's handle."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    studio_id: Mapped[int] = mapped_column(ForeignKey("studios.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(255))
    docker_image_name: Mapped[str | None] = mapped_column(String(255))
    docker_image_tag: Mapped[str] = mapped_column(String(128))
    instance_type: Mapped[str | None] = mapped_column(String(255))
    memory: Mapped[int | None] = mapped_column(Integer)
    cpu: Mapped[int | None] = mapped_column(Integer)
    disk_space: Mapped[float | None] = mapped_column(Float)
    params: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    git_repo_url: Mapped[str | None] = mapped_column(String(2048))
    git_ref: Mapped[str | None] = mapped_column(String(255))
    git_credential_id: Mapped[int | None] = mapped_column(ForeignKey("credentials.id", ondelete="SET NULL"))
    partition_label: Mapped[str | None] = mapped_column(String(255))
    runtime: Mapped[str | None] = mapped_column(String(32))
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    log_cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    log_lines: Mapped[int] = mapped_column(Integer, default=0)
    logs_dropped: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    state_message: Mapped[str] = mapped_column(Text, default="queued")
    max_memory_usage: Mapped[float | None] = mapped_column(Float)
    max_cpu_usage: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a terminated deployment's workload was stopped and released (and its logs drained);
    None while that is still to do (the engine, or its reconcile, finishes it)."""
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    """The engine holder launching this deployment: only one engine ever launches it."""
    log_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Counts stored log batches: a batch is stored only if no other writer moved it since the
    batch was read (no line stored twice when two engines briefly overlap)."""

    __table_args__ = (
        Index("ix_deployments_studio_id_id", "studio_id", "id"),
        Index("ix_deployments_state", "state"),
        Index("ix_deployments_unreleased", "id", sqlite_where=text("released_at IS NULL"), postgresql_where=text("released_at IS NULL")),
    )


class Lease(Base):
    """A job exactly one server may do at a time (the lifecycle engine): its holder and until
    when (unix seconds, by the database's clock on PostgreSQL). A holder renews it well
    before it expires; another server takes it over once it has."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)
    acquired_at: Mapped[float] = mapped_column(Float)


class Generation(Base):
    """A counter that every write to a set of tables bumps in its own transaction, by triggers
    (migration 0005): "studios" (studios and their shares: `studios.store.studio_pages`) and,
    on SQLite, "views" (what a studio's view shows: `studios.store.views_generation`), so a
    reader can tell in one primary-key lookup whether what it derived earlier still holds."""

    __tablename__ = "generations"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class DeploymentLog(Base):
    __tablename__ = "deployment_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(LogTime)
    stream: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_deployment_logs_deployment_time", "deployment_id", "created_at", "id"),)


class SpentDisplayToken(Base):
    """A displayUrl token that was exchanged for a viewer cookie, by any server's proxy, kept
    until it would have expired anyway (unix seconds), so a link opens a studio once however
    many servers share the database (`studios.store.display_tokens`). `key` is the SHA-256 of
    what was signed and when, never the token itself."""

    __tablename__ = "spent_display_tokens"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
