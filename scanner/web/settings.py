"""Settings of ``snapfim serve``: where it listens and the bearer token it requires.

``SNAPFIM_WEB_TOKEN``       the bearer token every request must carry (``Authorization:
                            Bearer ...``); at least :data:`MIN_TOKEN_LENGTH` characters
``SNAPFIM_WEB_TOKEN_FILE``  a file holding the token instead (a secret mounted by the
                            orchestrator; surrounding whitespace is ignored)

Authentication is off only when the server binds a loopback address (127.0.0.1, ::1); on any
other address the process refuses to start without a token.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scanner.envreader import EnvReader
from scanner.errors import ConfigError

MIN_TOKEN_LENGTH = 16
_MAX_TOKEN_FILE = 4096


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback IP address literal (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured token (from the setting or its file), checked; None when neither is
    set. Raises :class:`ConfigError` naming the variable when it cannot be used."""
    read = EnvReader(os.environ if environ is None else environ)
    value, file = read.raw("SNAPFIM_WEB_TOKEN"), read.raw("SNAPFIM_WEB_TOKEN_FILE")
    if value is not None and file is not None:
        raise ConfigError("set SNAPFIM_WEB_TOKEN or SNAPFIM_WEB_TOKEN_FILE, not both")
    name = "SNAPFIM_WEB_TOKEN"
    if file is not None:
        name = "SNAPFIM_WEB_TOKEN_FILE"
        try:
            with Path(file).expanduser().open("rb") as handle:
                data = handle.read(_MAX_TOKEN_FILE + 1)
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {file!r} ({exc.strerror})") from None
        if len(data) > _MAX_TOKEN_FILE:
            raise ConfigError(f"{name}: {file!r} is larger than {_MAX_TOKEN_FILE} bytes")
        try:
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{name}: {file!r} is not UTF-8 text") from None
    if value is None:
        return None
    value = value.strip()
    if len(value) < MIN_TOKEN_LENGTH or not value.isprintable() or " " in value:
        raise ConfigError(f"{name} must be at least {MIN_TOKEN_LENGTH} printable characters "
                          "without spaces")
    return value


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Where ``snapfim serve`` listens and the token it requires (None: auth off)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None

    @classmethod
    def build(cls, host: str, port: int, environ: Mapping[str, str] | None = None
              ) -> WebSettings:
        """Settings for ``host:port``; without a token only a loopback address is allowed
        (:class:`ConfigError` otherwise)."""
        token = read_token(environ)
        if token is None and not is_loopback(host):
            raise ConfigError(f"serving on {host} needs a bearer token: set SNAPFIM_WEB_TOKEN "
                              "or SNAPFIM_WEB_TOKEN_FILE (or bind 127.0.0.1)")
        return cls(host, port, token)
