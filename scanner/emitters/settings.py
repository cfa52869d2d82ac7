"""Settings of the alert sinks and their delivery (``SNAPFIM_SYSLOG_*``, ``SNAPFIM_WEBHOOK_*``,
``SNAPFIM_DELIVERY_*``, ``SNAPFIM_STALE_HOURS``), validated with one-line errors naming the
variable, and :class:`DeliveryConfig`, the sinks a process delivers to. Secrets are never
settings themselves: the webhook's bearer token and HMAC key are read from the environment
variables *named* by ``SNAPFIM_WEBHOOK_BEARER_ENV`` / ``SNAPFIM_WEBHOOK_HMAC_ENV`` and live in
memory only (never in the database).

``SNAPFIM_SYSLOG_URL``        ``udp://host[:514]`` or ``tcp://host[:601]`` (RFC 5424 messages;
                              TCP frames them by octet counting, RFC 6587)
``SNAPFIM_SYSLOG_FACILITY``   a name (``local0`` default, ``authpriv``, ``daemon``...) or 0-23
``SNAPFIM_WEBHOOK_URL``       ``https://...`` (``http://`` only to a loopback address)
``SNAPFIM_WEBHOOK_CA_BUNDLE`` PEM file of the CA(s) to trust for the webhook (a private CA)
``SNAPFIM_WEBHOOK_BEARER_ENV`` name of the variable holding a bearer token
``SNAPFIM_WEBHOOK_HMAC_ENV``  name of the variable holding an HMAC-SHA256 key
``SNAPFIM_DELIVERY_BATCH``    records per batch (default 100, at most 10000)
``SNAPFIM_DELIVERY_TIMEOUT``  seconds one send may take (default 10)
``SNAPFIM_DELIVERY_RETRY_SECONDS``  first retry delay after a failed send (default 30), doubling
``SNAPFIM_DELIVERY_RETRY_MAX_SECONDS``  longest retry delay (default 3600)
``SNAPFIM_DELIVERY_SECONDS``  how often beat runs the ``deliver`` task (default 60)
``SNAPFIM_STALE_HOURS``       a fleet machine with no successful scan for this long is alerted
                              (default: twice ``SNAPFIM_CADENCE_HOURS``)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scanner.envreader import EnvReader
from scanner.errors import ConfigError

if TYPE_CHECKING:
    from scanner.emitters.item import Sink
    from scanner.settings import Settings

FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
              "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12,
              "audit": 13, "alert": 14, "clock": 15, **{f"local{i}": 16 + i for i in range(8)}}
SYSLOG_PORTS = {"udp": 514, "tcp": 601}
MAX_BATCH = 10_000


@dataclass(frozen=True)
class SyslogTarget:
    """Where syslog messages go."""

    transport: str          # udp | tcp
    host: str
    port: int


@dataclass(frozen=True)
class AlertSettings:
    """The syslog and webhook sinks and how deliveries are retried (see the module doc)."""

    syslog: SyslogTarget | None = None
    syslog_facility: int = FACILITIES["local0"]
    webhook_url: str | None = None
    webhook_ca_bundle: Path | None = None
    webhook_bearer: str | None = field(default=None, repr=False)
    webhook_hmac_key: bytes | None = field(default=None, repr=False)
    batch: int = 100
    timeout: float = 10.0
    retry_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    delivery_seconds: float = 60.0
    stale_hours: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        """Read and check the alert settings; ConfigError names the variable at fault."""
        read = EnvReader(env)
        syslog_url = env.get("SNAPFIM_SYSLOG_URL") or None
        webhook_url = env.get("SNAPFIM_WEBHOOK_URL") or None
        ca_text = env.get("SNAPFIM_WEBHOOK_CA_BUNDLE") or None
        ca_bundle = Path(ca_text).expanduser() if ca_text else None
        if ca_bundle is not None and not ca_bundle.is_file():
            raise ConfigError(f"SNAPFIM_WEBHOOK_CA_BUNDLE: {ca_bundle} is not a readable file")
        if webhook_url is not None:
            check_webhook_url(webhook_url)
        bearer = _secret(env, "SNAPFIM_WEBHOOK_BEARER_ENV")
        hmac_key = _secret(env, "SNAPFIM_WEBHOOK_HMAC_ENV")
        retry = _number(read, "SNAPFIM_DELIVERY_RETRY_SECONDS", cls.retry_seconds, minimum=0)
        retry_max = _number(read, "SNAPFIM_DELIVERY_RETRY_MAX_SECONDS", cls.retry_max_seconds,
                            minimum=0)
        if retry_max < retry:
            raise ConfigError("SNAPFIM_DELIVERY_RETRY_MAX_SECONDS must be at least "
                              "SNAPFIM_DELIVERY_RETRY_SECONDS")
        stale_text = env.get("SNAPFIM_STALE_HOURS") or None
        return cls(
            syslog=parse_syslog_url(syslog_url) if syslog_url else None,
            syslog_facility=parse_facility(env.get("SNAPFIM_SYSLOG_FACILITY") or "local0"),
            webhook_url=webhook_url, webhook_ca_bundle=ca_bundle, webhook_bearer=bearer,
            webhook_hmac_key=hmac_key.encode() if hmac_key is not None else None,
            batch=int(_number(read, "SNAPFIM_DELIVERY_BATCH", cls.batch, minimum=1,
                              maximum=MAX_BATCH, whole=True)),
            timeout=_number(read, "SNAPFIM_DELIVERY_TIMEOUT", cls.timeout, minimum=0.1,
                            maximum=600),
            retry_seconds=retry, retry_max_seconds=retry_max,
            delivery_seconds=_number(read, "SNAPFIM_DELIVERY_SECONDS", cls.delivery_seconds,
                                     minimum=1),
            stale_hours=None if stale_text is None else _number(
                read, "SNAPFIM_STALE_HOURS", 0.0, minimum=0.01))


@dataclass(frozen=True)
class DeliveryConfig:
    """Which sinks are configured, the record format, and the retry policy."""

    jsonl_path: str | None = None
    fmt: str = "configchange"
    alerts: AlertSettings = AlertSettings()

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        """The delivery configuration of the settings (SNAPFIM_EVENTS_*, alert sinks)."""
        return cls(settings.events_jsonl, settings.events_format, settings.alerts)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the configured sinks."""
        return tuple(s for s, on in (("jsonl", self.jsonl_path), ("syslog", self.alerts.syslog),
                                     ("webhook", self.alerts.webhook_url)) if on)

    def sinks(self) -> list[Sink]:
        """The configured sinks, ready to send (each sink's module loaded when it is)."""
        a = self.alerts
        out: list[Sink] = []
        if self.jsonl_path:
            from scanner.emitters.sinks import JsonlSink

            out.append(JsonlSink(self.jsonl_path))
        if a.syslog is not None:
            from scanner.emitters.syslog import SyslogSink

            out.append(SyslogSink(a.syslog, a.syslog_facility, a.timeout))
        if a.webhook_url:
            from scanner.emitters.webhook import WebhookSink

            out.append(WebhookSink(a.webhook_url, timeout=a.timeout, ca_bundle=a.webhook_ca_bundle,
                                   bearer=a.webhook_bearer, hmac_key=a.webhook_hmac_key))
        return out

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait after the ``attempts``-th failed send."""
        seconds = self.alerts.retry_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.alerts.retry_max_seconds))


def parse_syslog_url(url: str) -> SyslogTarget:
    """``udp://host[:port]`` / ``tcp://host[:port]`` (IPv6 in brackets)."""
    parts = urlsplit(url)
    if parts.scheme not in SYSLOG_PORTS:
        raise ConfigError(f"SNAPFIM_SYSLOG_URL {url!r}: use udp://host:514 or tcp://host:601")
    try:
        port = parts.port or SYSLOG_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"SNAPFIM_SYSLOG_URL {url!r}: invalid port") from exc
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigError(f"SNAPFIM_SYSLOG_URL {url!r}: use udp://host:514 or tcp://host:601")
    return SyslogTarget(parts.scheme, parts.hostname, port)


def parse_facility(text: str) -> int:
    """A syslog facility by name or number (0-23)."""
    value = text.strip().lower()
    if value in FACILITIES:
        return FACILITIES[value]
    if value.isdigit() and 0 <= int(value) <= 23:
        return int(value)
    raise ConfigError(f"SNAPFIM_SYSLOG_FACILITY {text!r}: use a name such as local0, daemon, "
                      "authpriv, or a number 0-23")


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> None:
    """HTTPS anywhere; plain HTTP only to a loopback address (a local relay or a test)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise ConfigError(f"SNAPFIM_WEBHOOK_URL {url!r}: invalid port") from exc
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ConfigError(f"SNAPFIM_WEBHOOK_URL {url!r}: use https://host/path")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"SNAPFIM_WEBHOOK_URL {url!r}: plain http is only allowed to a "
                          "loopback address (127.0.0.1, ::1, localhost); use https")
    if parts.username or parts.password:
        raise ConfigError("SNAPFIM_WEBHOOK_URL: no credentials in the URL; use "
                          "SNAPFIM_WEBHOOK_BEARER_ENV or SNAPFIM_WEBHOOK_HMAC_ENV")


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """The value of the variable whose name the setting ``name`` holds."""
    ref = env.get(name) or None
    if ref is None:
        return None
    value = env.get(ref)
    if not value:
        raise ConfigError(f"{name}={ref}: the variable {ref} is not set or empty")
    return value


def _number(read: EnvReader, name: str, default: float, *, minimum: float,
            maximum: float | None = None, whole: bool = False) -> float:
    if whole:
        return read.number(name, int, int(default), minimum=minimum, maximum=maximum)
    return read.number(name, float, default, minimum=minimum, maximum=maximum)
