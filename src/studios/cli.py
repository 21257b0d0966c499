"""The `studios` command: serve, manage users and API keys, upgrade the database."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from studios.client import commands as client_commands
from studios.settings import Settings

app = typer.Typer(help="Studios: a self-hostable server for the Civis Platform /studios API.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
credentials_app = typer.Typer(help="Manage stored credentials.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(credentials_app, name="credentials")
app.add_typer(client_commands.app)  # the user commands: ls, ps, deploy, logs, stop
console = Console()
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
"""Messages to people. Lines meant to be copied go through `copyable` instead."""


def copyable(line: str) -> None:
    """A line to copy and paste (a shell command): plain text on stderr, never wrapped, styled
    or split, whatever the terminal width and also when stderr is a file or a pipe."""
    print(line, file=sys.stderr, flush=True)


def show_key(key: str, endpoint: str) -> None:
    """The new key alone on stdout (for scripts), then the line that puts it to use."""
    print(key, flush=True)
    err.print("to use it with the civis client and CLI, paste:")
    copyable(f"export CIVIS_API_ENDPOINT={endpoint} CIVIS_API_KEY={key}")


def _context():
    from studios.context import build_context

    return build_context(Settings())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: STUDIOS_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: STUDIOS_PORT or 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes on this machine (default: STUDIOS_WORKERS or 1; more than one needs PostgreSQL).")] = None,
) -> None:
    """Run the API server (and the deployment engine and proxy inside it)."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from studios.app import create_app
    from studios.db.engine import upgrade

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}  # field name -> value
    settings = Settings(**overrides)
    url = settings.effective_database_url
    err.print(f"studios: database {url.split('@')[-1]}")
    err.print(f"studios: listening on http://{settings.host}:{settings.port} (public URL {settings.effective_public_url})")
    options: dict[str, Any] = dict(host=settings.host, port=settings.port, access_log=settings.access_log, log_level="info", loop="uvloop", http="httptools", timeout_graceful_shutdown=5,
                                   proxy_headers=False)  # X-Forwarded-For is trusted only from STUDIOS_TRUSTED_PROXIES (studios.api.ratelimit)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    if not url.startswith("postgresql"):
        err.print("studios: --workers needs PostgreSQL (STUDIOS_DATABASE_URL): the workers share events through it")
        raise typer.Exit(2)
    upgrade(url)
    # The workers are new processes: they read the same settings from the environment.
    os.environ.update({f"STUDIOS_{k.upper()}": str(v) for k, v in overrides.items()})
    os.environ.setdefault("STUDIOS_SECRET_KEY", ",".join(settings.secret_keys))
    err.print(f"studios: {settings.workers} workers; one of them runs the lifecycle engine at a time")
    # prometheus-client's multiprocess mode: each worker writes its metrics to files here, and
    # whichever worker answers GET /metrics adds up every worker's (docs/metrics.md).
    metrics_dir = tempfile.mkdtemp(prefix="studios-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("studios.app:serve_app", factory=True, workers=settings.workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


@users_app.command("create")
def users_create(
    username: str,
    name: Annotated[str | None, typer.Option(help="Display name (default: the username).")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Admins see and manage every studio.")] = False,
) -> None:
    """Create a user and print a new API key for it (shown only this once)."""
    from studios.services.keys import mint
    from studios.store import users as user_store

    ctx = _context()
    with ctx.db.writing() as session:
        if user_store.by_username(session, username):
            err.print(f"a user named {username!r} already exists")
            raise typer.Exit(1)
        user = user_store.create(session, username, name or username, email, admin)
        key = mint(session, ctx.hasher, user.id, "created with the user")
        session.commit()
        err.print(f"created user {user.id} ({username}{', admin' if admin else ''}); its API key (shown only now):")
    show_key(key, ctx.settings.effective_public_url)


@app.command()
def bootstrap() -> None:
    """First run: create an admin user named `admin` and print its API key, if no user exists."""
    from studios.services.keys import mint
    from studios.store import users as user_store

    ctx = _context()
    with ctx.db.writing() as session:
        if user_store.list_all(session):
            err.print("studios: users exist already; `studios keys create USER` prints a new key")
            return
        user = user_store.create(session, "admin", "Admin", None, True)
        key = mint(session, ctx.hasher, user.id, "bootstrap")
        session.commit()
    err.print("studios: created the admin user; its API key (shown only now):")
    show_key(key, ctx.settings.effective_public_url)


@users_app.command("list")
def users_list() -> None:
    """List users."""
    from studios.store import users as user_store

    ctx = _context()
    table = Table("id", "username", "name", "admin")
    with ctx.db.writing() as session:
        for user in user_store.list_all(session):
            table.add_row(str(user.id), user.username, user.name, "yes" if user.is_admin else "")
    console.print(table)


@keys_app.command("create")
def keys_create(username: str, name: Annotated[str, typer.Option(help="A label for the key.")] = "cli") -> None:
    """Print a new API key for a user."""
    from studios.services.keys import mint
    from studios.store import users as user_store

    ctx = _context()
    with ctx.db.writing() as session:
        user = user_store.by_username(session, username)
        if user is None:
            err.print(f"no user named {username!r}")
            raise typer.Exit(1)
        key = mint(session, ctx.hasher, user.id, name)
        session.commit()
    err.print(f"a new API key for {username} (shown only now):")
    show_key(key, ctx.settings.effective_public_url)


@keys_app.command("list")
def keys_list(username: Annotated[str | None, typer.Argument(help="Only this user's keys.")] = None) -> None:
    """List keys (their ids and prefixes; keys themselves are never stored)."""
    from studios.store import users as user_store

    ctx = _context()
    table = Table("id", "user", "name", "prefix", "created", "revoked")
    with ctx.db.writing() as session:
        user_id = None
        if username:
            user = user_store.by_username(session, username)
            if user is None:
                err.print(f"no user named {username!r}")
                raise typer.Exit(1)
            user_id = user.id
        names = {u.id: u.username for u in user_store.list_all(session)}
        for key in user_store.keys_of(session, user_id):
            table.add_row(str(key.id), names.get(key.user_id, "?"), key.name, key.prefix + "…", key.created_at.isoformat(timespec="seconds"), key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Revoke a key by id; a running server refuses it within seconds."""
    from studios.services.keys import KeyHasher, revoke

    ctx = _context()
    with ctx.db.writing() as session:
        if not revoke(session, ctx.hasher, key_id):
            err.print(f"no key with id {key_id}")
            raise typer.Exit(1)
    err.print(f"revoked key {key_id}; a running server refuses it within {KeyHasher.VERIFIED_SECONDS:g} s")


@credentials_app.command("reseal")
def credentials_reseal() -> None:
    """Re-encrypt every stored credential with the newest secret key (the first of
    STUDIOS_SECRET_KEY): run it after a rotation, before dropping the old key."""
    from studios.services.credentials import reseal_all

    ctx = _context()
    with ctx.db.writing() as session:
        done, failed = reseal_all(session, ctx.box)
    err.print(f"resealed {done} credential(s) with the newest secret key")
    if failed:
        err.print(f"{failed} credential(s) could not be decrypted with the configured keys and were left as they are")
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (the server also does this when it starts)."""
    from studios.db.engine import upgrade

    settings = Settings()
    upgrade(settings.effective_database_url)
    err.print("database is at the newest schema")


if __name__ == "__main__":
    app()
