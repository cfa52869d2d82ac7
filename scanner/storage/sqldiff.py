"""The set-based diff: a scan's entities are bulk-loaded into a staging table and compared
with the machine's state in SQL, inside the scan's transaction.

Only rows that differ are fetched back (to build their events with the same rules as the
in-memory diff, :class:`scanner.diff.DiffRules`), so memory stays flat in the number of
entities: 1M unchanged files cost one COPY and three set operations. Files and registry
entities go through the same code, each with its :class:`StateSpec` (state table, columns,
row <-> entity).

Rows are made storable where they are built, one rule per kind of value, so that state,
staging and events share one representation: text by :mod:`scanner.textsafe` (NUL and
unpaired surrogates escaped, ids of more than 2,000 bytes shortened), integers a disk made too
large for their column clamped to its range.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from scanner.diff import DiffRules, FileDiff
from scanner.entities import (
    FILE_RECORDED_FIELDS,
    SPARSE,
    Entity,
    FileEntity,
    RegistryKeyEntity,
    RegistryValueEntity,
)
from scanner.storage.bulk import bulk_insert
from scanner.storage.tables import file_state, registry_state
from scanner.textsafe import storable, storable_id, storable_json

_CHUNK = 1000
_stage_meta = MetaData()


@dataclass(frozen=True)
class StateSpec:
    """How one kind of entity is staged, stored and read back."""

    table: Table
    columns: tuple[str, ...]                           # "path" first, "policies" last
    row: Callable[[Any], tuple[Any, ...]]              # entity -> values in column order
    entity: Callable[[Any, str], Entity]               # row mapping, column prefix -> entity
    keep_unread_hash: bool = False                     # files: unreadable content keeps its hash

    @property
    def stage(self) -> Table:
        """The temporary staging table of this kind (dropped at the end of each diff)."""
        name = f"snapfim_stage_{self.table.name}"
        if name not in _stage_meta.tables:
            Table(name, _stage_meta,
                  *(Column(c, self.table.c[c].type, primary_key=c == "path")
                    for c in self.columns),
                  prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
        return _stage_meta.tables[name]


def _opt(text: str | None) -> str | None:
    return None if text is None else storable(text)


_file_values = operator.attrgetter(*FILE_RECORDED_FIELDS)
# the recorded fields that hold text (str, or a dict of str): made storable in every row
_FILE_TEXT = tuple(i for i, f in enumerate(FILE_RECORDED_FIELDS)
                   if "str" in str(FileEntity.__annotations__[f]))


def _file_row(e: FileEntity) -> tuple[Any, ...]:
    """The staged row of a file: every string made storable (:mod:`scanner.textsafe`), so
    state, staging and the events built from them share one representation."""
    values = list(_file_values(e))
    for i in _FILE_TEXT:
        value = values[i]
        if value:
            values[i] = storable(value) if isinstance(value, str) else storable_json(value)
    return (storable_id(e.path), *values, _policies(e.policies))


@functools.lru_cache(maxsize=4096)
def _policies(names: tuple[str, ...]) -> tuple[str, ...]:
    """Policy names made storable (a scan shares a few tuples among all its rows)."""
    return tuple(map(storable, names))


def _file_entity(data: Mapping[str, Any], prefix: str) -> Entity:
    values = {f: data[prefix + f] for f in FILE_RECORDED_FIELDS}
    values["xattrs"] = values["xattrs"] or {}
    return FileEntity(data[prefix + "path"], **values,
                      policies=tuple(data[prefix + "policies"] or ()))


def _registry_row(e: RegistryKeyEntity | RegistryValueEntity) -> tuple[Any, ...]:
    """The staged row of a registry key or value, strings made storable (as files)."""
    if isinstance(e, RegistryKeyEntity):
        path = storable_id(e.path)
        return (path, "key", path, None, e.last_write, _opt(e.acl), e.subkey_count,
                e.value_count, None, None, None, None, _policies(e.policies))
    return (storable_id(e.path), "value", storable_id(e.key_path), storable(e.name), None, None,
            None, None, storable(e.type), e.size, e.sha256, _opt(e.preview),
            _policies(e.policies))


def _registry_entity(data: Mapping[str, Any], prefix: str) -> Entity:
    policies = tuple(data[prefix + "policies"] or ())
    if data[prefix + "kind"] == "key":
        return RegistryKeyEntity(data[prefix + "path"], data[prefix + "last_write"],
                                 data[prefix + "acl"], data[prefix + "subkey_count"],
                                 data[prefix + "value_count"], policies)
    return RegistryValueEntity(data[prefix + "key_path"], data[prefix + "value_name"],
                               data[prefix + "type"], data[prefix + "size"],
                               data[prefix + "sha256"], data[prefix + "preview"], policies)


FILE_STATE = StateSpec(file_state, ("path", *FILE_RECORDED_FIELDS, "policies"), _file_row,
                       _file_entity, keep_unread_hash=True)
REGISTRY_STATE = StateSpec(
    registry_state,
    ("path", "kind", "key_path", "value_name", "last_write", "acl", "subkey_count",
     "value_count", "type", "size", "sha256", "preview", "policies"),
    _registry_row, _registry_entity)


_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int_bounds(spec: StateSpec) -> list[tuple[int, int, int]]:
    """(column index, lowest, highest) of the integer columns a row of ``spec`` fills."""
    out = []
    for i, name in enumerate(spec.columns):
        col_type = spec.table.c[name].type
        if isinstance(col_type, Integer):
            low, high = _INT64 if isinstance(col_type, BigInteger) else _INT32
            out.append((i, low, high))
    return out


def _clamped(row: tuple[Any, ...], bounds: list[tuple[int, int, int]]) -> tuple[Any, ...]:
    """A row whose integers a disk made too large for their column (a FILETIME of 0 is
    -1.2e19 ns, an nk's subkey count up to 2**32 - 1) clamped to the column's range: the
    storage rule for numbers, as :func:`scanner.textsafe.storable` is for text."""
    values = list(row)
    for i, low, high in bounds:
        if values[i] is not None:
            values[i] = min(max(values[i], low), high)
    return tuple(values)


def diff_into_state(conn: Connection, machine_id: int, scan_id: int,
                    entities: Iterable[Any], *,
                    previous_policies: Collection[str] | None,
                    current_policies: Collection[str],
                    unreadable: Collection[str] = (), spec: StateSpec = FILE_STATE,
                    out: FileDiff | None = None) -> tuple[FileDiff, int]:
    """Diff ``entities`` against the machine's state of ``spec``'s kind and apply the result.

    Events are added to ``out`` (a new diff when None), which is returned with the number of
    entities staged; ``upserts`` holds the changed rows only.
    """
    out = out if out is not None else FileDiff()
    stage, table, columns = spec.stage, spec.table, spec.columns
    stage.drop(conn, checkfirst=True)
    stage.create(conn)
    total = 0
    unknown_xattrs = False

    bounds = _int_bounds(spec)

    def rows() -> Iterable[tuple[Any, ...]]:
        nonlocal total, unknown_xattrs
        for e in entities:
            total += 1
            if isinstance(e, FileEntity) and e.xattrs is None:
                unknown_xattrs = True
            row = spec.row(e)
            for i, low, high in bounds:
                value = row[i]
                if value is not None and not low <= value <= high:
                    row = _clamped(row, bounds)
                    break
            yield row

    bulk_insert(conn, stage, columns, rows())
    state = table.alias("s")
    mine = and_(state.c.machine_id == machine_id, state.c.path == stage.c.path)
    copy_all = select(literal(machine_id), literal(scan_id), *(stage.c[c] for c in columns))
    target = ["machine_id", "scan_id", *columns]
    if unknown_xattrs:  # unreadable extended attributes (xattrs NULL) keep their values
        unknown = stage.c.xattrs.is_(None)
        conn.execute(update(stage).where(unknown, exists().where(mine)).values(
            acl=select(state.c.acl).where(mine).scalar_subquery(),
            capability=select(state.c.capability).where(mine).scalar_subquery(),
            xattrs=select(state.c.xattrs).where(mine).scalar_subquery()))
        conn.execute(update(stage).where(unknown).values(xattrs={}))
    if previous_policies is None:
        conn.execute(delete(table).where(table.c.machine_id == machine_id))
        conn.execute(insert(table).from_select(target, copy_all))
        stage.drop(conn)
        out.baseline = True
        return out, total

    if unreadable and spec.keep_unread_hash:  # unreadable content keeps its previous hash
        listed = sorted(set(unreadable))
        for start in range(0, len(listed), _CHUNK):  # bounded statements (SQLite's variables)
            conn.execute(update(stage).where(
                stage.c.sha256.is_(None), stage.c.path.in_(listed[start:start + _CHUNK]),
                exists().where(mine, state.c.type == stage.c.type)
            ).values(sha256=select(state.c.sha256).where(mine).scalar_subquery(),
                     attributes=func.coalesce(stage.c.attributes, select(state.c.attributes).where(
                         mine, state.c.attributes == SPARSE).scalar_subquery())))
    rules = DiffRules(out, previous_policies, current_policies, unreadable)
    differs = or_(*(state.c[c].is_distinct_from(stage.c[c]) for c in columns[1:]))
    prefixed = [state.c[c].label("prev_" + c) for c in columns]
    for row in conn.execute(select(*prefixed, *stage.c).join(state, mine).where(differs)):
        rules.both(spec.entity(row._mapping, "prev_"), spec.entity(row._mapping, ""))
    for row in conn.execute(select(stage).where(~exists().where(mine))):
        rules.new_path(spec.entity(row._mapping, ""))
    gone = select(table).where(table.c.machine_id == machine_id,
                               ~exists().where(stage.c.path == table.c.path))
    deletes_before = len(out.deletes)
    for row in conn.execute(gone):
        rules.gone_path(spec.entity(row._mapping, ""))
    diff = rules.finish()

    # Apply: rewrite the rows that differ, add the new ones, delete what is gone.
    conn.execute(delete(table).where(
        table.c.machine_id == machine_id,
        exists().where(stage.c.path == table.c.path).where(or_(*(
            table.c[c].is_distinct_from(stage.c[c]) for c in columns[1:])))))
    conn.execute(insert(table).from_select(target, copy_all.where(~exists().where(
        table.c.machine_id == machine_id, table.c.path == stage.c.path))))
    gone_paths = diff.deletes[deletes_before:]
    for start in range(0, len(gone_paths), _CHUNK):
        conn.execute(delete(table).where(table.c.machine_id == machine_id,
                                         table.c.path.in_(gone_paths[start:start + _CHUNK])))
    stage.drop(conn)
    return diff, total


def count_state(conn: Connection, machine_id: int, spec: StateSpec = FILE_STATE) -> int:
    """Number of state rows of a machine."""
    table = spec.table
    return int(conn.execute(select(func.count()).select_from(table)
                            .where(table.c.machine_id == machine_id)).scalar() or 0)
