"""Reading ``SNAPFIM_*`` environment variables: each value checked, and a bad one reported
as one :class:`~scanner.errors.ConfigError` line naming its variable (``NAME must be ...,
not 'value'``). Used by :mod:`scanner.settings`, :mod:`scanner.limits` and
:mod:`scanner.emitters.settings`."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from scanner.errors import ConfigError

N = TypeVar("N", int, float)


class EnvReader:
    """Reads ``SNAPFIM_*`` values, each checked with a message naming its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        """The variable's value; unset and empty both mean "the default"."""
        value = self.env.get(name)
        return value if value else None

    def number(self, name: str, kind: Callable[[str], N], default: N, *,
               unit: str = "", positive: bool = False,
               minimum: float | None = None, maximum: float | None = None,
               at_least: float = 0.0) -> N:
        """The variable as ``kind`` (int or float), finite and within the bounds given;
        ``default`` when unset or empty."""
        raw = self.raw(name)
        if raw is None:
            return default
        what = "a whole number" if kind is int else "a number"
        what += f" of {unit}" if unit else ""
        if positive:
            what += " greater than 0"
        elif minimum is not None and maximum is not None:
            what += f" between {minimum:g} and {maximum:g}"
        elif minimum is not None:
            what += f" of at least {minimum:g}" if not unit else f", at least {minimum:g}"
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be {what}, not {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be {what}, not {raw!r}")
        if ((positive and value <= 0) or (minimum is not None and value < minimum)
                or (maximum is not None and value > maximum)):
            raise ConfigError(f"{name} must be {what}, not {raw!r}")
        if value < at_least:
            raise ConfigError(f"{name} must be at least {at_least:.6g} {unit}, not {raw!r}")
        return value

    def url(self, name: str, default: str) -> str:
        """The variable as a ``scheme://...`` URL with a valid port, or ``default``."""
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            parts = urlsplit(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} is not a valid URL ({exc}): {raw!r}") from None
        if not parts.scheme or not raw.startswith(parts.scheme + "://"):
            raise ConfigError(f"{name} must be a URL such as redis://host:6379/0, not {raw!r}")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ConfigError(f"{name} has an invalid port: {raw!r}") from None
        return raw

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """The variable, one of ``choices``, or ``default``."""
        raw = self.raw(name)
        if raw is None:
            return default
        if raw not in choices:
            raise ConfigError(f"{name} must be {' or '.join(choices)}, not {raw!r}")
        return raw

    def jsonl_path(self, name: str) -> str | None:
        """A file path whose nearest existing directory is writable, or None when unset."""
        raw = self.raw(name)
        if raw is None:
            return None
        path = Path(raw).expanduser()
        if path.is_dir():
            raise ConfigError(f"{name} must name a file, not the directory {raw!r}")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{name}: cannot write {raw!r} ({parent} is not a writable "
                              "directory)")
        return raw
