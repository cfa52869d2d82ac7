"""The summary's change counts, kept while the data they were read from is unchanged.

The counts of a window only change when a scan commits events or a machine goes away, which
:func:`scanner.storage.queries.data_version` (four primary-key reads) tells; a cached entry
is used only while that version is the one it was computed at, so it is never stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from scanner.storage import queries

MAX_ENTRIES = 32


class SummaryCache:
    """:func:`queries.change_summary` results by window, valid for one data version."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self.hits = 0

    def change_summary(self, conn: Connection, *, since: datetime, until: datetime | None,
                       top: int) -> dict[str, Any]:
        """The counts of ``[since, until)``, from the cache when nothing changed since."""
        key = (since, until, top, queries.data_version(conn))
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        result = queries.change_summary(conn, since=since, until=until, top=top)
        with self._lock:
            self._entries[key] = result
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return result
