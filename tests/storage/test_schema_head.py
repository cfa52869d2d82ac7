"""The schema check of every command: a database at the migration scripts' head costs one
query, no Alembic; any other database is brought to the head by Alembic."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from scanner.storage.db import alembic_config, make_engine, script_head, upgrade


def _revision(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    engine = make_engine("sqlite://")
    assert script_head() == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    engine.dispose()


def test_a_database_at_the_head_is_not_handed_to_alembic(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    calls: list[str] = []
    monkeypatch.setattr(command, "upgrade", lambda _cfg, rev: calls.append(rev))
    upgrade(engine)
    engine.dispose()
    assert calls == []
    assert _revision(db_url) == script_head()


def test_a_database_behind_the_head_is_upgraded(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0005")
    assert _revision(db_url) == "0005"
    upgrade(engine)
    engine.dispose()
    assert _revision(db_url) == script_head()


def test_a_script_of_unusual_form_leaves_the_decision_to_alembic(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_a.py").write_text("revision = '0001'\ndown_revision = None\n")
    (versions / "0002_b.py").write_text("revision = '0002'\ndown_revision = '0001'\n")
    monkeypatch.setattr("scanner.storage.db.migrations_dir", lambda: tmp_path)
    assert script_head() == "0002"
    (versions / "0003_c.py").write_text("revision = '0003'\ndown_revision = '0001'\n")
    assert script_head() is None  # two heads: a branch
    (versions / "0003_c.py").write_text("revision = REV\n")
    assert script_head() is None
