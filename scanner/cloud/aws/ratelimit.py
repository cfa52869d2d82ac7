"""Request rates below the EBS direct API quotas: one token bucket per account, region and
API family, shared by every reader of the process.

Quotas (per account and region, per second): GetSnapshotBlock 1,000, List* 50. The buckets
are per process; a scan reads in up to three (the scanning process and two hash workers), so
each keeps to under a third of the quota (300 blocks/s = ~157 MB/s per process). Several scan
workers on one account may go past it: the service then throttles, and throttled requests
are retried with backoff.
"""

from __future__ import annotations

import threading
import time

from scanner.forksafe import reset_in_child

GET_BLOCK_RATE = 300.0
LIST_RATE = 15.0


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait until a request may go out."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)


_buckets: dict[tuple[str, str, str], TokenBucket] = {}
_lock = threading.Lock()


def _forget_after_fork() -> None:
    """In a forked child (a hash worker): new buckets and lock. A lock another thread of the
    parent held at the fork would stay locked in the child forever."""
    global _lock
    _lock = threading.Lock()
    _buckets.clear()


def limiter(account: str | None, region: str, family: str) -> TokenBucket:
    """The process's bucket for ``family`` ("get" or "list") of one account and region."""
    key = (account or "", region, family)
    reset_in_child(_forget_after_fork)
    with _lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(GET_BLOCK_RATE if family == "get" else LIST_RATE)
            _buckets[key] = bucket
        return bucket
