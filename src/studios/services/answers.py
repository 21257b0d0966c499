"""A GET's JSON body encoded once, with holes for what must be new on every request, so a kept
answer (`studios.services.read_cache`) costs a join, not a rebuild and a re-encode: a page of
20 studios was about 1 ms of CPU per request to build as dicts and encode again.

The holes of a studio's view: each `displayUrl`, signed per request (a link opens once), and
`author.online`, judged against the clock then. While building, a hole is a string no stored
text can spell (a NUL, this process's random nonce, its number, a NUL); the encoder writes it
as `"\\u0000<nonce>:<n>\\u0000"`, where the body is split. If the pieces do not come out one
per hole, in order (someone guessed the nonce), the answer is built in full on every request
instead: never a wrong body."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from studios.services.keys import Caller, is_online

if TYPE_CHECKING:  # views builds its bodies with this module's holes
    from studios.services.views import Links

_NONCE = secrets.token_hex(12)
_SPLIT = re.compile(r'"\\u0000' + _NONCE + r':(\d+)\\u0000"')


def encode(body: Any) -> bytes:
    """The one JSON encoding of wire dicts (compact, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class Holes:
    """Collects the holes of one body while it is built (pass it to the view functions)."""

    def __init__(self) -> None:
        self.fills: list[tuple[str, Any]] = []

    def _hole(self, kind: str, arg: Any) -> str:
        self.fills.append((kind, arg))
        return f"\x00{_NONCE}:{len(self.fills) - 1}\x00"

    def online(self, last_seen_at: datetime | None) -> Any:
        return self._hole("online", last_seen_at)

    def display_url(self, deployment_id: int) -> Any:
        return self._hole("display", deployment_id)


class Answer:
    __slots__ = ("_build", "_fills", "_pieces")

    def __init__(self, build: Callable[[Holes | None], Any]) -> None:
        """`build(holes)` makes the wire body; with `holes` None, in full for this moment."""
        holes = Holes()
        parts = _SPLIT.split(encode(build(holes)).decode())
        numbers = [int(n) for n in parts[1::2]]
        if numbers == list(range(len(holes.fills))):
            self._pieces: list[bytes] | None = [p.encode() for p in parts[0::2]]
            self._fills = holes.fills
            self._build = None
        else:
            self._pieces, self._fills, self._build = None, [], build

    def render(self, caller: Caller, links: Links) -> bytes:
        if self._pieces is None:
            assert self._build is not None
            return encode(self._build(None))
        pieces = self._pieces
        out = [pieces[0]]
        for (kind, arg), piece in zip(self._fills, pieces[1:], strict=True):
            if kind == "online":
                out.append(b"true" if is_online(arg) else b"false")
            else:
                out.append(encode(links.display_url(arg, caller.id)))
            out.append(piece)
        return b"".join(out)
