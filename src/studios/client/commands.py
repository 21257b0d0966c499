"""The user commands of `studios`: `ls`, `ps`, `deploy`, `logs`, `stop`. They talk only to the
HTTP API (`studios.client.api`, with `CIVIS_API_ENDPOINT` and `CIVIS_API_KEY`), so they work
against any server of the Civis /studios API. People get Rich tables and progress on the
terminal; scripts get `--json` (one JSON document, or JSON lines for logs). Progress and
errors go to stderr, results to stdout. Registered on the main command by `studios.cli`."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from studios.client.api import ApiClient, ApiError
from studios.client.follow import Progress, StateChanged, deployment_events, log_lines

PANEL = "Use studios (any server: CIVIS_API_ENDPOINT, CIVIS_API_KEY)"
ACTIVE = ("pending", "running", "sleeping")
STATE_STYLE = {"running": "green", "pending": "yellow", "sleeping": "blue", "terminated": "dim"}
POLL_SECONDS = 1.0
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

app = typer.Typer()
# Into a pipe, tables keep one row per line (rich would wrap them at 80 columns).
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
StudioArg = Annotated[int, typer.Argument(help="The studio's ID.", min=1, max=2**31 - 1)]
DeploymentArg = Annotated[int | None, typer.Argument(help="The deployment's ID (default: the studio's newest deployment).", min=1, max=2**31 - 1, show_default=False)]

# ----------------------------------------------------------------------------- helpers


def clean(text: Any) -> str:
    """Printable text: control characters (terminal escapes an app or a name could carry) shown as '?'."""
    return _CONTROL.sub("?", str(text)) if text is not None else ""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(Text(f"studios: {clean(message)}", style="red"))
    raise typer.Exit(code)


def client() -> ApiClient:
    try:
        return ApiClient.from_env()
    except ApiError as exc:
        fail(exc.description)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def ago(civis_time: str | None) -> str:
    if not civis_time:
        return ""
    try:
        then = datetime.fromisoformat(civis_time.replace("Z", "+00:00"))
    except ValueError:
        return clean(civis_time)
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def state_text(state: str | None) -> Text:
    return Text(state or "-", style=STATE_STYLE.get(state or "", ""))


def usage(peak: float | None, allocated: int | None, unit: str) -> str:
    """`191/1000m`: the peak so far over what the deployment may use."""
    shown = "-" if peak is None else f"{peak:.0f}"
    return f"{shown}/{allocated}{unit}" if allocated is not None else shown


def resolve_deployment(api: ApiClient, studio_id: int, deployment_id: int | None) -> dict[str, Any]:
    if deployment_id is not None:
        return api.get(f"/studios/{studio_id}/deployments/{deployment_id}")
    latest = api.get(f"/studios/{studio_id}").get("mostRecentDeployment")
    if not latest:
        fail(f"studio {studio_id} has no deployments; `studios deploy {studio_id}` starts one")
    return latest


def every_studio(api: ApiClient, archived: str) -> Iterator[dict[str, Any]]:
    return api.pages("/studios", archived=archived)


# ----------------------------------------------------------------------------- ls, ps


@app.command("ls", rich_help_panel=PANEL)
def ls(
    archived: Annotated[str, typer.Option(help="Which studios: false (the default), true (archived only) or all.")] = "false",
    as_json: JsonOpt = False,
) -> None:
    """List the studios you can see, with the state of each one's newest deployment."""
    if archived not in ("false", "true", "all"):
        fail("--archived must be one of false, true, all", 2)
    with client() as api:
        try:
            studios = list(every_studio(api, archived))
        except ApiError as exc:
            fail(exc.description)
    if as_json:
        return print_json(studios)
    if not studios:
        err.print("No studios yet." if archived != "true" else "No archived studios.")
        return
    table = Table("ID", "NAME", "IMAGE", "STATE", "DEPLOYMENT", "UPDATED", box=None, header_style="bold", pad_edge=False)
    for s in studios:
        dep = s.get("mostRecentDeployment") or {}
        image = f"{s.get('dockerImageName')}:{s.get('dockerImageTag')}" if s.get("dockerImageName") else (s.get("gitRepoUrl") or "")
        name = Text(clean(s.get("name"))) + (Text(" (archived)", style="dim") if s.get("archived") else Text())
        table.add_row(str(s["id"]), name, Text(clean(image)), state_text(dep.get("state")), str(dep.get("deploymentId") or ""), ago(s.get("updatedAt")))
    out.print(table)


@app.command("ps", rich_help_panel=PANEL)
def ps(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also studios whose newest deployment has terminated.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List running deployments (pending, running and sleeping): one per studio at most."""
    with client() as api:
        try:
            rows = [(s, s["mostRecentDeployment"]) for s in every_studio(api, "all") if s.get("mostRecentDeployment")]
        except ApiError as exc:
            fail(exc.description)
    rows = [(s, d) for s, d in rows if all_ or d.get("state") in ACTIVE]
    rows.sort(key=lambda pair: pair[1]["deploymentId"], reverse=True)
    if as_json:
        return print_json([d for _, d in rows])
    if not rows:
        err.print("No deployment is running." + ("" if all_ else " (`studios ps --all` includes ended ones)"))
        return
    table = Table("STUDIO", "NAME", "DEPLOYMENT", "STATE", "MESSAGE", "CPU", "MEMORY", "CREATED", box=None, header_style="bold", pad_edge=False)
    for s, d in rows:
        table.add_row(
            str(s["id"]), Text(clean(s.get("name"))), str(d["deploymentId"]), state_text(d.get("state")), Text(clean(d.get("stateMessage"))),
            usage(d.get("maxCpuUsage"), d.get("cpu"), "m"), usage(d.get("maxMemoryUsage"), d.get("memory"), " MB"), ago(d.get("createdAt")),
        )
    out.print(table)


# ----------------------------------------------------------------------------- deploy


@app.command("deploy", rich_help_panel=PANEL)
def deploy(
    studio_id: StudioArg,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds (the deployment keeps going).", min=1)] = 900.0,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a studio and follow its start-up steps to its link (displayUrl); exits non-zero with the deployment's message if it fails."""
    with client() as api:
        try:
            dep = api.post(f"/studios/{studio_id}/deployments")
        except ApiError as exc:
            fail(exc.description)
        did = dep["deploymentId"]
        began = time.monotonic()
        if not as_json:
            err.print(Text(f"Deploying studio {studio_id} ({clean(dep.get('name'))}) as deployment {did}", style="bold"))
        deadline = time.monotonic() + timeout
        final = dep
        status = err.status(clean(dep.get("stateMessage") or "queued")) if not as_json and err.is_terminal else None
        shown: list[str] = []

        def step(message: str) -> None:
            if not as_json and message and (not shown or shown[-1] != message):  # each step once
                shown.append(message)
                err.print(Text("  · ", style="dim") + Text(clean(message)))

        def polling() -> None:
            if not as_json:
                err.print(Text("  (this server has no event stream: checking every second)", style="dim"))

        seen_first = False
        last_message: str | None = None  # of the last StateChanged: a frame that repeats it is no new step
        try:
            if status:
                status.start()
            for event in deployment_events(api, studio_id, did, deadline=deadline, interval=POLL_SECONDS, on_polling=polling):
                if isinstance(event, Progress):
                    step(event.message)
                elif isinstance(event, StateChanged):
                    final = event.deployment
                    message = final.get("stateMessage") or ""
                    if seen_first and message != last_message:  # the first is where it stood: its steps come as Progress
                        step(message)
                    seen_first, last_message = True, message
                    if status:
                        status.update(clean(final.get("stateMessage") or final.get("state")))
                    if final.get("state") in ("running", "terminated"):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError
        except TimeoutError:
            if status:
                status.stop()
            fail(f"deployment {did} is still {final.get('state')} ({clean(final.get('stateMessage'))}) after {timeout:g} s")
        except ApiError as exc:
            fail(exc.description)
        except KeyboardInterrupt:
            fail(f"stopped waiting; deployment {did} goes on (`studios stop {studio_id} {did}` ends it)", 130)
        finally:
            if status:
                status.stop()
    if as_json:
        print_json(final)
        raise typer.Exit(0 if final.get("state") == "running" else 1)
    if final.get("state") != "running":
        err.print(Text(f"✗ deployment {did} failed: {clean(final.get('stateMessage') or final.get('state'))}", style="red"))
        raise typer.Exit(1)
    err.print(Text(f"✓ running after {time.monotonic() - began:.1f} s; open it at:", style="green"))
    sys.stdout.write(f"{final.get('displayUrl')}\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- logs


def _write_line(line: dict[str, Any], timestamps: bool, tty_out: bool, tty_err: bool) -> None:
    """An app's stdout to stdout, its stderr to stderr, service (system) lines to stderr,
    marked. Exact bytes into pipes; control characters shown as '?' on a terminal."""
    source, stream = line.get("source"), line.get("stream")
    to_err = source == "system" or stream == "stderr"
    tty = tty_err if to_err else tty_out
    message = clean(line.get("message")) if tty else str(line.get("message", ""))
    prefix = f"{line.get('createdAt')} " if timestamps else ""
    if source == "system":
        prefix += "[studios] "
    target = sys.stderr if to_err else sys.stdout
    target.write(f"{prefix}{message}\n")
    target.flush()


@app.command("logs", rich_help_panel=PANEL)
def logs(
    studio_id: StudioArg,
    deployment_id: DeploymentArg = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the deployment ends (Ctrl-C to stop).")] = False,
    tail: Annotated[int, typer.Option(help="Start with at most this many of the newest lines.", min=1, max=100_000)] = 10_000,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Prefix each line with its time.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a deployment's log: the app's stdout on stdout, its stderr and the service's lines on stderr (--json: JSON lines on stdout)."""
    with client() as api:
        try:
            dep = resolve_deployment(api, studio_id, deployment_id)
            tty_out, tty_err = sys.stdout.isatty(), sys.stderr.isatty()

            def polling() -> None:
                if tty_err:
                    err.print(Text("(this server has no event stream: checking every second)", style="dim"))

            def reconnecting(attempt: int) -> None:
                if tty_err and attempt == 1:
                    err.print(Text("(connection lost: reconnecting, from the last line shown)", style="dim"))

            if follow:
                lines: Iterator[dict[str, Any]] = log_lines(api, studio_id, dep["deploymentId"], tail=tail, interval=POLL_SECONDS, on_polling=polling, on_reconnect=reconnecting)
            else:
                lines = iter(api.get(f"/studios/{studio_id}/deployments/{dep['deploymentId']}/logs", limit=tail))
            for line in lines:
                if as_json:
                    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                else:
                    _write_line(line, timestamps, tty_out, tty_err)
        except ApiError as exc:
            fail(exc.description)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `studios logs 3 | head`
            sys.stderr.close()
            raise typer.Exit(0) from None


# ----------------------------------------------------------------------------- stop


@app.command("stop", rich_help_panel=PANEL)
def stop(studio_id: StudioArg, deployment_id: DeploymentArg = None, as_json: JsonOpt = False) -> None:
    """Stop a deployment (default: the studio's newest). Its record and logs stay."""
    with client() as api:
        try:
            dep = resolve_deployment(api, studio_id, deployment_id)
            did = dep["deploymentId"]
            if dep.get("state") == "terminated":
                if not as_json:
                    err.print(f"Deployment {did} has already ended ({clean(dep.get('stateMessage'))}).")
            else:
                api.delete(f"/studios/{studio_id}/deployments/{did}")
                dep = api.get(f"/studios/{studio_id}/deployments/{did}")
                if not as_json:
                    err.print(Text(f"Stopped deployment {did}: ", style="bold") + Text(clean(dep.get("stateMessage") or dep.get("state"))))
        except ApiError as exc:
            fail(exc.description)
    if as_json:
        print_json(dep)
