"""Migrations 0009, 0011 and 0012 create exactly the change-tracking tables and columns (and the
content settings), and go back."""

from __future__ import annotations

import warnings
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from scanner.storage.db import alembic_config, make_engine, upgrade
from scanner.storage.repository import Repository
from scanner.storage.tables import metadata

TABLES = {"inventory_state", "inventory_source"}


def _schema_diffs(engine: Engine) -> list[Any]:
    """What differs between the migrated database and the tables the code declares."""
    with warnings.catch_warnings(), engine.connect() as conn:
        warnings.simplefilter("ignore")           # expression indexes SQLite can't reflect
        return list(compare_metadata(MigrationContext.configure(
            conn, opts={"compare_type": True}), metadata))


def test_migration_0009_matches_the_tables_and_downgrades(repo: Repository) -> None:
    engine = make_engine(str(repo.engine.url.render_as_string(hide_password=False)))
    try:
        diffs = _schema_diffs(engine)
        assert [d for d in diffs if any(f"'{t}'" in repr(d) for t in
                                        (*TABLES, "package", "package_verdict"))] == []
        command.downgrade(alembic_config(engine), "0008")
        assert not TABLES & set(inspect(engine).get_table_names())
        columns = {c["name"] for c in inspect(engine).get_columns("change_event")}
        assert not {"package", "package_verdict"} & columns
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migration_0011_matches_package_parse_and_downgrades(repo: Repository) -> None:
    engine = make_engine(str(repo.engine.url.render_as_string(hide_password=False)))
    try:
        diffs = _schema_diffs(engine)
        assert [d for d in diffs if "'package_parse'" in repr(d)] == []
        assert "package_parse" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(engine), "0010")
        assert "package_parse" not in inspect(engine).get_table_names()
        assert "package_owner" in inspect(engine).get_table_names()
        upgrade(engine)
        assert "package_parse" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_migration_0012_adds_the_content_settings_keeps_the_policy_and_goes_back(
        repo: Repository) -> None:
    from sqlalchemy import insert, select, text

    from scanner.policy import ContentMode, make_entity
    from scanner.storage.policies import add_entity, load_policy
    from scanner.storage.tables import content_blob, policy_entity

    engine = make_engine(str(repo.engine.url.render_as_string(hide_password=False)))
    try:
        diffs = _schema_diffs(engine)
        assert [d for d in diffs if "content" in repr(d)] == []
        with engine.begin() as conn:
            add_entity(conn, make_entity("/srv/app", content=ContentMode.KEEP))
        command.downgrade(alembic_config(engine), "0009")
        assert "content" not in {c["name"] for c in inspect(engine).get_columns(
            "policy_entity")}
        assert "content_rules" not in {c["name"] for c in inspect(engine).get_columns(
            "machine")}
        with engine.begin() as conn:  # what 0010's purge (run before 0012) must handle
            machine_id = Repository(engine).machine_id(conn, "old", create=True)
            conn.execute(text(
                "INSERT INTO file_state (machine_id, path, type, size, mode, uid, gid, inode, "
                "nlink, sha256, xattrs, policies, scan_id) VALUES (:m, '/etc/shadow-', "
                "'file', 1, 420, 0, 0, 12, 1, :d, '{}', '[]', 1)"),
                {"m": machine_id, "d": "ab" * 32})
            conn.execute(insert(content_blob).values(sha256="ab" * 32, data=b"x"))
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(select(content_blob.c.sha256)).all() == []  # purged by 0010
            assert [e.content for e in load_policy(conn) if e.name == "/srv/app"] == [
                ContentMode.DEFAULT]  # the setting went with the downgrade, the entity stayed
            assert set(conn.execute(select(policy_entity.c.content)).scalars()) == {None}
    finally:
        engine.dispose()
