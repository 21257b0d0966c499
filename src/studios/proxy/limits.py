"""How often one client address may exchange display-URL tokens: a token bucket per address.

`AttemptLimiter.allow(address)` spends one attempt and answers how long to wait when none is
left. Buckets live in memory (one proxy process each; a restart forgets them), refill at
`per_minute / 60` attempts per second up to `per_minute`, and idle full buckets are dropped,
so the table holds only addresses seen in the last minute. Nothing here does I/O.
"""

from __future__ import annotations

import math
import time


class AttemptLimiter:
    """At most `per_minute` attempts per address in any minute, in bursts of up to that many
    (0 disables the limit)."""

    def __init__(self, per_minute: int, max_addresses: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_addresses = max_addresses
        self._buckets: dict[bytes, tuple[float, float]] = {}
        """address -> (tokens left, monotonic time of that count)."""

    def allow(self, address: bytes, now: float | None = None) -> int:
        """0 when the attempt may go ahead (and is counted), else the seconds to wait."""
        if self.capacity <= 0:
            return 0
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(address, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        if len(self._buckets) >= self.max_addresses and address not in self._buckets:
            self._prune(now)
        self._buckets[address] = (tokens - 1.0, now)
        return 0

    def _prune(self, now: float) -> None:
        """Drop addresses whose bucket has refilled (they are indistinguishable from new ones);
        if every address is still limited, drop the oldest half rather than grow without end."""
        full = [a for a, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.capacity]
        for address in full:
            del self._buckets[address]
        if len(self._buckets) >= self.max_addresses:
            for address in list(self._buckets)[: self.max_addresses // 2]:
                del self._buckets[address]
