"""The first-run key hint: `studios bootstrap`, `studios users create` and `studios keys create`
print the key alone on stdout and an `export CIVIS_API_ENDPOINT=… CIVIS_API_KEY=…` line on
stderr that stays one line whatever the terminal width, also when the output goes to a file or
a pipe, so pasting it into a shell exports the whole key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import TEST_SECRET

STUDIOS = Path(sys.executable).parent / "studios"
LONG_URL = "http://studios.a-rather-long-host-name.example.internal:8000"


@pytest.fixture
def env(tmp_path: Path, fresh_database: Callable[[Path], str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOS_", "CIVIS_"))}
    return clean | {"HOME": str(tmp_path), "STUDIOS_DATA_DIR": str(tmp_path / "data"), "STUDIOS_DATABASE_URL": fresh_database(tmp_path / "db"),
                    "STUDIOS_SECRET_KEY": TEST_SECRET, "STUDIOS_PUBLIC_URL": LONG_URL, "COLUMNS": "20", "LINES": "10"}


def run_to_files(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        subprocess.run([str(STUDIOS), *args], env=env, stdout=stdout, stderr=stderr, check=True, timeout=60)
    return out.read_text(), err.read_text()


def export_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "CIVIS_API" in line]
    assert len(lines) == 1, f"the export line was split or repeated:\n{stderr}"
    return lines[0]


def exported_by(line: str) -> tuple[str, str]:
    """What a shell has after the line is pasted into it."""
    shell = subprocess.run(["sh", "-c", line + '\nprintf "%s\\n%s" "$CIVIS_API_ENDPOINT" "$CIVIS_API_KEY"'], capture_output=True, text=True, check=True)
    endpoint, key = shell.stdout.split("\n")
    return endpoint, key


def test_bootstrap_hint_survives_a_narrow_terminal_and_a_file(tmp_path: Path, env: dict[str, str]) -> None:
    stdout, stderr = run_to_files(tmp_path, env, "bootstrap")
    key = stdout.strip()
    assert key.startswith("stu_") and "\n" not in key and len(key) > 20
    line = export_line(stderr)
    assert line == f"export CIVIS_API_ENDPOINT={LONG_URL} CIVIS_API_KEY={key}"
    assert exported_by(line) == (LONG_URL, key)


def test_users_create_and_keys_create_hints_through_a_pipe(tmp_path: Path, env: dict[str, str]) -> None:
    made = subprocess.run([str(STUDIOS), "users", "create", "a-user-with-a-long-name", "--admin"], env=env, capture_output=True, text=True, check=True, timeout=60)
    key = made.stdout.strip()
    assert "\n" not in key and exported_by(export_line(made.stderr)) == (LONG_URL, key)
    another = subprocess.run([str(STUDIOS), "keys", "create", "a-user-with-a-long-name"], env=env, capture_output=True, text=True, check=True, timeout=60)
    new_key = another.stdout.strip()
    assert new_key != key and exported_by(export_line(another.stderr)) == (LONG_URL, new_key)


@pytest.mark.parametrize("port_args", [["--port", "18999"], ["--port=18999"]])
def test_scripts_serve_prints_the_export_line_with_the_port_it_serves_on(tmp_path: Path, env: dict[str, str], port_args: list[str]) -> None:
    """`scripts/serve --port N` (8000 taken, say): the first-run line a newcomer pastes names port
    N, the port `studios serve` is given, not the default. Here the repository's scripts/serve
    runs in a copy whose `.venv/bin/studios` is the real one for `bootstrap` and only reports
    what `serve` would get."""
    repo = Path(__file__).resolve().parent.parent
    copy = tmp_path / "clone"
    (copy / "scripts").mkdir(parents=True)
    (copy / "scripts" / "serve").write_bytes((repo / "scripts" / "serve").read_bytes())
    (copy / "scripts" / "serve").chmod(0o755)
    (copy / "pyproject.toml").write_text("")
    studios = copy / ".venv" / "bin" / "studios"
    studios.parent.mkdir(parents=True)
    studios.write_text(f'#!/bin/sh\nif [ "$1" = serve ]; then echo "serve $* STUDIOS_PORT=$STUDIOS_PORT"; exit 0; fi\nexec {STUDIOS} "$@"\n')
    studios.chmod(0o755)  # written after pyproject.toml: nothing to install
    run_env = {k: v for k, v in env.items() if k != "STUDIOS_PUBLIC_URL"} | {"STUDIOS_RUNTIME": "process"}
    done = subprocess.run([str(copy / "scripts" / "serve"), *port_args], env=run_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"serve {' '.join(port_args)} STUDIOS_PORT=18999" in done.stdout
    export = [line for line in done.stderr.splitlines() if line.startswith("export CIVIS_API_ENDPOINT=")]
    assert export and export[0].startswith("export CIVIS_API_ENDPOINT=http://localhost:18999 CIVIS_API_KEY="), done.stderr
