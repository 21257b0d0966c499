"""What the host-process runtime runs for a deployment: the start-command convention.

Owns one decision and nothing else: given a `LaunchSpec` and the operator's image mapping,
which argv runs in which directory. The order (documented in docs/runtimes/process.md):

1. `spec.image` (as `image:tag`, then `image`) in `image_commands`: that shell command, run with
   `/bin/sh -c` in the app's directory (the checkout, if the studio has a repository);
2. a repository checkout: its root `start` file (run directly when executable, with `/bin/sh`
   otherwise), else the first `web:` line of its `Procfile`, run with `/bin/sh -c`;
3. otherwise a `LaunchError` that says what was missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from studios.runtimes.base import LaunchError, LaunchSpec, Reporter

NO_START_COMMAND = (
    "no start command found in the repository (expected an executable 'start' or a Procfile 'web:' line)"
)


def procfile_web(procfile: Path) -> str | None:
    """The command of the first `web:` line of a Procfile, or None."""
    try:
        text = procfile.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web" and command.strip():
            return command.strip()
    return None


def resolve(spec: LaunchSpec, app_dir: Path, checkout: Path | None, image_commands: Mapping[str, str], report: Reporter) -> tuple[list[str], Path]:
    """The argv and working directory for `spec`, whose code (if any) is checked out in
    `checkout`; raises `LaunchError` when there is nothing to run."""
    if spec.image:
        for key in (f"{spec.image}:{spec.tag}", spec.image):
            if key in image_commands:
                cwd = checkout or app_dir
                report(f"running image {key!r} as the host command: {image_commands[key]}")
                return ["/bin/sh", "-c", image_commands[key]], cwd
    if checkout is None:
        image = f"{spec.image}:{spec.tag}" if spec.image else "(none)"
        raise LaunchError(
            f"image {image} has no host command on this server and the studio has no git repository "
            f"to run; an administrator can map it in the process runtime's image commands "
            f"(for example {spec.image or 'my-image'!r}: 'jupyter lab --port $PORT')"
        )
    if spec.image:
        report(f"image {spec.image}:{spec.tag} has no host command here; running the repository's start command")
    start = checkout / "start"
    if start.is_file():
        if start.stat().st_mode & 0o111:
            report("start command: ./start")
            return [str(start)], checkout
        report("start command: ./start (not executable, run with /bin/sh)")
        return ["/bin/sh", str(start)], checkout
    web = procfile_web(checkout / "Procfile")
    if web is not None:
        report(f"start command: Procfile web: {web}")
        return ["/bin/sh", "-c", web], checkout
    raise LaunchError(NO_START_COMMAND)
