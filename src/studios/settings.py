"""Every setting of the service, read once from `STUDIOS_*` environment variables.

This module owns configuration and nothing else: no other module reads the environment. The
service (`studios serve`), the CLI and the standalone proxy (`python -m studios.proxy`) all read
this one model; each runtime adds its own `STUDIOS_<RUNTIME>_*` model. The README's
configuration table is generated from them (`markdown_table`, written by
`scripts/settings-table`; a test fails when the two differ).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "studios"


def _shown(text: str) -> dict[str, Any]:
    """How the README shows a default that is computed, not a constant."""
    return {"shown_default": text}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIOS_", extra="ignore", hide_input_in_errors=True)  # no secret in an error message

    data_dir: Path = Field(default_factory=_default_data_dir, json_schema_extra=_shown("`~/.local/share/studios` (under `$XDG_DATA_HOME` when set)"), description="SQLite database, generated secret key, runtimes' working files.")
    database_url: str | None = Field(None, json_schema_extra=_shown("SQLite file in the data dir"), description="SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db`. Migrated on start.")
    secret_key: str | None = Field(None, json_schema_extra=_shown("generated into `<data dir>/secret_key`"), description="Keys API-key hashes, display-URL signatures and credential encryption. Comma-separated to rotate, newest first: the first hashes, signs and encrypts; every key verifies and decrypts (`docs/security.md`).")
    host: str = Field("127.0.0.1", description="Where `studios serve` listens (also `--host`); the display-URL proxy listens on the same address.")
    port: int = Field(8000, description="The API's port (also `--port`).")
    public_url: str | None = Field(None, json_schema_extra=_shown("`http://localhost:<port>`"), description="The API's URL as users and apps reach it (apps get it as `CIVIS_API_ENDPOINT`).")
    proxy_port: int | None = Field(None, json_schema_extra=_shown("port + 1"), description="The display-URL proxy's port (inside `studios serve`, and the default of `python -m studios.proxy --port`).")
    proxy_public_url: str | None = Field(None, json_schema_extra=_shown("`http://localhost:<proxy port>`"), description="Where browsers reach the proxy; host mode serves deployment N at `d-N.<its host>`.")
    proxy_mode: Literal["host", "path"] = Field("host", description="`host` (wildcard DNS; `*.localhost` works in browsers) or `path` (`/_d/N/`).")
    proxy_path_prefix: Literal["forward", "strip"] = Field("forward", description="Path mode: `forward`: apps see `/_d/N/...` and serve under `STUDIOS_BASE_PATH`; `strip`: apps see `/...` (and `X-Forwarded-Prefix`). A studio's `STUDIOS_PATH_PREFIX` param overrides it.")
    proxy_fallback: str | None = Field(None, json_schema_extra=_shown("none"), description="`host:port` the proxy forwards every request that is not for a deployment to, unchecked. Set it to the API's own address (e.g. `127.0.0.1:8000`) to expose only the proxy's port (`docs/proxy.md`).")
    proxy_auth_attempts_per_minute: int = Field(30, ge=0, description="`displayUrl` token exchanges one client address may make per minute; past it the proxy answers 429 with Retry-After (0: no limit).")
    display_token_seconds: int = Field(3600, description="How long a `displayUrl` can be exchanged for a viewer cookie (once: each token opens a studio one time).")
    display_cookie_seconds: int = Field(86400, description="How long a viewer cookie stays valid (access is still checked on every request).")
    runtime: str = Field("auto", description="The default runtime (partitions with `runtime = \"default\"` use it): `auto` (Docker when an engine answers, else host processes), or an installed runtime's name: `process`, `docker`, `swarm`, `fake`. Each runtime has its own `STUDIOS_<RUNTIME>_*` settings (below, and `docs/runtimes/`). `studios serve` prints which and why.")
    partitions_file: Path | None = Field(None, json_schema_extra=_shown("built-in `studios/partitions.toml`"), description="Partitions, their runtime and instance types (`docs/partitions.md`).")
    start_timeout_seconds: float = Field(120.0, description="A deployment not answering HTTP by then ends as terminated.")
    stop_grace_seconds: float = Field(5.0, description="SIGTERM → SIGKILL grace when stopping.")
    log_line_cap: int = Field(1_000_000, description="Log lines kept per deployment; past it lines are dropped and a system line says so.")
    idle_sleep_seconds: float = Field(3600.0, description="Running deployments without proxied traffic for this long go to `sleeping` (0: never).")
    reconcile_interval_seconds: float = Field(30.0, description="How often live deployments are checked against their runtime.")
    instance: str | None = Field(None, json_schema_extra=_shown("a hash of the database URL"), description="A short id of this installation, put on every workload it runs; every server of one database must agree.")
    workers: int = Field(1, ge=1, le=64, description="Server processes `studios serve` runs on this machine (PostgreSQL only); one of them runs the lifecycle engine at a time.")
    db_threads: int = Field(8, ge=1, le=128, description="Threads per server process that run database calls (the event loop never waits on the database).")
    db_read_threads: int | None = Field(None, ge=1, le=64, json_schema_extra=_shown("2 on SQLite, 4 on PostgreSQL"), description="Threads per server process, apart from those, that run the API's hot reads (a studio, the studio list, a deployment). On SQLite few are fastest: its reads are CPU work under Python's GIL.")
    sqlite_memory_mb: int = Field(8, ge=0, le=65536, description="On SQLite, a bound on the database library's memory in one server process (its page caches give pages back to stay under it), so the service's memory levels off as the database grows instead of each connection's 2 MB cache filling in turn. 0: no bound.")
    db_lock_timeout_seconds: float = Field(10.0, gt=0, description="Longest wait for a database lock; a request that waits longer gets a 503 with Retry-After.")
    engine_lease_seconds: float = Field(6.0, gt=0, description="Life of the lifecycle engine's lease: another server takes the engine over within this long after its holder dies.")
    stream_heartbeat_seconds: float = Field(15.0, gt=0, description="Live streams (server-sent events) send a heartbeat this often, and check the caller's access again.")
    ui_session_seconds: float = Field(43200.0, gt=0, description="How long a web UI sign-in lasts before the page asks for the API key again.")
    rate_limit_per_key: str = Field("10000/minute", description="Requests one API key may make per window (`N/second`, `N/minute`, `N/hour`, `N/day`, `N/5 minutes`). Past it: 429 with Retry-After. Empty or 0: no limit. Counted per server process, in memory.")
    auth_failure_limit: str = Field("20/minute", description="Failed authentications (401 answers to a request that presented a key or a web UI session cookie) one client address may cause per window; past it every request from that address is a 429 with Retry-After until the window ends. Empty or 0: no limit. Counted per server process.")
    trusted_proxies: str = Field("", json_schema_extra=_shown("none"), description="Comma-separated addresses or networks (`127.0.0.1`, `10.0.0.0/8`; `*` for any) of reverse proxies whose X-Forwarded-For names the client address the limits count. Empty: the connection's peer is the client.")
    allow_local_git_repos: bool = Field(False, description="Let studios use local git repositories (`file://` URLs and absolute paths on this machine). Off: only `https://` and `http://` repositories; on, any user who can create a studio can make the service read any repository on its disk.")
    metrics_token: SecretStr | None = Field(None, json_schema_extra=_shown("none"), description="A bearer token (32+ characters) a Prometheus scraper presents to read `GET /metrics`; administrators' keys may always (`docs/metrics.md`).")
    loop_lag_log_seconds: float = Field(0.0, ge=0, description="Log the event loop's lag (p50, p99) over each window of this many seconds (0: never).")
    access_log: bool = Field(False, description="uvicorn's access log (costs ~16% of throughput).")

    @field_validator("rate_limit_per_key", "auth_failure_limit")
    @classmethod
    def _limit_expression(cls, value: str) -> str:
        from limits import parse

        if value.strip() and value.strip() != "0":
            parse(value)  # ValueError: "couldn't parse rate limit string ..."
        return value.strip()

    @field_validator("proxy_fallback")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value:
            port = value.rpartition(":")[2]
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"must be host:port (e.g. 127.0.0.1:8000), not {value!r}")
        return value or None

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("STUDIOS_METRICS_TOKEN must be at least 32 characters (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
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

    @property
    def proxy_fallback_address(self) -> tuple[str, int] | None:
        """`proxy_fallback` as (host, port); a bare `:port` means 127.0.0.1."""
        if not self.proxy_fallback:
            return None
        host, _, port = self.proxy_fallback.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


def _default_text(field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "shown_default" in extra:
        return str(extra["shown_default"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"`{text}`"


def markdown_table(models: Iterable[type[BaseSettings]]) -> str:
    """A configuration table: one row per field of each settings model, in order (the README's
    is `studios.runtimes.registry.config_table()`: these settings, then each runtime's)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for model in models:
        prefix = model.model_config.get("env_prefix", "")
        for name, field in model.model_fields.items():
            rows.append(f"| `{(prefix + name).upper()}` | {_default_text(field)} | {field.description or ''} |")
    return "\n".join(rows) + "\n"
