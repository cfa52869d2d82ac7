"""HTTP statuses of a cloud's REST reply, classified the same way for every provider.

- 401, 403: the credential (a SAS, a token, a role) is refused -> :class:`AccountAccessError`;
- 404: the snapshot or blob does not exist -> :class:`SourceNotFound`;
- 408, 429 and 5xx: throttling, timeouts, outages -> :class:`TransientSourceError`;
- anything else -> :class:`SourceError`.

:func:`retry_after` reads a ``Retry-After`` header (seconds, or an HTTP date) within a bound.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from scanner.errors import (
    AccountAccessError,
    SnapfimError,
    SourceError,
    SourceNotFound,
    TransientSourceError,
)

TRANSIENT_STATUSES = frozenset({408, 429})
MAX_HEADER = 64  # characters of a Retry-After value read, at most


def transient_status(status: int) -> bool:
    """Whether a retry may fix a reply of this status."""
    return status in TRANSIENT_STATUSES or status >= 500


def status_error(status: int, text: str) -> SnapfimError:
    """Our error for a failed reply of ``status``; ``text`` says what was done and why."""
    if status in (401, 403):
        return AccountAccessError(text)
    if status == 404:
        return SourceNotFound(text)
    if transient_status(status):
        return TransientSourceError(text)
    return SourceError(text)


def retry_after(value: str | None, limit: float, now: datetime | None = None) -> float | None:
    """The seconds a ``Retry-After`` header value asks to wait: delta-seconds (digits only)
    or an HTTP date (from ``now``), at least 0 and at most ``limit``; None when there is no
    value or it is neither (a hostile ``1e999``, ``nan``, ``-1`` or an overlong value)."""
    text = (value or "").strip()
    if not text or len(text) > MAX_HEADER:
        return None
    if text.isascii() and text.isdigit():
        return min(float(limit), float(int(text)))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(float(limit), seconds))
