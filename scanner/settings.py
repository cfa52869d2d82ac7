"""Typed settings from the environment (``SNAPFIM_*``), built once and passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from scanner.errors import ConfigError


def default_data_dir() -> Path:
    """The user's data directory for snapfim (``~/.local/share/snapfim`` on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("snapfim", appauthor=False))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the embedded defaults.

    ``SNAPFIM_DATABASE_URL``   SQLAlchemy URL (default: SQLite in the data directory)
    ``SNAPFIM_DATA_DIR``       where the embedded database and demo images live
    ``SNAPFIM_HASH_WORKERS``   processes hashing file content (default: CPU count, at most 4)
    """

    database_url: str
    data_dir: Path
    hash_workers: int

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
        return cls(database_url=url, data_dir=data_dir, hash_workers=workers)
