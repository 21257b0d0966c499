"""Every setting of the service, read once from `STUDIOS_*` environment variables.

This module owns configuration and nothing else: no other module reads the environment.
The README's configuration table lists each field here with its default.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "studios"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOS_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where the SQLite database, the secret key and deployment work directories live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: a SQLite file in the data directory. PostgreSQL: postgresql+psycopg://user:pass@host/db.")
    secret_key: str | None = Field(None, description="Keys API-key hashes, display-URL tokens and credential encryption. Default: generated once into <data_dir>/secret_key. Several keys, comma-separated, rotate: the first signs, all verify.")
    public_url: str | None = Field(None, description="The base URL users reach the service at (displayUrl and CIVIS_API_ENDPOINT given to apps). Default: http://localhost:<port>.")
    host: str = Field("127.0.0.1", description="Address `studios serve` listens on.")
    port: int = Field(8000, description="Port `studios serve` listens on.")
    proxy_port: int | None = Field(None, description="Port of the display-URL proxy inside `studios serve` (default: port + 1).")
    proxy_public_url: str | None = Field(None, description="Where browsers reach the proxy; host mode serves deployments at d-<id>.<its host>. Default: http://localhost:<proxy port>.")
    proxy_mode: Literal["host", "path"] = Field("host", description="host: one host name per deployment (wildcard DNS; *.localhost works locally); path: <proxy URL>/_d/<id>/.")
    display_token_seconds: int = Field(3600, description="How long a displayUrl can be exchanged for a viewer cookie (once: each token opens a studio one time).")
    proxy_path_prefix: Literal["forward", "strip"] = Field("forward", description="Path mode: forward: apps see /_d/<id>/... and serve under STUDIOS_BASE_PATH; strip: apps see /... (and X-Forwarded-Prefix). A studio's STUDIOS_PATH_PREFIX param overrides it.")
    proxy_auth_attempts_per_minute: int = Field(30, ge=0, description="displayUrl token exchanges one client address may make per minute; past it the proxy answers 429 with Retry-After (0: no limit).")
    runtime: Literal["auto", "process", "docker"] = Field("auto", description="How deployments run: docker when a daemon answers (auto), else host processes.")
    docker_url: str | None = Field(None, description="Docker Engine API URL (unix:///var/run/docker.sock; Podman: unix:///run/podman/podman.sock). Default: the docker SDK's environment.")
    partitions_file: Path | None = Field(None, description="TOML file declaring partitions and instance types; default: the built-in one (docs/partitions.md).")
    image_commands: dict[str, str] = Field(default_factory=dict, description='JSON map of image name to a host command for the process runtime, e.g. {"jupyter/base-notebook": "jupyter lab --port $PORT"}.')
    start_timeout_seconds: float = Field(120.0, description="A deployment that does not answer HTTP within this time ends as terminated.")
    stop_grace_seconds: float = Field(5.0, description="Time between SIGTERM and SIGKILL when stopping.")
    log_line_cap: int = Field(1_000_000, description="Most log lines kept per deployment; past it lines are dropped and a system line says so.")
    idle_sleep_seconds: float = Field(3600.0, description="A running deployment with no proxied traffic for this long goes to sleep (0 disables).")
    reconcile_interval_seconds: float = Field(30.0, description="How often live deployments are checked against their runtime.")
    access_log: bool = Field(False, description="uvicorn access log (costs ~16% of throughput).")

    @field_validator("image_commands", mode="before")
    @classmethod
    def _parse_json_map(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @cached_property
    def secret_keys(self) -> list[str]:
        """Newest first. Generated and kept in the data directory when not configured."""
        if self.secret_key:
            return [k.strip() for k in self.secret_key.split(",") if k.strip()]
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return [path.read_text().strip()]

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'studios.db'}"

    @property
    def effective_proxy_port(self) -> int:
        return self.proxy_port if self.proxy_port is not None else self.port + 1

    @property
    def effective_proxy_url(self) -> str:
        return (self.proxy_public_url or f"http://localhost:{self.effective_proxy_port}").rstrip("/")

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")
