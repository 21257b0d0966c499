"""How a container ended: the engine's `State` turned into an `Exit` with a user's sentence.

Exit codes above 128 are read as "killed by signal N" (the init process and the shell both
report a signal death as 128 + N). An out-of-memory kill is exit 137 (SIGKILL) with the
engine's `OOMKilled`, or, when the engine missed it, with the parent cgroup's evidence: v2
counts OOM kills hierarchically; on v1 a peak within 2 % of the limit stands in for the counter.
`OOMKilled` alone is not enough: the engine sets it when any process of the container was
killed for memory, so an app that survived a child's OOM kill and later exited otherwise
(stopped with SIGTERM, exited 0) did not end by one (`docker/oom.py` reports the child's).
"""

from __future__ import annotations

import signal as signals
from typing import Any

from studios.runtimes.base import Exit
from studios.runtimes.docker import cgroups


def exit_message(code: int | None, signal: int | None, oom: bool, memory_mb: int | None) -> str:
    """The user-facing sentence for how a container ended."""
    if oom:
        return f"killed: out of memory (limit {memory_mb} MB)" if memory_mb else "killed: out of memory"
    if signal is not None:
        try:
            name = signals.Signals(signal).name
        except ValueError:
            return f"killed by signal {signal}"
        return f"killed by signal {signal} ({name})"
    return f"exited with code {code}"


def exit_of(state: dict[str, Any], memory_mb: int | None, paths: dict[str, str]) -> Exit:
    """The `Exit` of an ended container from its inspected `State`."""
    code = int(state.get("ExitCode") or 0)
    oom = bool(state.get("OOMKilled")) and code == 137
    if not oom and code == 137 and memory_mb:
        kills = cgroups.oom_kills(paths)
        peak = cgroups.peak_memory_bytes(paths)
        oom = bool(kills) or (kills is None and peak is not None and peak >= 0.98 * memory_mb * 2**20)
    if state.get("Error") and code != 0 and not oom:
        return Exit(code=code, signal=None, oom_killed=False, message=f"failed to start: {state['Error']}")
    return exit_of_code(code, oom, memory_mb)


def exit_of_code(code: int, oom: bool, memory_mb: int | None) -> Exit:
    """The `Exit` of a container's main process that ended with `code` (128 + N: signal N)."""
    signal = code - 128 if 128 < code < 160 else None
    return Exit(
        code=None if signal is not None else code,
        signal=signal,
        oom_killed=oom,
        message=exit_message(code, signal, oom, memory_mb),
    )


def to_json(outcome: Exit) -> dict[str, Any]:
    return {"code": outcome.code, "signal": outcome.signal, "oom_killed": outcome.oom_killed,
            "message": outcome.message}
