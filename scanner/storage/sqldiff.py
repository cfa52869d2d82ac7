"""The set-based diff: a scan's entities are bulk-loaded into a staging table and compared
with the machine's state in SQL, inside the scan's transaction.

Only rows that differ are fetched back (to build their events with the same rules as the
in-memory diff, :class:`scanner.diff.DiffRules`), so memory stays flat in the number of
entities: 1M unchanged files cost one COPY and three set operations.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
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
from scanner.entities import FILE_RECORDED_FIELDS, FileEntity
from scanner.storage.bulk import bulk_insert
from scanner.storage.tables import file_state

_STAGE_COLUMNS = ("path", *FILE_RECORDED_FIELDS, "policies")
_stage_meta = MetaData()
stage = Table(
    "snapfim_stage", _stage_meta,
    *(Column(name, file_state.c[name].type, primary_key=name == "path") for name in _STAGE_COLUMNS),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_CHUNK = 1000
_values = operator.attrgetter(*FILE_RECORDED_FIELDS)


def _entity(row: Any, prefix: str = "") -> FileEntity:
    data = row._mapping
    values = {f: data[prefix + f] for f in FILE_RECORDED_FIELDS}
    values["xattrs"] = values["xattrs"] or {}
    return FileEntity(data[prefix + "path"], **values,
                      policies=tuple(data[prefix + "policies"] or ()))


def diff_into_state(conn: Connection, machine_id: int, scan_id: int,
                    entities: Iterable[FileEntity], *,
                    previous_policies: Collection[str] | None,
                    current_policies: Collection[str],
                    unreadable: Collection[str] = ()) -> tuple[FileDiff, int]:
    """Diff ``entities`` against the machine's state and apply the result, in SQL.

    Returns the diff (events, deletes and counts; ``upserts`` holds the changed rows only)
    and the number of entities staged.
    """
    stage.drop(conn, checkfirst=True)
    stage.create(conn)
    total = 0

    def rows() -> Iterable[tuple[Any, ...]]:
        nonlocal total
        for e in entities:
            total += 1
            yield (e.path, *_values(e), e.policies)

    bulk_insert(conn, stage, _STAGE_COLUMNS, rows())
    state = file_state.alias("s")
    mine = and_(state.c.machine_id == machine_id, state.c.path == stage.c.path)
    copy_all = select(literal(machine_id), literal(scan_id), *(stage.c[c] for c in _STAGE_COLUMNS))
    target = ["machine_id", "scan_id", *_STAGE_COLUMNS]
    if previous_policies is None:
        conn.execute(delete(file_state).where(file_state.c.machine_id == machine_id))
        conn.execute(insert(file_state).from_select(target, copy_all))
        stage.drop(conn)
        return FileDiff(baseline=True), total

    if unreadable:  # files whose content could not be read keep their previous hash
        conn.execute(update(stage).where(
            stage.c.sha256.is_(None), stage.c.path.in_(list(unreadable)),
            exists().where(mine, state.c.type == stage.c.type)
        ).values(sha256=select(state.c.sha256).where(mine).scalar_subquery()))
    rules = DiffRules(FileDiff(), previous_policies, current_policies, unreadable)
    differs = or_(*(state.c[c].is_distinct_from(stage.c[c]) for c in _STAGE_COLUMNS[1:]))
    prefixed = [state.c[c].label("prev_" + c) for c in _STAGE_COLUMNS]
    for row in conn.execute(select(*prefixed, *stage.c).join(state, mine).where(differs)):
        rules.both(_entity(row, "prev_"), _entity(row))
    for row in conn.execute(select(stage).where(~exists().where(mine))):
        rules.new_path(_entity(row))
    gone = select(file_state).where(
        file_state.c.machine_id == machine_id,
        ~exists().where(stage.c.path == file_state.c.path))
    for row in conn.execute(gone):
        rules.gone_path(_entity(row))
    diff = rules.finish()

    # Apply: rewrite the rows that differ, add the new ones, delete what is gone.
    conn.execute(delete(file_state).where(
        file_state.c.machine_id == machine_id,
        exists().where(stage.c.path == file_state.c.path).where(or_(*(
            file_state.c[c].is_distinct_from(stage.c[c]) for c in _STAGE_COLUMNS[1:])))))
    conn.execute(insert(file_state).from_select(target, copy_all.where(~exists().where(
        file_state.c.machine_id == machine_id, file_state.c.path == stage.c.path))))
    for start in range(0, len(diff.deletes), _CHUNK):
        conn.execute(delete(file_state).where(
            file_state.c.machine_id == machine_id,
            file_state.c.path.in_(diff.deletes[start:start + _CHUNK])))
    stage.drop(conn)
    return diff, total


def count_state(conn: Connection, machine_id: int) -> int:
    """Number of state rows of a machine."""
    return int(conn.execute(select(func.count()).select_from(file_state)
                            .where(file_state.c.machine_id == machine_id)).scalar() or 0)
