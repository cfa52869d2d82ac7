"""Bulk row movement that bypasses per-row ORM/Core overhead: COPY on PostgreSQL,
``executemany`` on the raw driver elsewhere. JSON columns travel as canonical text. The
driver's errors of a COPY are translated here (:class:`StorageError`; a lost connection is
transient)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table

from scanner.errors import StorageError, TransientStorageError

_BATCH = 10_000


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def json_text(value: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces), so equal values are equal strings (one
    encoder for all: what ``json.dumps`` with these options builds at every call)."""
    return _CANONICAL.encode(value)


def _is_json(table: Table, column: str) -> bool:
    col_type = table.c[column].type
    return isinstance(col_type, JSON) or isinstance(getattr(col_type, "impl", None), JSON) or \
        "JSON" in type(col_type).__name__.upper()


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str],
                rows: Iterable[Any], *, encoded: bool = False, copy_text: bool = False) -> None:
    """Insert rows (tuples in ``columns`` order) in the caller's transaction; ``encoded``:
    the rows hold their JSON columns as text already (:func:`json_text`); ``copy_text``
    (PostgreSQL only): each item of ``rows`` is a block of whole lines of COPY's text format
    already, newlines included, sent as it is (no per-row call into the driver)."""
    json_cols = [] if encoded else [i for i, c in enumerate(columns) if _is_json(table, c)]
    memo: dict[Any, str] = {}  # most JSON values repeat ({} and a few policy tuples)

    def encode(value: Any) -> str | None:
        if value is None:
            return None
        if not value:
            return "[]" if isinstance(value, list | tuple) else "{}"
        if isinstance(value, tuple):
            text = memo.get(value)
            if text is None:
                text = memo[value] = json_text(value)
            return text
        return json_text(value)

    def encoded_rows() -> Iterable[tuple[Any, ...]]:  # tuples: what executemany takes
        if not json_cols:
            yield from map(tuple, rows)
            return
        for row in rows:
            values = list(row)
            for i in json_cols:
                values[i] = encode(values[i])
            yield tuple(values)

    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        raw: Any = conn.connection.dbapi_connection  # a psycopg 3 connection
        driver_error: Any = getattr(conn.dialect.dbapi, "Error", Exception)
        from psycopg.copy import QueuedLibpqWriter

        try:  # a thread sends while this one formats rows (a bounded queue between them)
            with raw.cursor() as cursor, \
                    cursor.copy(f"COPY {table.name} ({names}) FROM STDIN",
                                writer=QueuedLibpqWriter(cursor)) as copy:
                if copy_text:
                    for block in rows:
                        copy.write(block)
                else:
                    for row in encoded_rows():
                        copy.write_row(row)
        except driver_error as exc:  # the driver's own: SQLAlchemy is bypassed
            if raw.closed:
                raise TransientStorageError(f"database unavailable: {exc}") from exc
            raise StorageError(f"database refused a row of {table.name}: {exc}") from exc
        return
    marks = ", ".join("?" if conn.dialect.paramstyle == "qmark" else "%s" for _ in columns)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
    rows_iter = iter(encoded_rows())
    while batch := list(itertools.islice(rows_iter, _BATCH)):
        conn.exec_driver_sql(sql, batch)
