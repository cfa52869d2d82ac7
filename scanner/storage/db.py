"""Engine creation and schema migrations (Alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from scanner.errors import ConfigError, StorageError, TransientStorageError


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; ``postgresql://`` URLs use psycopg 3, SQLite files get WAL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def migrations_dir() -> Path:
    """Where the Alembic scripts live (the ``migrations`` package)."""
    import migrations

    return Path(migrations.__file__).parent


def alembic_config(engine: Engine) -> Any:
    """An Alembic config bound to ``engine`` (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (creates it on an empty database)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine)
    try:
        if revision == "head":  # the common case: already there, skip Alembic's environment
            head = ScriptDirectory.from_config(cfg).get_current_head()
            with engine.connect() as conn:
                if MigrationContext.configure(conn).get_current_revision() == head:
                    return
        command.upgrade(cfg, revision)
    except OperationalError as exc:
        raise TransientStorageError(f"database unavailable: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"migration failed: {exc}") from exc
