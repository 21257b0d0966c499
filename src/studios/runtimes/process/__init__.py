"""The host-process runtime: `runtime.py` (the `Runtime`), `command.py` (what runs), `logs.py`
(reading the log files) and `supervisor.py` (run by path as a script; standard library only)."""

from studios.runtimes.process.runtime import ProcessRuntime

__all__ = ["ProcessRuntime"]
