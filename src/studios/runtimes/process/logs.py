"""Reading the host-process runtime's log files: batches of lines and a byte-offset cursor.

Owns the reading side of the format the supervisor writes (`<unix time> <line>\\n` per line in
`stdout.log` and `stderr.log`). A cursor is `{"stdout": bytes, "stderr": bytes}`, always at a
line boundary, so resuming from a stored cursor, in this process or after a restart, yields
every line exactly once. Reading and parsing run in a worker thread, a bounded slice per
stream per batch, so a flood never stalls the service's event loop; between reads a follower
sleeps until inotify says the files changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Literal

from inotify_simple import INotify, flags

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


class FileWatcher:
    """Wakes the followers of a directory's files when they change (inotify), so a quiet
    deployment costs no wake-ups at all; each wait is also bounded (`timeout`), so a missed
    event (or a system without inotify) only delays a line, never loses it."""

    MASK = flags.MODIFY | flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO

    def __init__(self) -> None:
        self._inotify: INotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[int, asyncio.Event] = {}
        self._wds: dict[str, tuple[int, int]] = {}
        """directory -> (watch descriptor, followers)"""
        self.available = True

    def _start(self) -> INotify | None:
        if self._inotify is None and self.available:
            try:
                self._inotify = INotify(nonblocking=True)
                self._loop = asyncio.get_running_loop()
                self._loop.add_reader(self._inotify.fileno(), self._read)
            except OSError:
                self.available = False
        return self._inotify

    def _read(self) -> None:
        assert self._inotify is not None
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        for wd in {event.wd for event in events}:
            event = self._events.pop(wd, None)
            if event is not None:
                event.set()

    def add(self, directory: Path) -> None:
        inotify = self._start()
        key = str(directory)
        if inotify is None:
            return
        wd, count = self._wds.get(key, (-1, 0))
        if wd < 0:
            try:
                wd = inotify.add_watch(key, self.MASK)
            except OSError:
                return
        self._wds[key] = (wd, count + 1)

    def remove(self, directory: Path) -> None:
        key = str(directory)
        wd, count = self._wds.get(key, (-1, 0))
        if count > 1:
            self._wds[key] = (wd, count - 1)
            return
        self._wds.pop(key, None)
        self._events.pop(wd, None)
        if self._inotify is not None and wd >= 0:
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)

    def watching(self, directory: Path) -> bool:
        """Whether changes in `directory` wake its followers (else they poll)."""
        return self._wds.get(str(directory), (-1, 0))[0] >= 0

    def poke(self, directory: Path) -> None:
        """Wake the directory's followers now (the runtime saw the workload end by other means
        than a file change, e.g. its supervisor was killed)."""
        event = self._events.pop(self._wds.get(str(directory), (-1, 0))[0], None)
        if event is not None:
            event.set()

    def arm(self, directory: Path) -> asyncio.Event:
        """An event set at the directory's next change (take it before reading, then wait)."""
        wd = self._wds.get(str(directory), (-1, 0))[0]
        if wd < 0:
            return asyncio.Event()  # never set: the wait's timeout is the poll
        event = self._events.get(wd)
        if event is None:
            event = self._events[wd] = asyncio.Event()
        return event

    def close(self) -> None:
        if self._inotify is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._inotify.fileno())
            self._inotify.close()
            self._inotify = None


async def follow(
    paths: dict[str, Path],
    cursor: LogCursor | None,
    ended: Callable[[], bool],
    watcher: FileWatcher,
    timeout: float = 1.0,
    watched_timeout: float = 15.0,
) -> AsyncIterator[tuple[list[LogLine], LogCursor]]:
    """Yield `(lines, cursor)` from `cursor` on until `ended()` and every line is read. Waits
    for the files' directory to change between reads: at most `timeout` seconds without
    inotify, `watched_timeout` with it (a backstop only: the supervisor's files, the exit record
    included, change in that directory, and the runtime pokes the watcher when it sees an end
    some other way; so an idle deployment costs a wake-up every 15 s, not every second)."""
    offsets: dict[str, int] = {stream: int((cursor or {}).get(stream, 0)) for stream in STREAMS}
    directory = next(iter(paths.values())).parent
    watcher.add(directory)
    if watcher.watching(directory):
        timeout = watched_timeout
    try:
        while True:
            changed = watcher.arm(directory)
            done = ended()  # checked before reading: nothing written before the end is missed
            lines = await asyncio.to_thread(read_batch, paths, offsets, done)
            if lines:
                yield lines, dict(offsets)
            elif done:
                return
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await changed.wait()
    finally:
        watcher.remove(directory)
