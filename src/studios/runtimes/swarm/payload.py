"""What travels with a task besides its image: the studio's code, its secret environment and
the small shell step that puts both in place before the app's own command runs.

The code is the repo's checkout (without `.git`) as a gzipped tar, cut into pieces of at most
500 KB (the swarm's limit for one secret) that become swarm secrets, mounted read-only into
the task's container at /run/secrets/studios-source-<k>. The secret environment is one more
secret, /run/secrets/studios-env, holding `export NAME='value'` lines. Swarm secrets are kept
encrypted in the managers' raft log, sent only to the node that runs the task and mounted on a
tmpfs there; the service spec names them but never holds their values.

`INIT` runs as the container's command (`/bin/sh -c INIT studios-init <pieces> <image command>`):
it reads the secret environment, unpacks the pieces into the working directory and `exec`s the
image's own entrypoint and command, so the app is PID 2 under the engine's init and gets
signals directly. It needs `/bin/sh`, `cat` and `tar` with gzip in the image (busybox, Debian,
Alpine, python and node images all have them). Knows nothing of Docker's API.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from studios.runtimes.base import LaunchError

SECRET_LIMIT = 500 * 1024
"""Largest swarm secret the engine accepts (bytes)."""
SECRETS_DIR = "/run/secrets"
ENV_TARGET = "studios-env"
SOURCE_TARGET = "studios-source-{index}"

INIT = """\
if [ -f /run/secrets/studios-env ]; then . /run/secrets/studios-env; fi
pieces=$1; shift
if [ "$pieces" -gt 0 ]; then
  i=0
  { while [ "$i" -lt "$pieces" ]; do cat "/run/secrets/studios-source-$i"; i=$((i+1)); done; } | tar -xzf - \\
    || { echo "studios: could not unpack the studio's repo into $PWD" >&2; exit 125; }
fi
exec "$@"
"""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_file(values: dict[str, str]) -> bytes:
    """`export NAME='value'` lines for the init step to source; refuses names a shell can't set."""
    lines = []
    for name, value in values.items():
        if not _NAME.match(name):
            raise LaunchError(f"secret environment variable {name!r} is not a valid variable name")
        if "\0" in value:
            raise LaunchError(f"secret environment variable {name} contains a NUL character")
        quoted = "'" + value.replace("'", "'\\''") + "'"
        lines.append(f"export {name}={quoted}\n")
    return "".join(lines).encode()


class _Bounded(io.BytesIO):
    """A buffer that refuses to grow past `limit` bytes (so a huge repo fails early)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.limit:
            raise OverflowError
        return super().write(data)


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(checkout: Path, limit_bytes: int) -> list[bytes]:
    """The checkout (without `.git`) as gzipped tar pieces of at most `SECRET_LIMIT` bytes.
    Raises `LaunchError` when the archive would exceed `limit_bytes`."""
    buffer = _Bounded(limit_bytes)
    try:
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
            for entry in sorted(checkout.iterdir()):
                if entry.name != ".git":
                    archive.add(entry, arcname=entry.name, filter=_as_root)
    except OverflowError:
        raise LaunchError(
            f"the studio's repo is larger than {limit_bytes / 2**20:g} MB compressed, the most the swarm "
            "runtime carries to a task (STUDIOS_SWARM_SOURCE_LIMIT_MB); put large files in the image instead"
        ) from None
    data = buffer.getvalue()
    return [data[i : i + SECRET_LIMIT] for i in range(0, len(data), SECRET_LIMIT)]


def command(image_entrypoint: list[str] | None, image_cmd: list[str] | None, pieces: int) -> list[str]:
    """The container command that runs `INIT` and then the image's own entrypoint and command."""
    original = [*(image_entrypoint or []), *(image_cmd or [])]
    if not original:
        raise LaunchError("the image defines no command (ENTRYPOINT or CMD) to run")
    return ["/bin/sh", "-c", INIT, "studios-init", str(pieces), *original]
