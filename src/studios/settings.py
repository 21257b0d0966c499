"""Every setting of the service, read once from `STUDIOS_*` environment variables.

This module owns configuration and nothing else: no other module reads the environment.
The README's configuration table lists each field here with its default.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
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
    display_token_seconds: int = Field(3600, description="How long a displayUrl can be exchanged for a viewer cookie.")
    runtime: str = Field("auto", description="The default runtime (partitions with runtime = \"default\" use it): auto (docker when an engine answers, else process), or an installed runtime's name: process, docker, swarm, fake. Each runtime has its own STUDIOS_<RUNTIME>_* settings (docs/runtimes/).")
    partitions_file: Path | None = Field(None, description="TOML file declaring partitions and instance types; default: the built-in one (docs/partitions.md).")
    start_timeout_seconds: float = Field(120.0, description="A deployment that does not answer HTTP within this time ends as terminated.")
    stop_grace_seconds: float = Field(5.0, description="Time between SIGTERM and SIGKILL when stopping.")
    log_line_cap: int = Field(1_000_000, description="Most log lines kept per deployment; past it lines are dropped and a system line says so.")
    idle_sleep_seconds: float = Field(3600.0, description="A running deployment with no proxied traffic for this long goes to sleep (0 disables).")
    reconcile_interval_seconds: float = Field(30.0, description="How often live deployments are checked against their runtime.")
    instance: str | None = Field(None, description="A short id of this installation, put on every workload it runs; every server of one database must agree. Default: a hash of the database URL (without its password).")
    workers: int = Field(1, ge=1, le=64, description="Server processes `studios serve` runs on this machine (PostgreSQL only); one of them runs the lifecycle engine at a time.")
    db_threads: int = Field(8, ge=1, le=128, description="Threads per server process that run database calls (the event loop never waits on the database).")
    db_lock_timeout_seconds: float = Field(10.0, gt=0, description="Longest wait for a database lock; a request that waits longer gets a 503 with Retry-After.")
    engine_lease_seconds: float = Field(6.0, gt=0, description="Life of the lifecycle engine's lease: another server takes the engine over within this long after its holder dies.")
    access_log: bool = Field(False, description="uvicorn access log (costs ~16% of throughput).")
    loop_lag_log_seconds: float = Field(0.0, ge=0, description="Log the event loop's lag (p50, p99) over each window of this many seconds (0: never).")

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
