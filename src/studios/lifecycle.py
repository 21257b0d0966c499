"""Deployment states and the transitions allowed between them: a table, nothing else.

    pending ──> running ──> sleeping ──> pending (woken)
       │    <──    │           │
       │ (its node │           │
       │  was lost)│           │
       └───────────┴───────────┴──> terminated (final)

A same-state change (pending -> pending, running -> running) only updates the message
("cloning ...", "starting", "waiting for the app on port N")."""

from __future__ import annotations

STATES = ("pending", "running", "terminated", "sleeping")
ACTIVE = ("pending", "running")
"""States in which a workload exists (or is being made) and counts as the studio's active one."""

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"pending", "running", "terminated"}),
    "running": frozenset({"running", "sleeping", "terminated", "pending"}),
    "sleeping": frozenset({"pending", "terminated"}),
    "terminated": frozenset(),
}
SOURCES: dict[str, frozenset[str]] = {new: frozenset(s for s, targets in TRANSITIONS.items() if new in targets) for new in STATES}
"""The states each state may be reached from (the table above, read the other way)."""


def allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())
