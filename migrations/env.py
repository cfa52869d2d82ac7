"""Alembic environment: targets ``scanner.storage.tables.metadata`` on SQLite and PostgreSQL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Engine

from scanner.storage.db import make_engine
from scanner.storage.tables import metadata

config = context.config


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    url = os.environ.get("SNAPFIM_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        from scanner.settings import Settings

        url = Settings.from_env().database_url
    return make_engine(url)


def run_migrations_online() -> None:
    """Run migrations in a transaction on the configured engine."""
    with _engine().connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
