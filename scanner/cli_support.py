"""What the `snapfim` command modules share: the repository, argument checks, option types."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scanner.errors import ConfigError

if TYPE_CHECKING:  # the settings are read when a command runs, not to show help
    from scanner.settings import Settings


def open_repository(settings: Settings | None = None) -> Any:
    """The repository on the configured database, its schema brought up to date."""
    from scanner.settings import Settings
    from scanner.storage.db import make_engine, upgrade
    from scanner.storage.repository import Repository

    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return Repository(engine)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` ago, or an ISO 8601 date/time (UTC if no zone)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount),
                 "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]
        return now - delta
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"--since {text!r}: use 7d, 12h, 30m, 2w or an ISO date") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def not_empty(option: str) -> Any:
    """A typer callback refusing an empty (or blank) value of ``option`` (a usage error)."""

    def check(value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ConfigError(f"{option} cannot be empty")
        return value

    return check


MachineFilter = Annotated[str | None, typer.Option(
    "--machine", "-m", help="Only this machine (an unknown name is an error).",
    callback=not_empty("--machine"))]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
