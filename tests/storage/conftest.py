"""Storage tests run on both databases: a fresh SQLite file, a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'snapfim.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def repository(db_url: str) -> Iterator[Repository]:
    """A migrated repository on the parametrized database."""
    engine = make_engine(db_url)
    upgrade(engine)
    yield Repository(engine)
    engine.dispose()
