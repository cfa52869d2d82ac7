"""What every request handler reads: the repository, the stale threshold and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import Connection

from scanner.storage import queries
from scanner.storage.repository import Repository
from scanner.web.cache import SummaryCache


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebContext:
    """The application's read-only view of the database."""

    repo: Repository
    stale_after: timedelta
    now: Callable[[], datetime] = _now
    cache: SummaryCache = field(default_factory=SummaryCache)

    def summary(self, conn: Connection, *, since: datetime, until: datetime | None = None,
                top: int = 10) -> dict[str, Any]:
        """:func:`queries.summary`, its change counts cached while the data is unchanged."""
        return {"since": since, "until": until, **queries.fleet_counts(conn),
                **self.cache.change_summary(conn, since=since, until=until, top=top)}

    def days_back(self, days: int) -> datetime:
        """Midnight UTC ``days - 1`` days before today: a window of ``days`` whole days."""
        today = self.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=days - 1)


def context(request: Request) -> WebContext:
    """The context the application was built with."""
    ctx: WebContext = request.app.state.snapfim
    return ctx
