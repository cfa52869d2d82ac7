"""The one rule for times read from a disk: integer nanoseconds since the Unix epoch that
storage can hold.

Stored times are signed 64-bit integers (SQLite INTEGER, PostgreSQL ``bigint``): nanoseconds
from 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z. Every format holds
times outside that range: a FILETIME (100 ns since 1601) up to the year 30828, an ext4 time
with epoch bits up to 2446, an XFS bigtime up to 2486. A time outside the range is stored as
the nearest bound (:data:`NS_MIN`, :data:`NS_MAX`): no real system writes those exact values,
so they read as "out of range" (``2262-04-11T23:47:16.854775807Z``), a time moved out of the
range (a timestomp to 2300) is still a change of that field, and every scan of the same
disk gives the same value (no traceback, no change reported on every scan). Two times both
beyond the same bound compare equal: the move into the range was the change reported.
"""

from __future__ import annotations

NS_MIN = -(1 << 63)
NS_MAX = (1 << 63) - 1


def storable_ns(ns: int) -> int:
    """``ns`` (nanoseconds since the epoch) clamped to what a signed 64-bit integer holds."""
    return NS_MIN if ns < NS_MIN else NS_MAX if ns > NS_MAX else ns


FILETIME_EPOCH = 116_444_736_000_000_000  # 1601-01-01 -> 1970-01-01 in 100 ns units


def filetime_ns(filetime: int) -> int:
    """A Windows FILETIME (100 ns since 1601) as storable nanoseconds since the epoch."""
    return storable_ns((filetime - FILETIME_EPOCH) * 100)
