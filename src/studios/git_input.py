"""What a user may give as a studio's git ref and git repository URL: the one place these
rules live. The API checks them when a studio is written and the checkout checks them again
before it runs git (rows stored before a rule existed are not trusted).

A ref follows `git check-ref-format --allow-onelevel` (a branch, a tag, `refs/...`, or a
commit id, which is a valid ref name too) and may not start with `-`, so it can never read as
an option. A URL is `https://` or `http://` with a host, or, only where the administrator
allows local repositories (`STUDIOS_ALLOW_LOCAL_GIT_REPOS`), `file://` or an absolute path:
no `ssh`, `git://`, `ext::`, `fd::` or other `<transport>::` form, nothing starting with `-`,
no whitespace or control characters. Each check raises `ValueError` with a sentence that says
what is wrong; it knows nothing of HTTP, settings or git processes.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_REF_LENGTH = 255
LOCAL_SETTING = "STUDIOS_ALLOW_LOCAL_GIT_REPOS"

_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


class LocalRepoRefused(ValueError):
    """A `file://` URL or a local path, on a server that does not allow them."""


def check_ref(ref: str) -> None:
    """Raise ValueError unless `ref` is a git ref name (git's own rules) not starting with `-`."""
    if not ref:
        raise ValueError("a git ref cannot be empty")
    if len(ref) > MAX_REF_LENGTH:
        raise ValueError(f"a git ref is at most {MAX_REF_LENGTH} characters")
    if ref.startswith("-"):
        raise ValueError(f"{ref!r} is not a valid git ref: it must not start with '-'")
    bad = _REF_FORBIDDEN.search(ref)
    if bad:
        what = "whitespace or a control character" if bad.group() <= " " or bad.group() == "\x7f" else repr(bad.group())
        raise ValueError(f"{ref!r} is not a valid git ref: it must not contain {what}")
    for rule, broken in (
        ("'..'", ".." in ref),
        ("'@{'", "@{" in ref),
        ("an empty component ('//', or '/' first or last)", ref.startswith("/") or ref.endswith("/") or "//" in ref),
    ):
        if broken:
            raise ValueError(f"{ref!r} is not a valid git ref: it must not contain {rule}")
    if ref == "@":
        raise ValueError("'@' is not a valid git ref")
    if ref.endswith("."):
        raise ValueError(f"{ref!r} is not a valid git ref: it must not end with '.'")
    for component in ref.split("/"):
        if component.startswith("."):
            raise ValueError(f"{ref!r} is not a valid git ref: no part of it may start with '.'")
        if component.endswith(".lock"):
            raise ValueError(f"{ref!r} is not a valid git ref: no part of it may end with '.lock'")


def is_local(url: str) -> bool:
    """A `file://` URL or an absolute path (git reads it from this machine's disk)."""
    return url.startswith("/") or url[:7].lower() == "file://"


def check_url(url: str, *, allow_local: bool) -> None:
    """Raise ValueError unless `url` is a repository URL this server may fetch from;
    `LocalRepoRefused` for a local one when `allow_local` is false."""
    if not url:
        raise ValueError("a git URL cannot be empty")
    if _CONTROL_OR_SPACE.search(url):
        raise ValueError(f"{url!r} is not a git URL: it must not contain whitespace or control characters")
    if url.startswith("-"):
        raise ValueError(f"{url!r} is not a git URL: it must not start with '-'")
    if not url.startswith("/"):
        match = _SCHEME.match(url)
        if match is None:
            raise ValueError(f"{url!r} is not a git URL: use https://host/path (or http://)")
        scheme = match.group(1).lower()
        if scheme in ("http", "https"):
            try:
                host = urlsplit(url).hostname
            except ValueError as exc:
                raise ValueError(f"{url!r} is not a git URL: {exc}") from None
            if not host or host.startswith("-"):
                raise ValueError(f"{url!r} is not a git URL: it names no host")
            return
        if scheme != "file":
            raise ValueError(f"{url!r} uses the {scheme}:// transport, which this server does not fetch from: use https:// or http://")
    if not allow_local:
        raise LocalRepoRefused(f"{url!r} is a local repository; this server fetches only https:// and http:// repositories (an administrator can allow local ones with {LOCAL_SETTING}=true)")
