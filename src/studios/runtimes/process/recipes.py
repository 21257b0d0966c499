"""Launch recipes: the image names the process runtime runs out of the box, when the program
is installed on the server (JupyterLab, Streamlit, Shiny for Python, Dash).

Owns the table of recipes and the lookup of their programs; nothing else. Each recipe is a
`/bin/sh -c` command in the same form as an operator's `image_commands` entry (which wins
over a recipe of the same name), run in the studio's checkout when it has one. They listen
on `127.0.0.1:$PORT` and serve under `$STUDIOS_BASE_PATH` (`/` in host mode, `/_d/<id>/` in
path mode), so one command works in both proxy modes; docs/apps.md says what each needs.
A program is found beside the service's own Python (its virtualenv's `bin/`), then on the
service's `PATH`; recipes whose program is nowhere are left out.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Recipe:
    image: str
    """The `dockerImageName` that selects it."""
    program: str
    """The executable it runs, looked up when the runtime starts."""
    command: str
    """Shell command; `{program}` becomes the program's quoted absolute path."""


JUPYTER = (
    'exec {program} --no-browser --ip=127.0.0.1 --port="$PORT" '
    '--ServerApp.base_url="$STUDIOS_BASE_PATH" --ServerApp.allow_remote_access=True '
    "--IdentityProvider.token= --ServerApp.password= "
    # no calls out to the internet from the viewer's Lab (news feed, update check)
    "--LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate "
    # the proxy has signed the viewer in; Jupyter's own token would ask again. As root
    # (a container, or a host that runs apps as root) Jupyter refuses to start without this:
    '$([ "$(id -u)" = 0 ] && echo --allow-root)'
)
STREAMLIT = (
    'exec {program} run "${{STREAMLIT_APP:-streamlit_app.py}}" --server.port="$PORT" '
    '--server.address=127.0.0.1 --server.headless=true --server.baseUrlPath="$STUDIOS_BASE_PATH" '
    "--server.fileWatcherType=none --browser.gatherUsageStats=false"
)
SHINY = 'exec {program} run --host 127.0.0.1 --port "$PORT" "${{SHINY_APP:-app.py}}"'
DASH = (
    'export DASH_URL_BASE_PATHNAME="$STUDIOS_BASE_PATH"; exec {program} --app "${{DASH_APP:-app}}:server" '
    'run --host 127.0.0.1 --port "$PORT" --no-reload --no-debugger'
)
RECIPES = (
    Recipe("jupyterlab", "jupyter-lab", JUPYTER),
    Recipe("streamlit", "streamlit", STREAMLIT),
    Recipe("shiny", "shiny", SHINY),
    Recipe("dash", "flask", DASH),
)


def find_program(name: str, path: str | None = None) -> str | None:
    """`name` beside the service's Python (installed with it, in its virtualenv), else on
    `path` (default: the service's PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name, path=path if path is not None else os.environ.get("PATH"))


def installed(path: str | None = None, recipes: tuple[Recipe, ...] = RECIPES) -> Mapping[str, str]:
    """image name -> command, for the recipes whose program is installed here."""
    out = {}
    for recipe in recipes:
        program = find_program(recipe.program, path)
        if program is not None:
            out[recipe.image] = recipe.command.format(program=shlex.quote(program))
    return out
