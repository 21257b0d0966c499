"""Reading the host-process runtime's log files: batches of lines and a byte-offset cursor.

Owns the reading side of the format the supervisor writes (`<unix time> <line>\\n` per line in
`stdout.log` and `stderr.log`). A cursor is `{"stdout": bytes, "stderr": bytes}`, always at a
line boundary, so resuming from a stored cursor, in this process or after a restart, yields
every line exactly once. Reading and parsing run in a worker thread, a bounded slice per
stream per batch, so a flood never stalls the service's event loop.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Literal

from studios.runtimes.base import LogCursor, LogLine

STREAMS: tuple[Literal["stdout"], Literal["stderr"]] = ("stdout", "stderr")
SLICE = 1 << 19
"""Bytes read per stream per batch (about 50,000 short lines)."""


def _parse(stream: Literal["stdout", "stderr"], data: bytes) -> list[LogLine]:
    """Lines of `data` (whole lines, the last one may lack its newline)."""
    lines: list[LogLine] = []
    times: dict[str, datetime] = {}
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    for raw in text.split("\n"):
        stamp, _, message = raw.partition(" ")
        when = times.get(stamp)
        if when is None:
            try:
                when = datetime.fromtimestamp(float(stamp), UTC)
            except ValueError:
                when, message = datetime.now(UTC), raw
            times[stamp] = when
        lines.append(LogLine(stream, message, when))
    return lines


def read_batch(paths: dict[str, Path], offsets: dict[str, int], final: bool) -> list[LogLine]:
    """Read what follows `offsets` (advancing them) in whole lines; `final`: the app has ended,
    so a last line without a newline is taken too."""
    per_stream: list[list[LogLine]] = []
    for stream in STREAMS:
        try:
            with open(paths[stream], "rb") as source:
                source.seek(offsets[stream])
                data = source.read(SLICE)
        except FileNotFoundError:
            continue
        if not data:
            continue
        cut = data.rfind(b"\n")
        if cut >= 0:
            data = data[: cut + 1]
        elif len(data) < SLICE and not final:
            continue  # a line still being written
        offsets[stream] += len(data)
        per_stream.append(_parse(stream, data))
    if len(per_stream) == 1:
        return per_stream[0]
    return list(heapq.merge(*per_stream, key=attrgetter("time")))


async def follow(
    paths: dict[str, Path],
    cursor: LogCursor | None,
    ended: Callable[[], bool],
    poll_interval: float = 0.05,
) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
    """Yield `(lines, cursor)` from `cursor` on until `ended()` and every line is read."""
    offsets: dict[str, int] = {stream: int((cursor or {}).get(stream, 0)) for stream in STREAMS}
    while True:
        done = ended()  # checked before reading: nothing written before the end is missed
        lines = await asyncio.to_thread(read_batch, paths, offsets, done)
        if lines:
            yield lines, dict(offsets)
        elif done:
            return
        else:
            await asyncio.sleep(poll_interval)
