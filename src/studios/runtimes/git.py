"""Checking out a studio's git repository at a branch, tag or commit, where a runtime needs it.

Owns the `git` command lines and what they may leak. Credentials for HTTPS travel only in the
environment of the git process and reach git through a throwaway askpass script, so they never
appear in argv (visible to every user in `ps`), in the work tree's `.git/config`, in a raised
`CheckoutError` or in a reported line; `GIT_TERMINAL_PROMPT=0` makes a missing credential fail
at once instead of waiting on a terminal. Fetches are shallow (`--depth 1`); a commit given by
a short or unadvertised sha falls back to fetching every branch and tag.

What a user gives reaches git only as data: the URL and ref are checked again here by
`studios.git_input` (rows stored before a rule existed are not trusted), every user-supplied
argument follows `--` or `--end-of-options`, and git runs with no system or global config (an
empty `HOME`), no hooks, no fsmonitor, no submodule recursion and only the https/http
transports (plus file when local repositories are allowed). It knows nothing of deployments
or the database: the caller chooses `dest` and records what it reports.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from studios import git_input
from studios.runtimes.base import Source

ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$STUDIOS_GIT_USERNAME" ;;
  *) printf '%s\\n' "$STUDIOS_GIT_PASSWORD" ;;
esac
"""
TOKEN_USERNAME = "x-access-token"
"""Sent when only a password (a token) is given; what GitHub expects, and ignored by most servers."""

SAFE_CONFIG = [
    "-c", "credential.helper=",  # no stored credentials are used, none are stored
    "-c", "protocol.allow=never",  # ext::, fd::, ssh, git:// and any other transport: refused
    "-c", "protocol.https.allow=always",
    "-c", "protocol.http.allow=always",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "submodule.recurse=false",
    "-c", "fetch.recurseSubmodules=false",
    "-c", "advice.detachedHead=false",
    "-c", "init.defaultBranch=main",
]  # fmt: skip
HEXISH = re.compile(r"[0-9a-fA-F]{4,40}")
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class CheckoutError(Exception):
    """The repository could not be checked out; the message carries git's own reason."""


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """The URL without `user:password@`, and the user and password it carried."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if sep else None


def _check_input(url: str, ref: str | None, allow_local: bool) -> None:
    try:
        git_input.check_url(url, allow_local=allow_local)
        if ref is not None:
            git_input.check_ref(ref)
    except ValueError as exc:
        raise CheckoutError(f"refused: {exc}") from None


def _reason(stderr: str) -> str:
    """git's own explanation: its first fatal/error line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no output from git"


class _Git:
    """Runs git in `dest` with a scrubbed environment and one overall deadline."""

    def __init__(self, dest: Path, env: dict[str, str], deadline: float, timeout: float, secrets: list[str], allow_local: bool) -> None:
        self.dest, self.env, self.deadline, self.timeout, self.secrets = dest, env, deadline, timeout, secrets
        self.config = [*SAFE_CONFIG, "-c", f"protocol.file.allow={'always' if allow_local else 'never'}"]

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        spawning = asyncio.ensure_future(asyncio.create_subprocess_exec(
            "git", *self.config, *args,
            cwd=self.dest,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # so a timeout can kill git's helpers too
        ))  # fmt: skip
        try:
            # Shielded: cancelled while asyncio connects the new process's pipes, asyncio would
            # kill git alone, and the helpers it had started (`git remote-http`) ran on against
            # the remote for good (a fresh run left two, hung on a silent remote).
            process = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            await self._end(await spawning)
            raise
        try:
            async with asyncio.timeout_at(self.deadline):
                out, err = await process.communicate()
        except BaseException as error:
            # Timed out, or the launch was cancelled (its deployment stopped meanwhile).
            await self._end(process)
            if isinstance(error, TimeoutError):
                raise CheckoutError(f"git clone timed out after {self.timeout:g} s") from None
            raise
        return int(process.returncode or 0), self.decode(out), self.decode(err)

    @staticmethod
    async def _end(process: asyncio.subprocess.Process) -> None:
        """git and its helpers (its process group) end now, and what they wrote is read to its
        end so the pipes close."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await process.communicate()

    def decode(self, data: bytes) -> str:
        return self.scrub(data.decode("utf-8", "replace"))


def _environment(home: Path, askpass: Path | None, username: str | None, password: str | None, allow_local: bool) -> dict[str, str]:
    """The service's environment without git's or ssh's variables, and with no config but ours:
    no system file, no global one (`HOME` is an empty directory), the same transports as
    SAFE_CONFIG (GIT_ALLOW_PROTOCOL overrides any protocol.allow git might still read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_", "XDG_CONFIG"))}
    env.update(
        GIT_TERMINAL_PROMPT="0", GIT_ASKPASS=str(askpass) if askpass else "", LC_ALL="C",
        HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null",
        GIT_ALLOW_PROTOCOL="https:http:file" if allow_local else "https:http", GIT_PROTOCOL_FROM_USER="0",
    )  # fmt: skip
    if askpass is not None:
        env.update(STUDIOS_GIT_USERNAME=username or TOKEN_USERNAME, STUDIOS_GIT_PASSWORD=password or "")
    return env


async def checkout(
    url: str,
    ref: str | None,
    dest: Path,
    *,
    username: str | None = None,
    password: str | None = None,
    report: Callable[[str], None] | None = None,
    timeout: float = 120.0,
    allow_local: bool = False,
) -> str:
    """Check out `url` at `ref` (branch, tag or commit sha; None: the default branch) into the
    empty or missing directory `dest`; return the commit sha. Raises `CheckoutError`, also for a
    URL or ref `studios.git_input` refuses (local repositories only with `allow_local`)."""
    say = report or (lambda line: None)
    clean_url, url_user, url_password = split_credentials(url)
    username, password = username or url_user, password or url_password
    _check_input(clean_url, ref, allow_local)
    # One local directory, made and listed inline (quick); git's own work runs in subprocesses.
    dest.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    if any(dest.iterdir()):  # noqa: ASYNC240
        raise CheckoutError(f"cannot check out into {dest}: the directory is not empty")
    secrets = [s for s in {password, quote(password or "", safe="")} if s and len(s) >= 3]
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="studios-git-") as scratch:
        askpass = None
        if username or password:
            askpass = Path(scratch) / "askpass"
            askpass.write_text(ASKPASS)
            askpass.chmod(stat.S_IRWXU)
        home = Path(scratch) / "home"
        home.mkdir()
        env = _environment(home, askpass, username, password, allow_local)
        git = _Git(dest, env, loop.time() + timeout, timeout, secrets, allow_local)
        for args in (("init", "-q", "."), ("remote", "add", "--", "origin", clean_url)):
            code, _, err = await git(*args)
            if code:
                raise CheckoutError(f"git {args[0]} failed: {_reason(err)}")
        target = ref or "HEAD"
        say(f"fetching {target} from {clean_url}")
        code, _, err = await git("fetch", "-q", "--depth", "1", "--no-tags", "--", "origin", target)
        if code == 0:
            target = "FETCH_HEAD"
        elif "couldn't find remote ref" not in err:
            raise CheckoutError(f"git clone failed: {_reason(err)}")
        elif ref and HEXISH.fullmatch(ref):
            say(f"{ref} is not a branch or tag; fetching the whole history to find the commit")
            code, _, err = await git("fetch", "-q", "--tags", "--", "origin", "+refs/heads/*:refs/remotes/origin/*")
            if code:
                raise CheckoutError(f"git clone failed: {_reason(err)}")
            code, out, _ = await git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
            if code or not FULL_SHA.fullmatch(out.strip()):
                raise CheckoutError(f"ref {ref!r} not found in {clean_url}")
            target = out.strip()
        else:
            raise CheckoutError(f"ref {target!r} not found in {clean_url} ({_reason(err)})")
        code, _, err = await git("switch", "-q", "--detach", "--end-of-options", target)
        if code:
            raise CheckoutError(f"git checkout of {target!r} failed: {_reason(err)}")
        code, out, err = await git("rev-parse", "HEAD")
        if code:
            raise CheckoutError(f"git rev-parse failed: {_reason(err)}")
    sha = out.strip()
    say(f"checked out {clean_url} at {sha[:12]}")
    return sha


async def fetch(source: Source, dest: Path, report: Callable[[str], None], timeout: float = 120.0) -> str:
    """Check out a runtime contract `Source` into `dest` (see `checkout`); the commit sha."""
    return await checkout(source.url, source.ref, dest, username=source.username, password=source.password, report=report, timeout=timeout, allow_local=source.allow_local)
