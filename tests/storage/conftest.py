"""Storage tests run on both databases: a fresh SQLite file, a fresh PostgreSQL database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from scanner.storage import sqldiff
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository


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


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Rows bulk-loaded per table by the set-based diff, counted as they are written (a
    block of COPY text lines counts its lines)."""
    counts: Counter[str] = Counter()
    real = sqldiff.bulk_insert

    def counting(conn: Any, table: Any, columns: Sequence[str], rows: Iterable[Any],
                 **kw: Any) -> None:
        def counted() -> Iterable[Any]:
            for row in rows:
                counts[table.name] += row.count("\n") if isinstance(row, str) else 1
                yield row
        real(conn, table, columns, counted(), **kw)

    monkeypatch.setattr(sqldiff, "bulk_insert", counting)
    return counts
