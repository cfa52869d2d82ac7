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

A machine's first scan (no state yet) skips all of this: its rows go straight into the
state table. Otherwise the staging table has no index while it is loaded (a plain append;
SQLite, which joins by index lookups, then indexes it once). On PostgreSQL the comparison is
one pass: a full outer join of the staged rows with the machine's state returns the new, the
gone and the differing rows together. The apply step then touches those rows only: their ids go
to PostgreSQL as one array (index lookups in the state), elsewhere into a small temporary
table joined once. Rows are built for the COPY with as little Python per row as possible:
JSON columns are encoded once where the row is built, and the common all-ASCII, in-range row
takes no escaping or clamping call.
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
    Text,
    and_,
    any_,
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
from scanner.storage.bulk import bulk_insert, json_text
from scanner.storage.hives import HiveSkip
from scanner.storage.tables import file_state, registry_state
from scanner.textsafe import MAX_ID_BYTES, storable, storable_id, storable_json

_CHUNK = 1000
# PostgreSQL's memory for the diff's hash join (per scan transaction; the default 4 MB spills
# a 100k-row state to disk in 16 batches)
_JOIN_MEMORY = "64MB"
_stage_meta = {False: MetaData(), True: MetaData()}  # by: is it PostgreSQL


@dataclass(frozen=True)
class StateSpec:
    """How one kind of entity is staged, stored and read back."""

    table: Table
    columns: tuple[str, ...]                           # "path" first, "policies" last
    # entity -> values in column order, storable, integers clamped, JSON columns as text
    row: Callable[[Any], tuple[Any, ...]]
    entity: Callable[[Any, str], Entity]               # row mapping, column prefix -> entity
    keep_unread_hash: bool = False                     # files: unreadable content keeps its hash

    @property
    def stage(self) -> Table:
        """The temporary staging table of this kind (dropped at the end of each diff): no
        key and no index, so that loading it is a plain append."""
        return self.staging(postgres=False)

    def staging(self, *, postgres: bool) -> Table:
        """:attr:`stage` for one kind of database: PostgreSQL's also drops it at commit (an
        option named only there, so that SQLite never loads PostgreSQL's dialect)."""
        meta = _stage_meta[postgres]
        name = f"snapfim_stage_{self.table.name}"
        if name not in meta.tables:
            options: dict[str, Any] = {"postgresql_on_commit": "DROP"} if postgres else {}
            Table(name, meta,
                  *(Column(c, self.table.c[c].type, nullable=c != "path")
                    for c in self.columns),
                  prefixes=["TEMPORARY"], **options)
        return meta.tables[name]

    @property
    def changed(self) -> Table:
        """The temporary table naming the state rows a diff rewrites or deletes (SQLite)."""
        meta = _stage_meta[False]
        name = f"snapfim_changed_{self.table.name}"
        if name not in meta.tables:
            Table(name, meta, Column("path", Text, nullable=False), prefixes=["TEMPORARY"])
        return meta.tables[name]


def _opt(text: str | None) -> str | None:
    return None if text is None else storable(text)


_file_values = operator.attrgetter(*FILE_RECORDED_FIELDS)
# the recorded fields that hold text (str, or a dict of str): made storable in every row
_FILE_TEXT = tuple(i for i, f in enumerate(FILE_RECORDED_FIELDS)
                   if "str" in str(FileEntity.__annotations__[f]))
_XATTRS = FILE_RECORDED_FIELDS.index("xattrs")
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_LO32, _HI32 = _INT32
_LO64, _HI64 = _INT64
_PLAIN_ID = MAX_ID_BYTES // 4  # an id this short is stored as it is once storable


def _plain(text: str) -> bool:
    """Whether ``text`` is stored as it is (ASCII without NUL: what almost every disk holds)."""
    return text.isascii() and "\0" not in text


def _xattrs_text(xattrs: dict[str, str] | None) -> str | None:
    """Extended attributes as the stored JSON text (None: unread, kept from the state)."""
    if xattrs is None:
        return None
    return json_text(storable_json(xattrs)) if xattrs else "{}"


def _file_row(e: FileEntity) -> tuple[Any, ...]:
    """The staged row of a file: every string made storable (:mod:`scanner.textsafe`), so
    state, staging and the events built from them share one representation; integers a disk
    made too large for their column clamped (:func:`_clamped`)."""
    (type_, size, mode, uid, gid, link_target, sha256, acl, capability, xattrs, attributes,
     mtime, ctime, crtime, inode, nlink, atime) = _file_values(e)
    path = e.path
    probe = f"{path}{type_}{link_target or ''}{sha256 or ''}{acl or ''}{capability or ''}" \
            f"{attributes or ''}"
    if not (_plain(probe) and len(path) <= _PLAIN_ID):
        return _file_row_slow(e)
    row = (path, type_, size, mode, uid, gid, link_target, sha256, acl, capability,
           _xattrs_text(xattrs), attributes, mtime, ctime, crtime, inode, nlink, atime,
           _policies(e.policies))
    wide = (size, uid, gid, inode, mtime or 0, ctime or 0, crtime or 0, atime or 0)
    if _LO32 <= mode <= _HI32 and _LO32 <= nlink <= _HI32 and min(wide) >= _LO64 \
            and max(wide) <= _HI64:
        return row
    return _clamped(row, _FILE_BOUNDS)


def _file_row_slow(e: FileEntity) -> tuple[Any, ...]:
    """:func:`_file_row` of a file with some text to escape or a long path."""
    values = list(_file_values(e))
    for i in _FILE_TEXT:
        value = values[i]
        if i == _XATTRS:
            values[i] = _xattrs_text(value)
        elif value:
            values[i] = storable(value)
    return _clamped((storable_id(e.path), *values, _policies(e.policies)), _FILE_BOUNDS)


@functools.lru_cache(maxsize=4096)
def _policies(names: tuple[str, ...]) -> str:
    """Policy names made storable, as the stored JSON text (a scan shares a few tuples among
    all its rows)."""
    return json_text(list(map(storable, names)))


def _file_entity(data: Mapping[str, Any], prefix: str) -> Entity:
    values = {f: data[prefix + f] for f in FILE_RECORDED_FIELDS}
    values["xattrs"] = values["xattrs"] or {}
    return FileEntity(data[prefix + "path"], **values,
                      policies=tuple(data[prefix + "policies"] or ()))


def _registry_row(e: RegistryKeyEntity | RegistryValueEntity) -> tuple[Any, ...]:
    """The staged row of a registry key or value, strings made storable and integers clamped
    (as files). The common row (ASCII without NUL, a short id) takes no escaping call."""
    if isinstance(e, RegistryKeyEntity):
        path, acl = e.path, e.acl
        if _plain(f"{path}{acl or ''}") and len(path) <= _PLAIN_ID:
            row: tuple[Any, ...] = (
                path, "key", path, None, e.last_write, acl, e.subkey_count,
                e.value_count, None, None, None, None, _policies(e.policies))
        else:
            path = storable_id(path)
            row = (path, "key", path, None, e.last_write, _opt(acl), e.subkey_count,
                   e.value_count, None, None, None, None, _policies(e.policies))
        if (_LO64 <= e.last_write <= _HI64 and _LO32 <= e.subkey_count <= _HI32
                and _LO32 <= e.value_count <= _HI32):
            return row
        return _clamped(row, _REGISTRY_BOUNDS)
    path, preview = e.path, e.preview  # the id holds the key path and the name
    if _plain(f"{path}{e.type}{preview or ''}") and len(path) <= _PLAIN_ID:
        row = (path, "value", e.key_path, e.name, None, None, None, None, e.type, e.size,
               e.sha256, preview, _policies(e.policies))
    else:
        row = (storable_id(path), "value", storable_id(e.key_path), storable(e.name), None,
               None, None, None, storable(e.type), e.size, e.sha256, _opt(preview),
               _policies(e.policies))
    return row if _LO64 <= e.size <= _HI64 else _clamped(row, _REGISTRY_BOUNDS)


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


_FILE_BOUNDS = _int_bounds(FILE_STATE)
_REGISTRY_BOUNDS = _int_bounds(REGISTRY_STATE)


def diff_into_state(conn: Connection, machine_id: int, scan_id: int,
                    entities: Iterable[Any], *,
                    previous_policies: Collection[str] | None,
                    current_policies: Collection[str],
                    unreadable: Collection[str] = (), spec: StateSpec = FILE_STATE,
                    out: FileDiff | None = None,
                    skip: HiveSkip | None = None) -> tuple[FileDiff, int]:
    """Diff ``entities`` against the machine's state of ``spec``'s kind and apply the result.

    Events are added to ``out`` (a new diff when None), which is returned with the number of
    entities scanned; ``upserts`` holds the changed rows only. ``skip`` (registry): the
    entities of hives the state holds unchanged are not staged, and the state rows under
    those hives' mounts are kept as they are (:mod:`scanner.storage.hives`).
    """
    out = out if out is not None else FileDiff()
    postgres = conn.dialect.name == "postgresql"
    stage, table, columns = spec.staging(postgres=postgres), spec.table, spec.columns
    total = 0
    unknown_xattrs = False
    build = spec.row
    xattrs_at = columns.index("xattrs") if "xattrs" in columns else None

    def rows() -> Iterable[tuple[Any, ...]]:
        nonlocal total, unknown_xattrs
        for e in (entities if skip is None else skip.filter(entities)):
            total += 1
            row = build(e)
            if xattrs_at is not None and row[xattrs_at] is None:
                unknown_xattrs = True
            yield row

    if previous_policies is None and not _has_state(conn, table, machine_id):
        _load_baseline(conn, table, (machine_id, scan_id), columns, rows(), xattrs_at)
        out.baseline = True
        return out, total + (0 if skip is None else skip.skipped)
    stage.drop(conn, checkfirst=True)
    stage.create(conn)
    bulk_insert(conn, stage, columns, rows(), encoded=True)
    total += 0 if skip is None else skip.skipped
    if not postgres and previous_policies is not None:
        # SQLite joins by index lookups: the staged ids get theirs, built once
        conn.exec_driver_sql(f"CREATE INDEX ix_{stage.name} ON {stage.name} (path)")
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
    # PostgreSQL: one pass, the machine's state fully joined with the staged rows (hashed;
    # enough memory for it saves spilling it in batches). A row with no state side is new,
    # one with no staged side is gone, one whose columns differ is compared. SQLite, whose
    # joins are index lookups, takes the staged rows joined with the state, then the state
    # rows no staged row names.
    kept = [] if skip is None else skip.kept_prefixes()
    mine_now = and_(table.c.machine_id == machine_id, *(
        ~or_(table.c.path == mount, table.c.path.startswith(prefix, autoescape=True))
        for mount, prefix in kept))
    if postgres:
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{_JOIN_MEMORY}'")
        known = select(table).where(mine_now).subquery("s")
        prefixed = [known.c[c].label("prev_" + c) for c in columns]
        queries = [select(*prefixed, *stage.c).select_from(
            stage.join(known, known.c.path == stage.c.path, full=True)).where(or_(
                known.c.path.is_(None), stage.c.path.is_(None),
                *(known.c[c].is_distinct_from(stage.c[c]) for c in columns[1:])))]
    else:
        prefixed = [state.c[c].label("prev_" + c) for c in columns]
        queries = [
            select(*prefixed, *stage.c).select_from(stage.outerjoin(state, mine)).where(or_(
                state.c.path.is_(None),
                *(state.c[c].is_distinct_from(stage.c[c]) for c in columns[1:]))),
            select(*(table.c[c].label("prev_" + c) for c in columns),
                   *(literal(None).label(c) for c in columns)).where(
                mine_now, ~exists().where(stage.c.path == table.c.path))]
    # Rows are decided as they come. The stored id of each is kept for the apply step (a
    # value entity's path is rebuilt from its key path, which differs from the stored id
    # when that was shortened).
    rewrite: list[str] = []
    deleted: list[str] = []
    for row in (r for query in queries for r in conn.execute(query)):
        data = row._mapping
        if data["prev_path"] is None:
            rules.new_path(spec.entity(data, ""))
            rewrite.append(data["path"])
        elif data["path"] is None:
            before = len(out.deletes)
            rules.gone_path(spec.entity(data, "prev_"))
            if len(out.deletes) > before:
                deleted.append(data["prev_path"])
        else:
            rules.both(spec.entity(data, "prev_"), spec.entity(data, ""))
            rewrite.append(data["path"])
    diff = rules.finish()

    # Apply: the rows that differ are rewritten, the new ones added, what is gone deleted
    # (what is kept as unreadable stays). PostgreSQL takes the ids as one array (index
    # lookups in the state, one pass over the staging table); elsewhere they are named in a
    # small table, joined once.
    if postgres:
        from sqlalchemy.dialects.postgresql import ARRAY  # not imported for SQLite

        if rewrite or deleted:
            conn.execute(delete(table).where(
                table.c.machine_id == machine_id,
                table.c.path == any_(literal([*rewrite, *deleted], ARRAY(Text)))))
        if rewrite:
            conn.execute(insert(table).from_select(target, copy_all.where(
                stage.c.path == any_(literal(rewrite, ARRAY(Text))))))
    elif rewrite or deleted:
        changed = spec.changed
        changed.drop(conn, checkfirst=True)
        changed.create(conn)
        bulk_insert(conn, changed, ("path",), ((p,) for p in (*rewrite, *deleted)))
        conn.execute(delete(table).where(table.c.machine_id == machine_id,
                                         table.c.path.in_(select(changed.c.path))))
        if rewrite:
            conn.execute(insert(table).from_select(target, copy_all.select_from(
                stage.join(changed, changed.c.path == stage.c.path))))
        changed.drop(conn)
    stage.drop(conn)
    return diff, total


def _has_state(conn: Connection, table: Table, machine_id: int) -> bool:
    """Whether the machine has any state row in ``table``."""
    return conn.execute(select(table.c.path).where(table.c.machine_id == machine_id)
                        .limit(1)).first() is not None


def _load_baseline(conn: Connection, table: Table, key: tuple[int, int],
                   columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]],
                   xattrs_at: int | None) -> None:
    """A first scan of a machine with no state: its rows go straight into the state table
    (``key``: machine and scan ids), with no staging table to load and copy. Extended
    attributes that could not be read (NULL) are stored empty, as the staged path stores
    them when there is no state to keep them from."""
    def keyed() -> Iterable[tuple[Any, ...]]:
        for row in rows:
            if xattrs_at is not None and row[xattrs_at] is None:
                row = (*row[:xattrs_at], "{}", *row[xattrs_at + 1:])
            yield key + row

    bulk_insert(conn, table, ("machine_id", "scan_id", *columns), keyed(), encoded=True)


def count_state(conn: Connection, machine_id: int, spec: StateSpec = FILE_STATE) -> int:
    """Number of state rows of a machine."""
    table = spec.table
    return int(conn.execute(select(func.count()).select_from(table)
                            .where(table.c.machine_id == machine_id)).scalar() or 0)
