"""Launch recipes: the image names the process runtime runs out of the box, when the program
is installed on the server (JupyterLab, Streamlit, Shiny for Python, Dash), and the quick
start's example app (`localhost/studios-hello`) in a source checkout.

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


EXAMPLE_IMAGE = "localhost/studios-hello"
"""The README's first deploy: `examples/hello` of a source checkout, with no configuration (on
Docker the same name is the local image `examples/hello/build-image.sh` builds)."""
EXAMPLE_DIR = Path(__file__).resolve().parents[4] / "examples" / "hello"
EXAMPLE_FILES = ("app.py", "index.html")
"""Copied into the app's directory when the studio has no repository (the app's own user may
not be able to read the service's checkout)."""


def example_command() -> str:
    """The checkout's `start` when the studio has a repository of the example, else `app.py` with
    a Python every user can run (the system's, not the service's virtualenv)."""
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), "python3")
    return f"if [ -x ./start ]; then exec ./start; fi; exec {python} app.py"


def example_files(image: str, image_commands: Mapping[str, str]) -> list[Path]:
    """The files to put in the app's directory for `image`: the example's, when `image` runs the
    example's command here (not when an operator mapped the name to a command of their own)."""
    if image != EXAMPLE_IMAGE or image_commands.get(image) != example_command():
        return []
    return [EXAMPLE_DIR / name for name in EXAMPLE_FILES]


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
    if (EXAMPLE_DIR / "app.py").is_file():  # a source checkout (`pip install -e`)
        out[EXAMPLE_IMAGE] = example_command()
    return out
