"""`gitRepoUrl` with local repositories allowed by the administrator
(`STUDIOS_ALLOW_LOCAL_GIT_REPOS`): file:// URLs and paths are stored; nothing else widens.
(Its own module: the refusals in test_git_fields.py share one app across a module.)"""

from __future__ import annotations

from typing import Any

import pytest

from .test_bad_input import assert_civis_error
from .test_git_fields import LOCAL_URLS, REPRODUCER


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_local_git_repos": True}


@pytest.mark.parametrize("url", LOCAL_URLS)
def test_local_repositories_when_the_administrator_allows_them(api: Any, author: Any, url: str) -> None:
    me = api.as_(author)
    created = me.post("/studios", json={"name": "local", "gitRepoUrl": url, "gitRef": "main"})
    assert created.status_code == 201, created.text
    assert created.json()["gitRepoUrl"] == url
    patched = me.patch(f"/studios/{created.json()['id']}", json={"gitRepoUrl": "file:///srv/other.git"})
    assert patched.status_code == 200 and patched.json()["gitRepoUrl"] == "file:///srv/other.git"
    # Allowing local repositories widens nothing else.
    for bad in ("ext::sh -c touch% /tmp/PWNED", "ssh://-oProxyCommand=x/r"):
        assert_civis_error(me.post("/studios", json={"gitRepoUrl": bad}), "gitRepoUrl")
    assert_civis_error(me.post("/studios", json=REPRODUCER), "gitRef")
