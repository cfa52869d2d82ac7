"""Database fixtures: a fresh SQLite file and a fresh PostgreSQL database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository

PG_ADMIN_URL = os.environ.get("SNAPFIM_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"snapfim_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
