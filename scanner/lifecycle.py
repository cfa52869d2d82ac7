"""The scan and snapshot lifecycles as state machines (pure).

Scan:      snapshotting -> queued -> running -> succeeded | partial | failed
           (snapshotting | queued | running) -> failed     on errors, timeouts or sweeps
           running -> running                               a redelivered task runs again
Snapshot:  requested -> pending -> ready -> scanning -> scanned -> deleted
           (requested | pending | ready | scanning) -> failed
           any state but deleted -> deleted                 cleanup and sweeps
"""

from __future__ import annotations

from scanner.errors import IllegalTransition

SCAN_ACTIVE = frozenset({"snapshotting", "queued", "running"})
SCAN_DONE = frozenset({"succeeded", "partial", "failed"})
_SCAN_NEXT: dict[str, frozenset[str]] = {
    "snapshotting": frozenset({"queued", "failed"}),
    "queued": frozenset({"running", "failed"}),
    "running": frozenset({"running", "succeeded", "partial", "failed"}),
}

SNAPSHOT_LIVE = frozenset({"requested", "pending", "ready", "scanning", "scanned"})
_SNAPSHOT_NEXT: dict[str, frozenset[str]] = {
    "requested": frozenset({"pending", "ready", "failed", "deleted"}),
    "pending": frozenset({"ready", "failed", "deleted"}),
    "ready": frozenset({"scanning", "failed", "deleted"}),
    "scanning": frozenset({"scanning", "scanned", "ready", "failed", "deleted"}),
    "scanned": frozenset({"deleted"}),
    "failed": frozenset({"deleted"}),
}


def check_scan(current: str, new: str) -> str:
    """Return ``new`` if a scan may go from ``current`` to it, else raise."""
    if new not in _SCAN_NEXT.get(current, frozenset()):
        raise IllegalTransition(f"scan cannot go from {current} to {new}")
    return new


def check_snapshot(current: str, new: str) -> str:
    """Return ``new`` if a snapshot may go from ``current`` to it, else raise."""
    if new not in _SNAPSHOT_NEXT.get(current, frozenset()):
        raise IllegalTransition(f"snapshot cannot go from {current} to {new}")
    return new
