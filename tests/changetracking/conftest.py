"""Change-tracking tests run their scans on both databases: SQLite and PostgreSQL (the
inventory goes through the same set-based diff as files). The ``scan`` fixture of
``tests/conftest.py`` uses this ``repo``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    """A migrated repository on each database (overrides the SQLite-only one)."""
    url = (f"sqlite:///{tmp_path / 'snapfim.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    engine = make_engine(url)
    upgrade(engine)
    yield Repository(engine)
    engine.dispose()
