"""Migration 0009 creates exactly the change-tracking tables and columns, and goes back."""

from __future__ import annotations

import warnings

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from scanner.storage.db import alembic_config, make_engine, upgrade
from scanner.storage.repository import Repository
from scanner.storage.tables import metadata

TABLES = {"inventory_state", "inventory_source"}


def test_migration_0009_matches_the_tables_and_downgrades(repo: Repository) -> None:
    engine = make_engine(str(repo.engine.url.render_as_string(hide_password=False)))
    try:
        with warnings.catch_warnings(), engine.connect() as conn:
            warnings.simplefilter("ignore")           # expression indexes SQLite can't reflect
            diffs = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), metadata)
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
        with warnings.catch_warnings(), engine.connect() as conn:
            warnings.simplefilter("ignore")           # expression indexes SQLite can't reflect
            diffs = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), metadata)
        assert [d for d in diffs if "'package_parse'" in repr(d)] == []
        assert "package_parse" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(engine), "0010")
        assert "package_parse" not in inspect(engine).get_table_names()
        assert "package_owner" in inspect(engine).get_table_names()
        upgrade(engine)
        assert "package_parse" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
