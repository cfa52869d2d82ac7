"""What every request handler reads: the repository, the stale threshold and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from scanner.storage.repository import Repository


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WebContext:
    """The application's read-only view of the database."""

    repo: Repository
    stale_after: timedelta
    now: Callable[[], datetime] = _now


def context(request: Request) -> WebContext:
    """The context the application was built with."""
    ctx: WebContext = request.app.state.snapfim
    return ctx
