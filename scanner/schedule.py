"""When is a machine due for its next scan? (pure)

Each machine owns a fixed slot inside the cadence window (by default 24 h), derived from its
id, so a fleet's scans spread evenly over the day instead of all starting at midnight. A
machine is due when a slot time has passed since its last scan started; a machine never
scanned is due at once (the onboarding baseline); a machine whose last scan failed is due
again after ``retry_after`` (a failed scan leaves it unmonitored, so it does not wait a whole
cadence); a machine with a scan in flight is never due.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def slot_offset(machine_key: str, cadence: timedelta) -> timedelta:
    """The machine's fixed offset inside the cadence window (stable across restarts)."""
    digest = hashlib.sha256(machine_key.encode()).digest()
    seconds = int(cadence.total_seconds())
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % max(seconds, 1))


def last_slot(now: datetime, offset: timedelta, cadence: timedelta) -> datetime:
    """The most recent slot time at or before ``now``."""
    since = now - (EPOCH + offset)
    periods = since // cadence
    return EPOCH + offset + periods * cadence


@dataclass(frozen=True, slots=True)
class MachineSchedule:
    """What the planner knows of one machine."""

    key: str                          # stable identity (the machine id as text)
    last_started: datetime | None     # start of its last scan, any outcome but in flight
    in_flight: bool                   # a scan is snapshotting, queued or running
    enabled: bool = True
    last_failed: bool = False         # its most recent scan failed


def is_due(machine: MachineSchedule, now: datetime, cadence: timedelta,
           retry_after: timedelta = timedelta(hours=1)) -> bool:
    """True when the machine should be scanned now."""
    if not machine.enabled or machine.in_flight:
        return False
    if machine.last_started is None:
        return True
    if machine.last_failed and now - machine.last_started >= min(retry_after, cadence):
        return True
    return machine.last_started < last_slot(now, slot_offset(machine.key, cadence), cadence)


def due_machines(machines: list[MachineSchedule], now: datetime, cadence: timedelta,
                 limit: int | None = None,
                 retry_after: timedelta = timedelta(hours=1)) -> list[MachineSchedule]:
    """The due machines, the longest waiting first (never scanned before all others)."""
    due = [m for m in machines if is_due(m, now, cadence, retry_after)]
    due.sort(key=lambda m: (m.last_started is not None, m.last_started or EPOCH, m.key))
    return due if limit is None else due[:limit]
