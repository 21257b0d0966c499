"""The copies of the published Civis spec in `tests/contract/` are what the installed `civis`
client (the version pinned in pyproject.toml) ships: a version bump without
`scripts/refresh_civis_spec.py` fails here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("civis", reason="needs the civis client (pip install -e '.[test]')")


def refresh_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("refresh_civis_spec", REPO / "scripts" / "refresh_civis_spec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stored_specs_match_the_installed_client() -> None:
    script = refresh_script()
    for path, content in script.expected().items():
        assert path.parent == Path(__file__).resolve().parent
        assert json.loads(path.read_text(encoding="utf-8")) == content, f"{path.name} is stale: run .venv/bin/python scripts/refresh_civis_spec.py"


def test_the_studios_subset_holds_every_studios_operation() -> None:
    script = refresh_script()
    whole, version = script.published_spec()
    stored = json.loads(script.STUDIOS_FILE.read_text(encoding="utf-8"))
    assert version in stored["x-source"]["package"]
    assert set(stored["paths"]) == {p for p in whole["paths"] if p.startswith("/studios")}
    assert {"Studio", "StudioDeployment", "UserSimpleUser"} <= set(stored["definitions"])
