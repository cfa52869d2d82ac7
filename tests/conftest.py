"""Shared fixtures: a fresh SQLite-backed repository and a one-call scan of an image."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from scanner.diff import ChangeEvent
from scanner.entities import FileEntity
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.sources.local import open_local
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository, ScanRecord

MACHINE = "web-01"
PG_ADMIN_URL = os.environ.get("SNAPFIM_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def make_due(repo: Repository, days: int = 2) -> None:
    """Move every scan ``days`` back, so that the fleet's machines are due again (a cycle of
    tests that plans twice)."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from scanner.storage.tables import scan

    with repo.transaction() as conn:
        for scan_id, started in conn.execute(select(scan.c.id, scan.c.started_at)).all():
            conn.execute(update(scan).where(scan.c.id == scan_id)
                         .values(started_at=started - timedelta(days=days)))


def pytest_configure(config: pytest.Config) -> None:
    """Property tests draw the same examples on every run (no example database, no deadline
    on a busy machine); ``HYPOTHESIS_PROFILE=explore`` draws new examples each run."""
    settings.register_profile("snapfim", derandomize=True, database=None, deadline=None,
                              print_blob=True)
    settings.register_profile("explore", deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "snapfim"))


@pytest.fixture(autouse=True)
def _block_cache(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshot blocks kept between scans go to a directory of the test's own (never the
    user's cache directory, never shared with another test)."""
    monkeypatch.setenv("SNAPFIM_BLOCK_CACHE_DIR", str(tmp_path_factory.mktemp("blocks")))


def changes(source: ScanRecord | list[ChangeEvent]
            ) -> list[tuple[str, str, tuple[str, ...], dict[str, Any]]]:
    """Events as (category, path, fields_changed, {field: (before, after)}), for exact asserts."""
    out = []
    for e in source.events if isinstance(source, ScanRecord) else source:
        assert e.entity_type == "file"
        values: dict[str, Any] = {}
        if e.category == "modified":
            assert e.previous is not None and e.current is not None
            values = {f: (e.previous[f], e.current[f]) for f in e.fields_changed}
        out.append((e.category, e.path, e.fields_changed, values))
    return out


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the head revision, migrated once per session (~0.2 s)."""
    path = tmp_path_factory.mktemp("schema") / "template.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection checkpoints and removes the WAL
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.fixture
def repo(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Repository]:
    """An empty, migrated SQLite database in the test's tmp_path (a copy of the template;
    the recommended policy is not seeded yet: the first scan, or ``ensure_recommended``,
    does it)."""
    path = tmp_path / "db.sqlite"
    shutil.copyfile(migrated_sqlite, path)
    engine = make_engine(f"sqlite:///{path}")
    yield Repository(engine)
    engine.dispose()


@pytest.fixture
def scan(repo: Repository) -> Callable[[os.PathLike[str] | str], ScanRecord]:
    """``scan(image)``: scan a local image as the next state of machine ``web-01``."""

    def _scan(image: os.PathLike[str] | str) -> ScanRecord:
        with open_local(image) as source:
            return run_scan(repo, source, MACHINE, ScanOptions(hash_workers=1))

    return _scan


@pytest.fixture
def file_state(repo: Repository) -> Callable[[], dict[str, FileEntity]]:
    """``file_state()``: the file state recorded for ``web-01`` by its last scan."""

    def _state() -> dict[str, FileEntity]:
        with repo.transaction() as conn:
            return repo.load_file_state(conn, repo.machine_id(conn, MACHINE))

    return _state


@contextmanager
def fresh_pg_database(prefix: str = "snapfim_test") -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url
