"""The one Retry-After reader of every cloud's HTTP replies (scanner.cloud.httpstatus):
delta-seconds or an HTTP date, bounded, hostile values ignored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scanner.cloud.azure import blobhttp, faults
from scanner.cloud.httpstatus import retry_after

NOW = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("17", 17.0), (" 5 ", 5.0), ("0", 0.0), ("999999999999", 60.0),
    ("Tue, 01 Dec 2026 18:00:30 GMT", 30.0),       # an HTTP date: from now
    ("Tue, 01 Dec 2026 17:00:00 GMT", 0.0),        # already past
    ("Wed, 02 Dec 2026 18:00:00 GMT", 60.0),       # bounded
    (None, None), ("", None), ("1e999", None), ("nan", None), ("inf", None), ("-1", None),
    ("2.5", None), ("\u0663", None), ("9" * 65, None), ("Tue, 01 Dec 2026 18:00:30", None),
    ("soon", None),
])
def test_retry_after_is_seconds_or_a_date_within_a_bound(value: str | None,
                                                         seconds: float | None) -> None:
    assert retry_after(value, 60.0, now=NOW) == seconds


def test_the_azure_modules_share_it() -> None:
    assert not hasattr(blobhttp, "_retry_after")
    assert faults.retry_after is blobhttp.retry_after is retry_after
