"""Typed settings from the environment (``SNAPFIM_*``), built once and passed in.

Every variable is validated when the settings are built: a bad value is a
:class:`~scanner.errors.ConfigError` whose one-line message names the variable, its value and
what would be accepted (``SNAPFIM_CADENCE_HOURS must be a number of hours greater than 0, not
'0'``), never a traceback later in the command that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from scanner.emitters.settings import AlertSettings, DeliveryConfig
from scanner.envreader import EnvReader
from scanner.errors import ConfigError
from scanner.limits import Limits

EVENT_FORMATS = ("configchange", "ocsf")
DATABASE_BACKENDS = ("sqlite", "postgresql", "postgres")


def default_data_dir() -> Path:
    """The user's data directory for snapfim (``~/.local/share/snapfim`` on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("snapfim", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded defaults.

    ``SNAPFIM_DATABASE_URL``   SQLAlchemy URL, SQLite or PostgreSQL (default: SQLite in the
                               data directory)
    ``SNAPFIM_DATA_DIR``       where the embedded database and demo images live (created;
                               must be writable)
    ``SNAPFIM_HASH_WORKERS``   processes hashing file content, 1 or more (default: CPU count,
                               at most 4)
    ``SNAPFIM_BROKER_URL``     Celery broker, ``scheme://...`` (default
                               ``redis://127.0.0.1:6379/0``; amqp:// works)
    ``SNAPFIM_CADENCE_HOURS``  hours between two scans of a machine, > 0 (default 24)
    ``SNAPFIM_PLAN_SECONDS``   how often the planner looks for due machines, > 0 (default 60)
    ``SNAPFIM_DISCOVERY_MINUTES``  how often accounts are re-discovered, > 0 (default 30)
    ``SNAPFIM_KEEP_SNAPSHOTS`` snapshots kept per disk after a scan, 0 or more (default 1)
    ``SNAPFIM_SCAN_TIME_LIMIT`` seconds a scan task may run, 1 or more (default 10800)
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
        """Read and validate settings from ``environ`` (default ``os.environ``).

        Raises ``ConfigError`` naming the variable when a value cannot work.
        """
        env = os.environ if environ is None else environ
        read = EnvReader(env)
        explicit_dir = read.raw("SNAPFIM_DATA_DIR")
        data_dir = Path(explicit_dir or default_data_dir()).expanduser()
        url = read.raw("SNAPFIM_DATABASE_URL")
        if url is None:
            _check_writable_dir("SNAPFIM_DATA_DIR", data_dir)
            url = f"sqlite:///{data_dir / 'snapfim.db'}"
        else:
            if explicit_dir is not None:
                _check_writable_dir("SNAPFIM_DATA_DIR", data_dir)
            _check_database_url(url)
        return cls(
            database_url=url, data_dir=data_dir,
            hash_workers=read.number("SNAPFIM_HASH_WORKERS", int, min(os.cpu_count() or 1, 4),
                                     minimum=1),
            broker_url=read.url("SNAPFIM_BROKER_URL", cls.broker_url),
            cadence_hours=read.number("SNAPFIM_CADENCE_HOURS", float, cls.cadence_hours,
                                      unit="hours", positive=True, at_least=1e-6 / 3600),
            plan_seconds=read.number("SNAPFIM_PLAN_SECONDS", float, cls.plan_seconds,
                                     unit="seconds", positive=True),
            discovery_minutes=read.number("SNAPFIM_DISCOVERY_MINUTES", float,
                                          cls.discovery_minutes, unit="minutes", positive=True),
            keep_snapshots=read.number("SNAPFIM_KEEP_SNAPSHOTS", int, cls.keep_snapshots,
                                       minimum=0),
            scan_time_limit=read.number("SNAPFIM_SCAN_TIME_LIMIT", int, cls.scan_time_limit,
                                        unit="seconds", minimum=1),
            events_jsonl=read.jsonl_path("SNAPFIM_EVENTS_JSONL"),
            events_format=read.choice("SNAPFIM_EVENTS_FORMAT", EVENT_FORMATS,
                                      cls.events_format),
            limits=Limits.from_env(env), alerts=AlertSettings.from_env(env))

    def fleet(self) -> FleetSettings:
        """The knobs of the fleet cycle."""
        return FleetSettings(cadence=timedelta(hours=self.cadence_hours),
                             discovery_interval=timedelta(minutes=self.discovery_minutes),
                             keep_snapshots=self.keep_snapshots,
                             stale_after=timedelta(seconds=self.scan_time_limit, hours=6),
                             hash_workers=self.hash_workers, jsonl_path=self.events_jsonl,
                             output_format=self.events_format,
                             limits=self.limits, alerts=self.alerts)


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """Knobs of the fleet service (:mod:`scanner.cycle`), from :meth:`Settings.fleet`."""

    cadence: timedelta = timedelta(hours=24)
    discovery_interval: timedelta = timedelta(minutes=30)
    max_new_scans: int = 100           # per planning round
    keep_snapshots: int = 1            # per disk, as parents for incremental scans
    snapshot_retention: timedelta = timedelta(days=3)  # tagged snapshots older: swept
    stale_after: timedelta = timedelta(hours=9)  # in flight longer: swept as failed
    max_attempts: int = 3              # deliveries of one scan before it is given up
    retry_failed_after: timedelta = timedelta(hours=1)
    hash_workers: int = 1
    jsonl_path: str | None = None
    output_format: str = "configchange"
    limits: Limits = Limits()
    alerts: AlertSettings = AlertSettings()

    @property
    def delivery(self) -> DeliveryConfig:
        """The sinks events and alerts go to."""
        return DeliveryConfig(self.jsonl_path, self.output_format, self.alerts)

    @property
    def stale_machine_after(self) -> timedelta:
        """A machine without a successful scan for this long is alerted (default 2 cadences)."""
        if self.alerts.stale_hours is not None:
            return timedelta(hours=self.alerts.stale_hours)
        return 2 * self.cadence


def _check_writable_dir(name: str, path: Path) -> None:
    """Create ``path`` if needed; it must be a writable directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{name}={str(path)!r}: cannot create the directory "
                          f"({reason})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}={str(path)!r}: the directory is not writable")


def _check_database_url(url: str) -> None:
    """A URL SQLAlchemy parses, for a backend snapfim supports; a SQLite file's directory is
    created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError("SNAPFIM_DATABASE_URL is not a database URL such as "
                          f"postgresql://user@host/db or sqlite:///path, not {url!r}") from None
    if parsed.get_backend_name() not in DATABASE_BACKENDS:
        raise ConfigError(f"SNAPFIM_DATABASE_URL: {parsed.get_backend_name()!r} databases are "
                          "not supported (use postgresql:// or sqlite:///)")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _check_writable_dir("SNAPFIM_DATABASE_URL", Path(parsed.database).expanduser().parent)
