"""`gitRef` and `gitRepoUrl` through the API: refs that read as git options, other transports
and local repositories (unless the administrator allows them) are a 400 naming the field on
POST, PUT and PATCH, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_bad_input import assert_civis_error, state

REPRODUCER = {"name": "x", "git_repo_url": "file:///nonexistent", "git_ref": "--upload-pack=touch${IFS}/tmp/PWNED;git-upload-pack"}

BAD_REFS = [
    "--upload-pack=touch${IFS}/tmp/PWNED;git-upload-pack", "-utouch /tmp/x", "-", "--", "a..b", "a@{1}", "@", "x.lock",
    ".hidden", "a//b", "/main", "main/", "main.", "a\\b", "a:b", "a?", "a*", "a[b", "a\x00b",
]  # fmt: skip
BAD_URLS = [
    "ext::sh -c touch% /tmp/PWNED", "fd::17", "ssh://-oProxyCommand=touch%20/tmp/PWNED/r", "ssh://git@example.com/r.git",
    "git@example.com:o/r.git", "git://example.com/r", "--upload-pack=touch /tmp/PWNED", "-oProxyCommand=x", "file::/srv/r",
    "https::ext::sh", "https://-host/r",
]  # fmt: skip
LOCAL_URLS = ["file:///srv/repo.git", "/srv/repo.git"]


def test_the_issues_reproducer_is_refused_and_nothing_is_stored(shared: Any, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    before = state(shared.as_author)
    for method, path in (("POST", "/studios"), ("PUT", f"/studios/{shared.studio['id']}"), ("PATCH", f"/studios/{shared.studio['id']}")):
        body = {**REPRODUCER, "git_ref": f"--upload-pack=touch${{IFS}}{marker};git-upload-pack"}
        error = assert_civis_error(shared.as_author.request(method, path, json=body), "gitRef")
        assert "must not start with '-'" in error["errorDescription"]
    assert state(shared.as_author) == before
    assert not marker.exists()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("ref", BAD_REFS)
def test_bad_refs_are_refused_naming_the_field(shared: Any, method: str, ref: str) -> None:
    before = state(shared.as_author)
    path = "/studios" if method == "POST" else f"/studios/{shared.studio['id']}"
    response = shared.as_author.request(method, path, json={"name": "s", "gitRepoUrl": "https://example.com/r.git", "gitRef": ref})
    assert_civis_error(response, "gitRef")
    assert state(shared.as_author) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("url", BAD_URLS)
def test_other_transports_are_refused_naming_the_field(shared: Any, method: str, url: str) -> None:
    before = state(shared.as_author)
    path = "/studios" if method == "POST" else f"/studios/{shared.studio['id']}"
    response = shared.as_author.request(method, path, json={"name": "s", "gitRepoUrl": url})
    assert_civis_error(response, "gitRepoUrl")
    assert state(shared.as_author) == before


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("url", LOCAL_URLS)
def test_local_repositories_are_refused_by_default_naming_the_setting(shared: Any, method: str, url: str) -> None:
    before = state(shared.as_author)
    path = "/studios" if method == "POST" else f"/studios/{shared.studio['id']}"
    response = shared.as_author.request(method, path, json={"name": "s", "gitRepoUrl": url})
    body = assert_civis_error(response, "gitRepoUrl")
    assert "STUDIOS_ALLOW_LOCAL_GIT_REPOS" in body["errorDescription"]
    assert state(shared.as_author) == before
