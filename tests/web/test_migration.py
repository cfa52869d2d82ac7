"""Migration 0007 creates the dashboard's indexes as scanner.storage.tables declares them,
and its downgrade drops them; SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from scanner.storage.db import alembic_config, make_engine, upgrade
from scanner.storage.tables import metadata

INDEXES = {("change_event", "ix_change_event_detected_at_id"),
           ("change_event", "ix_change_event_machine_id_detected_at_id"),
           ("change_event", "ix_change_event_entity_type_detected_at"),
           ("scan", "ix_scan_finished_at"), ("scan", "ix_scan_machine_id_id")}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'snapfim.db'}"
    return str(request.getfixturevalue("pg_url"))


def indexes(engine: object) -> set[tuple[str, str]]:
    found = inspect(engine)
    return {(t, i["name"]) for t in ("change_event", "scan")
            for i in found.get_indexes(t) if i["name"]}


def test_0007_creates_and_drops_the_dashboard_indexes(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert indexes(engine) >= INDEXES
        with warnings.catch_warnings(), engine.connect() as conn:
            warnings.simplefilter("ignore")           # expression indexes SQLite can't reflect
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        assert [d for d in diffs if any(name in repr(d) for _, name in INDEXES)] == []
        command.downgrade(alembic_config(engine), "0006")
        assert not INDEXES & indexes(engine)
        upgrade(engine)
        assert indexes(engine) >= INDEXES
    finally:
        engine.dispose()
