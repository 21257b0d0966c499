"""The rules of `studios.git_input`: refs as `git check-ref-format` judges them (asked of the
real git for every case), never starting with `-`; URLs only https/http, local ones only when
allowed."""

from __future__ import annotations

import subprocess

import pytest

from studios.git_input import LocalRepoRefused, check_ref, check_url

REFS = [
    "main", "feature/x", "v1.0", "refs/heads/main", "refs/pull/12/head", "release-2024.01", "a" * 40, "0123abcd",
    "HEAD", "ünïcode", "with@sign", "x.lock.y", "a/b.c", "@x",
    "", "has space", "tab\there", "new\nline", "nul\x00", "del\x7f", "tilde~1", "caret^", "colon:x", "q?", "star*",
    "br[ck", "back\\slash", "double..dot", "at@{brace", "@", "/lead", "trail/", "two//slashes", "ends.", ".hidden",
    "dir/.hidden", "x.lock", "dir/x.lock", "refs/heads/..", "a/./b",
]  # fmt: skip


def git_accepts(ref: str) -> bool:
    if "\x00" in ref:
        return False  # cannot even be passed to a process
    done = subprocess.run(["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("ref", REFS)
def test_refs_follow_git_check_ref_format(ref: str) -> None:
    try:
        check_ref(ref)
        ours = True
    except ValueError:
        ours = False
    assert ours == git_accepts(ref), f"git says {git_accepts(ref)}, we say {ours} for {ref!r}"


@pytest.mark.parametrize("ref", ["-x", "--upload-pack=touch${IFS}/tmp/x;git-upload-pack", "-utouch /tmp/x", "--output=/tmp/x", "-"])
def test_refs_that_read_as_options_are_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="must not start with '-'"):
        check_ref(ref)


def test_a_ref_longer_than_the_column_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 255"):
        check_ref("a" * 256)


@pytest.mark.parametrize("url", ["https://github.com/org/repo.git", "http://127.0.0.1:8080/r", "https://user:tok@example.com/r.git", "https://[::1]:9/r"])
def test_remote_urls_are_accepted(url: str) -> None:
    check_url(url, allow_local=False)


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned", "ext::sh", "fd::17", "fd::3,4", "file::/srv/repo", "https::ext::sh", "-oProxyCommand=touch /tmp/x",
        "--upload-pack=touch /tmp/x", "ssh://-oProxyCommand=touch%20/tmp/x/r", "ssh://git@github.com/o/r.git", "git@github.com:o/r.git",
        "git://example.com/r", "ftp://example.com/r", "https://", "https:///path", "https://-oProxyCommand=x/r", "https://e.com/a b",
        "https://e.com/a\tb", "https://e.com/a\x00b", "https://e.com/\u0085", "relative/path", "./here", "../up", "", " https://e.com/r",
    ],
)  # fmt: skip
def test_other_transports_options_and_junk_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as error:
        check_url(url, allow_local=True)
    assert not isinstance(error.value, LocalRepoRefused)


@pytest.mark.parametrize("url", ["file:///srv/repo", "FILE:///srv/repo", "file://localhost/srv/repo", "/srv/repo"])
def test_local_repositories_only_when_allowed(url: str) -> None:
    check_url(url, allow_local=True)
    with pytest.raises(LocalRepoRefused, match="STUDIOS_ALLOW_LOCAL_GIT_REPOS"):
        check_url(url, allow_local=False)
