"""Alert sink settings: parsed, and refused with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner import __version__
from scanner.emitters.settings import AlertSettings, DeliveryConfig, SyslogTarget
from scanner.emitters.syslog import frame, syslog_message, timestamp
from scanner.errors import ConfigError
from scanner.settings import Settings


def test_defaults_configure_no_sink() -> None:
    settings = AlertSettings.from_env({})
    assert settings == AlertSettings()
    assert DeliveryConfig(alerts=settings).names == ()
    assert Settings.from_env({"SNAPFIM_DATA_DIR": "/tmp/x"}).alerts == AlertSettings()


def test_everything_set(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    settings = AlertSettings.from_env({
        "SNAPFIM_SYSLOG_URL": "tcp://[::1]", "SNAPFIM_SYSLOG_FACILITY": "authpriv",
        "SNAPFIM_WEBHOOK_URL": "https://siem.example/hook", "SNAPFIM_WEBHOOK_CA_BUNDLE": str(ca),
        "SNAPFIM_WEBHOOK_BEARER_ENV": "TOKEN", "TOKEN": "s3cret",
        "SNAPFIM_WEBHOOK_HMAC_ENV": "KEY", "KEY": "k", "SNAPFIM_DELIVERY_BATCH": "7",
        "SNAPFIM_DELIVERY_TIMEOUT": "2.5", "SNAPFIM_DELIVERY_RETRY_SECONDS": "5",
        "SNAPFIM_DELIVERY_RETRY_MAX_SECONDS": "50", "SNAPFIM_DELIVERY_SECONDS": "30",
        "SNAPFIM_STALE_HOURS": "36"})
    assert settings == AlertSettings(
        syslog=SyslogTarget("tcp", "::1", 601), syslog_facility=10,
        webhook_url="https://siem.example/hook", webhook_ca_bundle=ca, webhook_bearer="s3cret",
        webhook_hmac_key=b"k", batch=7, timeout=2.5, retry_seconds=5, retry_max_seconds=50,
        delivery_seconds=30, stale_hours=36)
    assert "s3cret" not in repr(settings)           # secrets stay out of logs and reprs
    config = DeliveryConfig("/tmp/e.jsonl", alerts=settings)
    assert config.names == ("jsonl", "syslog", "webhook")
    assert [config.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 50]
    assert AlertSettings.from_env({"SNAPFIM_SYSLOG_URL": "udp://logs"}).syslog == SyslogTarget(
        "udp", "logs", 514)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x",
                                 "http://[::1]:9/x", "http://127.8.9.10/x"])
def test_plain_http_is_allowed_to_loopback_only(url: str) -> None:
    assert AlertSettings.from_env({"SNAPFIM_WEBHOOK_URL": url}).webhook_url == url


@pytest.mark.parametrize(("env", "message"), [
    ({"SNAPFIM_SYSLOG_URL": "syslog.example:514"}, "SNAPFIM_SYSLOG_URL 'syslog.example:514': "
     "use udp://host:514 or tcp://host:601"),
    ({"SNAPFIM_SYSLOG_URL": "tcp://h:99999"}, "SNAPFIM_SYSLOG_URL 'tcp://h:99999': invalid port"),
    ({"SNAPFIM_SYSLOG_URL": "tls://h:6514"}, "SNAPFIM_SYSLOG_URL 'tls://h:6514': use "
     "udp://host:514 or tcp://host:601"),
    ({"SNAPFIM_SYSLOG_FACILITY": "local9"}, "SNAPFIM_SYSLOG_FACILITY 'local9': use a name such "
     "as local0, daemon, authpriv, or a number 0-23"),
    ({"SNAPFIM_SYSLOG_FACILITY": "24"}, "SNAPFIM_SYSLOG_FACILITY '24'"),
    ({"SNAPFIM_WEBHOOK_URL": "http://10.0.0.5/hook"}, "SNAPFIM_WEBHOOK_URL "
     "'http://10.0.0.5/hook': plain http is only allowed to a loopback address (127.0.0.1, "
     "::1, localhost); use https"),
    ({"SNAPFIM_WEBHOOK_URL": "ftp://h/x"}, "SNAPFIM_WEBHOOK_URL 'ftp://h/x': use https://"),
    ({"SNAPFIM_WEBHOOK_URL": "https://u:p@h/x"}, "SNAPFIM_WEBHOOK_URL: no credentials in the "
     "URL"),
    ({"SNAPFIM_WEBHOOK_CA_BUNDLE": "/nonexistent/ca.pem"}, "SNAPFIM_WEBHOOK_CA_BUNDLE: "
     "/nonexistent/ca.pem is not a readable file"),
    ({"SNAPFIM_WEBHOOK_BEARER_ENV": "NOPE"}, "SNAPFIM_WEBHOOK_BEARER_ENV=NOPE: the variable "
     "NOPE is not set or empty"),
    ({"SNAPFIM_WEBHOOK_HMAC_ENV": "K", "K": ""}, "SNAPFIM_WEBHOOK_HMAC_ENV=K: the variable K"),
    ({"SNAPFIM_DELIVERY_BATCH": "0"},
     "SNAPFIM_DELIVERY_BATCH must be a whole"
     " number between 1 and 10000, not '0'"),
    ({"SNAPFIM_DELIVERY_BATCH": "2.5"},
     "SNAPFIM_DELIVERY_BATCH must be a whole"
     " number between 1 and 10000, not '2.5'"),
    ({"SNAPFIM_DELIVERY_TIMEOUT": "abc"},
     "SNAPFIM_DELIVERY_TIMEOUT must be a number"
     " between 0.1 and 600, not 'abc'"),
    ({"SNAPFIM_DELIVERY_TIMEOUT": "nan"},
     "SNAPFIM_DELIVERY_TIMEOUT must be a number"
     " between 0.1 and 600, not 'nan'"),
    ({"SNAPFIM_DELIVERY_RETRY_SECONDS": "-1"}, "SNAPFIM_DELIVERY_RETRY_SECONDS must be a "
     "number of at least 0, not '-1'"),
    ({"SNAPFIM_DELIVERY_RETRY_SECONDS": "100", "SNAPFIM_DELIVERY_RETRY_MAX_SECONDS": "10"},
     "SNAPFIM_DELIVERY_RETRY_MAX_SECONDS must be at least SNAPFIM_DELIVERY_RETRY_SECONDS"),
    ({"SNAPFIM_DELIVERY_SECONDS": "0"},
     "SNAPFIM_DELIVERY_SECONDS must be"
     " a number of at least 1, not '0'"),
    ({"SNAPFIM_STALE_HOURS": "0"},
     "SNAPFIM_STALE_HOURS must be a number"
     " of at least 0.01, not '0'"),
])
def test_bad_settings_are_one_line_naming_the_variable(env: dict[str, str],
                                                       message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AlertSettings.from_env(env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_syslog_message_escapes_structured_data_and_frames_by_octet_count() -> None:
    from datetime import UTC, datetime

    from scanner.emitters.item import Outgoing

    item = Outgoing(1, {"k": "ü"}, datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "modified", 5,
                    {"path": 'C:\\a"b]c', "skipped": None})
    message = syslog_message(item, 16, "host name")
    assert message == (b'<133>1 2026-01-02T03:04:05.000006Z hostname snapfim - modified '
                       b'[origin software="snapfim" swVersion="' + __version__.encode() + b'"]'
                       b'[snapfim@32473 path="C:\\\\a\\"b\\]c"] \xef\xbb\xbf{"k":"\xc3\xbc"}')
    assert frame(message) == str(len(message)).encode() + b" " + message
    assert timestamp(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000000Z"
