"""Syslog: RFC 5424 messages over UDP (RFC 5426, one message per datagram) or TCP with
octet-counting framing (RFC 6587: ``LEN SP MSG``).

Each message: ``<PRI>1 TIMESTAMP HOSTNAME snapfim - MSGID [origin ...][snapfim@32473 ...]
BOM JSON``. PRI is facility * 8 + severity; TIMESTAMP is when the change was detected (or the
alert raised), UTC with microseconds; HOSTNAME is the host running snapfim (the monitored
machine is the ``machine`` SD parameter); MSGID is ``added`` / ``removed`` / ``modified`` /
``scan-failed`` / ``scan-stale``; the message is the record (ConfigurationChange-style or
OCSF) as UTF-8 JSON. 32473 is the private enterprise number RFC 5612 reserves for
documentation: snapfim has none of its own.

A batch is accepted when every message was handed to the kernel: for TCP, when the write of
the whole batch completed; for UDP, when every datagram was sent (UDP itself gives no
delivery guarantee: prefer TCP).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

from scanner import __version__
from scanner.emitters.item import Outgoing
from scanner.emitters.settings import SyslogTarget
from scanner.errors import DeliveryError

APP_NAME = "snapfim"
SD_ID = "snapfim@32473"
BOM = b"\xef\xbb\xbf"
UDP_MAX = 65_000            # below the IPv4 limit of 65,507 bytes per datagram


def _sd_value(value: str) -> str:
    """An SD-PARAM value with ``"``, ``\\`` and ``]`` escaped (RFC 5424 §6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` long, else ``-``."""
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def timestamp(value: datetime) -> str:
    """RFC 5424 TIMESTAMP (RFC 3339, UTC, microseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def syslog_message(item: Outgoing, facility: int, hostname: str) -> bytes:
    """One RFC 5424 message (without transport framing)."""
    params = " ".join(f'{name}="{_sd_value(str(value))}"'
                      for name, value in item.params.items() if value is not None)
    header = (f"<{facility * 8 + item.severity}>1 {timestamp(item.time)} "
              f"{_header_field(hostname, 255)} {APP_NAME} - {_header_field(item.msgid, 32)} "
              f'[origin software="{APP_NAME}" swVersion="{_sd_value(__version__)}"]'
              f"[{SD_ID} {params}] ")
    body = json.dumps(item.record, separators=(",", ":"), ensure_ascii=False)
    message = header.encode() + BOM + body.encode()
    if len(message) > UDP_MAX:  # keep every transport's messages in bounds; say it was cut
        note = json.dumps({"truncated": True, "id": item.params.get("id"),
                           "message": item.params.get("path")}, separators=(",", ":"))
        message = header.encode() + BOM + note.encode()
    return message


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the length in decimal, a space, the message."""
    return str(len(message)).encode() + b" " + message


class SyslogSink:
    """Sends batches to a syslog receiver over UDP or TCP."""

    name = "syslog"

    def __init__(self, target: SyslogTarget, facility: int, timeout: float,
                 hostname: str | None = None) -> None:
        self.target = target
        self.facility = facility
        self.timeout = timeout
        self.hostname = hostname or socket.gethostname()

    def send(self, items: Sequence[Outgoing]) -> None:
        """Send every message; DeliveryError unless all were written."""
        messages = [syslog_message(item, self.facility, self.hostname) for item in items]
        where = f"{self.target.transport}://{self.target.host}:{self.target.port}"
        try:
            if self.target.transport == "tcp":
                with socket.create_connection((self.target.host, self.target.port),
                                              timeout=self.timeout) as conn:
                    conn.sendall(b"".join(frame(m) for m in messages))
                    conn.shutdown(socket.SHUT_WR)
            else:
                info = socket.getaddrinfo(self.target.host, self.target.port,
                                          type=socket.SOCK_DGRAM)[0]
                with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
                    sock.settimeout(self.timeout)
                    for message in messages:
                        sock.sendto(message, info[4])
        except OSError as exc:
            raise DeliveryError(f"syslog {where}: {exc}") from exc
