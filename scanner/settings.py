"""Typed settings from the environment (``SNAPFIM_*``), built once and passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.emitters.settings import AlertSettings
from scanner.errors import ConfigError
from scanner.limits import Limits

if TYPE_CHECKING:
    from scanner.cycle import FleetSettings


def default_data_dir() -> Path:
    """The user's data directory for snapfim (``~/.local/share/snapfim`` on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("snapfim", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded defaults.

    ``SNAPFIM_DATABASE_URL``   SQLAlchemy URL (default: SQLite in the data directory)
    ``SNAPFIM_DATA_DIR``       where the embedded database and demo images live
    ``SNAPFIM_HASH_WORKERS``   processes hashing file content (default: CPU count, at most 4)
    ``SNAPFIM_BROKER_URL``     Celery broker (default ``redis://127.0.0.1:6379/0``; amqp:// works)
    ``SNAPFIM_CADENCE_HOURS``  hours between two scans of a machine (default 24)
    ``SNAPFIM_PLAN_SECONDS``   how often the planner looks for due machines (default 60)
    ``SNAPFIM_DISCOVERY_MINUTES``  how often accounts are re-discovered (default 30)
    ``SNAPFIM_KEEP_SNAPSHOTS`` snapshots kept per disk after a scan (default 1)
    ``SNAPFIM_SCAN_TIME_LIMIT`` seconds a scan task may run (default 10800)
    ``SNAPFIM_EVENTS_JSONL``   append every committed event to this JSON-lines file
    ``SNAPFIM_EVENTS_FORMAT``  ``configchange`` (default) or ``ocsf``
    ``SNAPFIM_MAX_*``          bounds on what a scanned disk can make a scan do (scanner.limits)
    ``SNAPFIM_SYSLOG_*``, ``SNAPFIM_WEBHOOK_*``, ``SNAPFIM_DELIVERY_*``, ``SNAPFIM_STALE_HOURS``
                               alert sinks and delivery (scanner.emitters.settings)
    """

    database_url: str
    data_dir: Path
    hash_workers: int
    broker_url: str = "redis://127.0.0.1:6379/0"
    cadence_hours: float = 24.0
    plan_seconds: float = 60.0
    discovery_minutes: float = 30.0
    keep_snapshots: int = 1
    scan_time_limit: int = 10800
    events_jsonl: str | None = None
    events_format: str = "configchange"
    limits: Limits = Limits()
    alerts: AlertSettings = AlertSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("SNAPFIM_DATA_DIR") or default_data_dir()).expanduser()
        url = env.get("SNAPFIM_DATABASE_URL") or f"sqlite:///{data_dir / 'snapfim.db'}"
        try:
            workers = int(env.get("SNAPFIM_HASH_WORKERS") or min(os.cpu_count() or 1, 4))
        except ValueError as exc:
            raise ConfigError("SNAPFIM_HASH_WORKERS must be a whole number") from exc
        if workers < 1:
            raise ConfigError("SNAPFIM_HASH_WORKERS must be 1 or more")
        try:
            return cls(
                database_url=url, data_dir=data_dir, hash_workers=workers,
                broker_url=env.get("SNAPFIM_BROKER_URL") or cls.broker_url,
                cadence_hours=float(env.get("SNAPFIM_CADENCE_HOURS") or cls.cadence_hours),
                plan_seconds=float(env.get("SNAPFIM_PLAN_SECONDS") or cls.plan_seconds),
                discovery_minutes=float(env.get("SNAPFIM_DISCOVERY_MINUTES")
                                        or cls.discovery_minutes),
                keep_snapshots=int(env.get("SNAPFIM_KEEP_SNAPSHOTS") or cls.keep_snapshots),
                scan_time_limit=int(env.get("SNAPFIM_SCAN_TIME_LIMIT") or cls.scan_time_limit),
                events_jsonl=env.get("SNAPFIM_EVENTS_JSONL") or None,
                events_format=env.get("SNAPFIM_EVENTS_FORMAT") or cls.events_format,
                limits=Limits.from_env(env), alerts=AlertSettings.from_env(env))
        except ValueError as exc:
            raise ConfigError(f"invalid SNAPFIM_* setting: {exc}") from exc

    def fleet(self) -> FleetSettings:
        """The knobs of the fleet cycle."""
        from scanner.cycle import FleetSettings

        return FleetSettings(cadence=timedelta(hours=self.cadence_hours),
                             discovery_interval=timedelta(minutes=self.discovery_minutes),
                             keep_snapshots=self.keep_snapshots,
                             stale_after=timedelta(seconds=self.scan_time_limit, hours=6),
                             hash_workers=self.hash_workers, jsonl_path=self.events_jsonl,
                             output_format=self.events_format,
                             limits=self.limits, alerts=self.alerts)
