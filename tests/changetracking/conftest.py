"""Change-tracking tests run their scans on both databases: SQLite and PostgreSQL (the
inventory goes through the same set-based diff as files)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository, ScanRecord
from tests.conftest import MACHINE


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    """A migrated repository on each database (overrides the SQLite-only one)."""
    url = (f"sqlite:///{tmp_path / 'snapfim.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    engine = make_engine(url)
    upgrade(engine)
    yield Repository(engine)
    engine.dispose()


@pytest.fixture
def scan(repo: Repository) -> Callable[[os.PathLike[str] | str], ScanRecord]:
    """``scan(image)``: scan a local image as the next state of machine ``web-01``."""

    def _scan(image: os.PathLike[str] | str) -> ScanRecord:
        with open_local(image) as source:
            return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1))

    return _scan
