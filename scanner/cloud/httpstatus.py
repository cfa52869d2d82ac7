"""HTTP statuses of a cloud's REST reply, classified the same way for every provider.

- 401, 403: the credential (a SAS, a token, a role) is refused -> :class:`AccountAccessError`;
- 404: the snapshot or blob does not exist -> :class:`SourceNotFound`;
- 408, 429 and 5xx: throttling, timeouts, outages -> :class:`TransientSourceError`;
- anything else -> :class:`SourceError`.
"""

from __future__ import annotations

from scanner.errors import (
    AccountAccessError,
    SnapfimError,
    SourceError,
    SourceNotFound,
    TransientSourceError,
)

TRANSIENT_STATUSES = frozenset({408, 429})


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
