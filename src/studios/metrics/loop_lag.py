"""Event-loop lag, minimal: a task sleeps `interval` seconds again and again and records how much
later than asked it woke, into a histogram. Anything that blocks the loop (a synchronous call,
a long parse, a collection pause) shows here, and so does a machine too busy to run the process.
A fuller monitor (telling this process's own lag from a busy machine's) can replace it: it only
needs to observe into the same histogram. Owns the measuring task, nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any

INTERVAL = 0.1


async def measure(histogram: Any, interval: float = INTERVAL) -> None:
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, loop.time() - asked))
