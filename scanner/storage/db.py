"""Engine creation and schema migrations (Alembic), for SQLite and PostgreSQL alike."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from scanner.errors import ConfigError, StorageError, TransientStorageError


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL with the log synced at every commit (a committed scan survives a power loss; a
    scan's bulk writes are one transaction, so one sync), and a 64 MiB page cache for the
    diff's joins over a big staging table."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA cache_size=-65536")
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


_REVISION = re.compile(r"^(down_)?revision\b[^=\n]*=\s*(?:['\"]([^'\"]+)['\"]|None)",
                       re.MULTILINE)


def script_head() -> str | None:
    """The head revision of the migration scripts, read from their ``revision`` and
    ``down_revision`` lines without loading Alembic; None when that is not one plain chain
    end (branches, merges, an unusual spelling): Alembic then decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (migrations_dir() / "versions").glob("*.py"):
        found = _REVISION.findall(script.read_text(encoding="utf-8"))
        mine = [rev for down, rev in found if not down]
        if len(mine) != 1 or len(found) != 2:
            return None
        revisions.update(mine)
        parents.update(rev for down, rev in found if down and rev)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _database_revision(engine: Engine) -> str | None:
    """The revision the database records (None: no version table, or not one row)."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, "alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (creates it on an empty database). The common case, a
    database at the scripts' head, is one query and no Alembic import."""
    try:
        if revision == "head":  # the common case: already there, skip Alembic altogether
            head = script_head()
            if head is not None and _database_revision(engine) == head:
                return
        from alembic import command

        command.upgrade(alembic_config(engine), revision)
    except OperationalError as exc:
        raise TransientStorageError(f"database unavailable: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"migration failed: {exc}") from exc
