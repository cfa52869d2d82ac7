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

A machine's first scan (no state yet) skips all of this: its rows go straight into the state
table, each with its row digest. A rescan stages only each entity's stored id and **row
digest** (:class:`_Digester`: BLAKE2b-256 of its marshalled values) into an unindexed
temporary table, its values going to a local spill file; one join with the state's digests
(PostgreSQL: a full outer join, hashed; SQLite: index lookups, then the state rows no staged
id names) finds the new, the gone and the entities whose digest differs. Only those have
their whole rows read back from the spill file, loaded into a small table and compared column
by column with their state rows (PostgreSQL reads those by physical address); the apply step
then rewrites the rows that differ in any column and deletes what is gone. So an unchanged
rescan moves three narrow columns per entity and rewrites nothing; memory stays flat (the
values wait on disk, ~230 bytes per file entity, for the length of the diff). Rows are built
for the database with as little Python per row as possible: JSON columns are encoded once
where the row is built, and the common all-ASCII, in-range row takes no escaping or clamping
call; a rescan stages its entities by batches, each step of a batch one C call over all of it
(:meth:`_Digester.staged`).
"""

from __future__ import annotations

import functools
import marshal
import operator
import tempfile
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from hashlib import blake2b as _blake2b
from itertools import accumulate, islice, repeat
from operator import itemgetter
from typing import IO, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    RowMapping,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
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
from scanner.errors import StorageError
from scanner.storage.bulk import bulk_insert, json_text
from scanner.storage.hives import HiveSkip
from scanner.storage.tables import file_state, registry_state
from scanner.textsafe import MAX_ID_BYTES, storable, storable_id, storable_json

_CHUNK = 1000
# PostgreSQL's memory for the diff's hash join (per scan transaction; the default 4 MB spills
# a 100k-row state to disk in 16 batches)
_JOIN_MEMORY = "64MB"
# temporary tables by (kind, is it PostgreSQL): the stage of a rescan (digests) and of a
# first scan (whole rows) share a name
# the digest of a row's values (see _Digester): its width, and the version of its encoding
_DIGEST_BYTES = 32
_DIGEST_PERSON = b"snapfim-row-v1"
_SPILL_BUFFER = 1 << 20
_DIGEST_START = _blake2b(digest_size=_DIGEST_BYTES, person=_DIGEST_PERSON)
_new_digest = _DIGEST_START.copy
_first = itemgetter(0)
_STAGE_BATCH = 2000  # entities staged per batch (one spill write and one COPY block each)
# a field of PostgreSQL's COPY text format: these characters escaped
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_stage_meta = {(kind, postgres): MetaData() for kind in ("full", "digest", "changed")
               for postgres in (False, True)}


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class StateSpec:
    """How one kind of entity is staged, stored and read back."""

    table: Table
    columns: tuple[str, ...]                           # "path" first, "policies" last
    # entity -> values in column order, storable, integers clamped, JSON columns as text
    row: Callable[[Any], tuple[Any, ...]]
    entity: Callable[[Any, str], Entity]               # row mapping, column prefix -> entity
    keep_unread_hash: bool = False                     # files: unreadable content keeps its hash
    # entity -> its values in column order, plain (str, int, None, dict, tuple): what its
    # digest covers and its row is built from (:attr:`row_of`); the id is the first value.
    # None: the row itself
    values: Callable[[Any], tuple[Any, ...]] | None = None
    row_of: Callable[[tuple[Any, ...]], tuple[Any, ...]] = _identity
    stored_id: Callable[[str], str] = _identity        # the id of a row's values, as stored

    @property
    def stage(self) -> Table:
        """The temporary staging table of this kind (dropped at the end of each diff): no
        key and no index, so that loading it is a plain append. A rescan stages the
        (path, digest) of every entity here (:meth:`digests`); a first scan of a machine
        that still holds state rows stages whole rows (:meth:`staging`)."""
        return self.staging(postgres=False)

    def staging(self, *, postgres: bool) -> Table:
        """:attr:`stage` with whole rows, for one kind of database: PostgreSQL's also drops
        it at commit (an option named only there, so that SQLite never loads PostgreSQL's
        dialect)."""
        return self._temporary("full", postgres, f"snapfim_stage_{self.table.name}",
                               self._row_columns)

    def digests(self, *, postgres: bool) -> Table:
        """:attr:`stage` as a rescan loads it: each entity's stored id, the digest of its
        values (NULL: always compared in full) and where its values lie in the scan's
        spill file."""
        return self._temporary("digest", postgres, f"snapfim_stage_{self.table.name}",
                               lambda: [Column("path", Text, nullable=False),
                                        Column("row_digest", LargeBinary),
                                        Column("pos", BigInteger, nullable=False)])

    def differing(self, *, postgres: bool) -> Table:
        """The whole rows of the entities whose digest differs from the state's (a rescan
        compares these in full)."""
        return self._temporary("full", postgres, f"snapfim_rows_{self.table.name}",
                               self._row_columns)

    def _row_columns(self) -> list[Column[Any]]:
        return [*(Column(c, self.table.c[c].type, nullable=c != "path") for c in self.columns),
                Column("row_digest", LargeBinary)]

    def _temporary(self, kind: str, postgres: bool, name: str,
                   columns: Callable[[], list[Column[Any]]]) -> Table:
        meta = _stage_meta[kind, postgres]
        if name not in meta.tables:
            options: dict[str, Any] = {"postgresql_on_commit": "DROP"} if postgres else {}
            Table(name, meta, *columns(), prefixes=["TEMPORARY"], **options)
        return meta.tables[name]

    @property
    def changed(self) -> Table:
        """The temporary table naming the state rows a diff rewrites or deletes (SQLite)."""
        meta = _stage_meta["changed", False]
        name = f"snapfim_changed_{self.table.name}"
        if name not in meta.tables:
            Table(name, meta, Column("path", Text, nullable=False), prefixes=["TEMPORARY"])
        return meta.tables[name]


def _opt(text: str | None) -> str | None:
    return None if text is None else storable(text)


# a file's values, in the order of its row (FILE_STATE.columns): what its row and its digest
# are made from
_file_input = operator.attrgetter("path", *FILE_RECORDED_FIELDS, "policies")
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
    """The staged row of a file (:func:`_file_row_of`)."""
    return _file_row_of(_file_input(e))


def _file_row_of(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The staged row of a file from its values (:data:`_file_input`: path, recorded fields,
    policies): every string made storable (:mod:`scanner.textsafe`), so state, staging and
    the events built from them share one representation; integers a disk made too large for
    their column clamped (:func:`_clamped`)."""
    (path, type_, size, mode, uid, gid, link_target, sha256, acl, capability, xattrs,
     attributes, mtime, ctime, crtime, inode, nlink, atime, policies) = values
    probe = f"{path}{type_}{link_target or ''}{sha256 or ''}{acl or ''}{capability or ''}" \
            f"{attributes or ''}"
    if not (_plain(probe) and len(path) <= _PLAIN_ID):
        return _file_row_slow(values)
    row = (path, type_, size, mode, uid, gid, link_target, sha256, acl, capability,
           _xattrs_text(xattrs), attributes, mtime, ctime, crtime, inode, nlink, atime,
           _policies(policies))
    wide = (size, uid, gid, inode, mtime or 0, ctime or 0, crtime or 0, atime or 0)
    if _LO32 <= mode <= _HI32 and _LO32 <= nlink <= _HI32 and min(wide) >= _LO64 \
            and max(wide) <= _HI64:
        return row
    return _clamped(row, _FILE_BOUNDS)


def _file_row_slow(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """:func:`_file_row_of` of a file with some text to escape or a long path."""
    path, *fields, policies = values
    for i in _FILE_TEXT:
        value = fields[i]
        if i == _XATTRS:
            fields[i] = _xattrs_text(value)
        elif value:
            fields[i] = storable(value)
    return _clamped((storable_id(path), *fields, _policies(policies)), _FILE_BOUNDS)


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
                       _file_entity, keep_unread_hash=True, values=_file_input,
                       row_of=_file_row_of, stored_id=storable_id)
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
    items = entities if skip is None else skip.filter(entities)
    digester = _Digester(spec, unreadable)
    if previous_policies is None:
        if _has_state(conn, spec.table, machine_id):
            _replace_state(conn, spec, (machine_id, scan_id), digester.rows(items), postgres)
        else:
            _load_baseline(conn, spec, (machine_id, scan_id), digester.rows(items))
        out.baseline = True
        return out, digester.count + (0 if skip is None else skip.skipped)

    rules = DiffRules(out, previous_policies, current_policies, unreadable)
    table = spec.table
    try:
        spill = tempfile.TemporaryFile(buffering=_SPILL_BUFFER)  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise StorageError(f"cannot create the diff's spill file: {exc}") from exc
    with spill:
        # 1. every entity's (id, digest) staged, its values spilled to a local file
        digests = spec.digests(postgres=postgres)
        digests.drop(conn, checkfirst=True)
        digests.create(conn)
        bulk_insert(conn, digests, ("path", "row_digest", "pos"),
                    digester.staged(items, spill, postgres), copy_text=postgres)
        # 2. the entities whose digest differs from the state's (new ones included), and the
        # state rows no entity names, but for those of the hives kept as they are (known
        # once the entities are staged)
        kept = [] if skip is None else skip.kept_prefixes()
        mine_now = and_(table.c.machine_id == machine_id, *(
            ~or_(table.c.path == mount, table.c.path.startswith(prefix, autoescape=True))
            for mount, prefix in kept))
        differ, gone = _differing(conn, spec, digests, machine_id, mine_now, postgres)
        deleted: list[str] = []  # the gone rows deleted: stored ids (PostgreSQL: addresses)
        for data in gone:
            before = len(out.deletes)
            rules.gone_path(spec.entity(data, ""))
            if len(out.deletes) > before:
                deleted.append(data["tid"] if postgres else data["path"])
        del gone
        digests.drop(conn)
        # 3. their whole rows, read back from the spill file, compared in full
        rows = spec.differing(postgres=postgres)
        rows.drop(conn, checkfirst=True)
        rows.create(conn)
        tids = [tid for _, _, tid in differ if tid is not None]
        unknown = digester.load_differing(conn, rows, spill, differ)
    del differ
    _compare_and_apply(conn, spec, rows, rules, (machine_id, scan_id), unreadable, unknown,
                       tids, deleted, postgres)
    rows.drop(conn)
    total = digester.count + (0 if skip is None else skip.skipped)
    return rules.finish(), total


class _Digester:
    """The rows of a scan's entities with their digests, and their spill file.

    A row's digest is a BLAKE2b-256 of its entity's plain values (``StateSpec.values``,
    marshalled): equal digests stand for equal rows, so the state row of an entity whose
    digest is unchanged is not compared nor rewritten. 256 bits, since the values come from
    a hostile disk: a collision would hide a change, and one found by a birthday search
    over content an attacker controls costs 2**128 hashes at this width (2**64, within
    reach, at 128 bits). The personalisation string versions the encoding: rows digested
    under another version simply differ once and are compared in full. A row whose stored
    values the store itself completes from the state (extended attributes that could not
    be read, an unreadable file's hash) has no digest: it is always compared in full."""

    def __init__(self, spec: StateSpec, unreadable: Collection[str]) -> None:
        self.spec = spec
        self.values = spec.values or spec.row
        self.count = 0  # entities staged
        columns = spec.columns
        # the values that, when None, leave the row to be completed from the state (the id,
        # never None, where there is none of that kind)
        self.unknown_at = columns.index("xattrs") if "xattrs" in columns else 0
        self.hash_at = columns.index("sha256") if spec.keep_unread_hash else 0
        self.unreadable = frozenset(unreadable) if spec.keep_unread_hash else frozenset()

    def rows(self, entities: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
        """Whole rows with their digest last (a first scan's)."""
        values_of, row_of, stored_id = self.values, self.spec.row_of, self.spec.stored_id
        unknown_at, hash_at, unreadable = self.unknown_at, self.hash_at, self.unreadable
        dumps, new_digest, count = marshal.dumps, _new_digest, 0
        try:
            for e in entities:
                count += 1
                values = values_of(e)
                try:
                    data = dumps(values, 2)
                except ValueError:
                    values, data = _marshalled(values)
                if values[unknown_at] is None or (unreadable and values[hash_at] is None
                                                  and stored_id(values[0]) in unreadable):
                    yield row_of(values) + (None,)
                else:
                    digest = new_digest()
                    digest.update(data)
                    yield row_of(values) + (digest.digest(),)
        finally:
            self.count = count

    def staged(self, entities: Iterable[Any], spill: IO[bytes], copy_text: bool
               ) -> Iterator[Any]:
        """The (id, digest, position) of each entity, as blocks of COPY text lines
        (``copy_text``: one block per batch of entities) or tuples; its marshalled values are
        written to ``spill`` at that position. The hot path of a rescan: a batch of entities
        goes through each step at once (``map`` over C functions: values, marshal, one spill
        write, digests, lines), so a common batch (plain ids, every row digested) runs no
        Python per entity; any other batch takes :meth:`_each`."""
        values_of, unknown_of, unreadable = self.values, itemgetter(self.unknown_at), \
            self.unreadable
        items, pos, self.count = iter(entities), 0, 0
        while batch := list(map(values_of, islice(items, _STAGE_BATCH))):
            self.count += len(batch)
            try:
                data = list(map(marshal.dumps, batch, repeat(2)))
            except ValueError:  # a value of a subclass of a plain type: made plain
                batch, data = map(list, zip(*map(_marshalled, batch), strict=True))
            try:
                spill.write(b"".join(data))
            except OSError as exc:
                raise StorageError(f"cannot write the diff's spill file: {exc}") from exc
            starts = list(accumulate(map(len, data), initial=pos))
            pos = starts.pop()
            ids = list(map(_first, batch))
            joined = "".join(ids)
            if not (joined.isascii() and joined.isprintable()  # no NUL, tab, newline
                    and max(map(len, ids)) <= _PLAIN_ID and None not in map(unknown_of, batch)
                    and (not unreadable or unreadable.isdisjoint(ids))):
                rows = self._each(batch, data, starts, copy_text)
                if copy_text:
                    yield "".join(rows)
                else:
                    yield from rows
            elif copy_text:  # (an f-string in a comprehension: fewer steps than str.format)
                if "\\" in joined:
                    ids = [i.replace("\\", "\\\\") for i in ids]
                yield "".join([f"{i}\t\\\\x{h}\t{p}\n" for i, h, p in zip(
                    ids, map(_blake2b.hexdigest, _digests(data)), starts, strict=True)])
            else:
                yield from zip(ids, map(_blake2b.digest, _digests(data)), starts, strict=True)

    def _each(self, batch: list[tuple[Any, ...]], data: list[bytes], starts: list[int],
              copy_text: bool) -> Iterator[Any]:
        """:meth:`staged` of a batch one entity at a time: ids made as stored (NUL, a lone
        surrogate, too long) and escaped for COPY, rows completed from the state (no
        digest)."""
        stored_id, unknown_at, hash_at, unreadable = \
            self.spec.stored_id, self.unknown_at, self.hash_at, self.unreadable
        for values, blob, pos in zip(batch, data, starts, strict=True):
            ident = values[0]
            if not (len(ident) <= _PLAIN_ID and ident.isascii() and ident.isprintable()):
                ident = stored_id(ident)  # NUL, a lone surrogate, too long: as stored
            unknown = values[unknown_at] is None or (values[hash_at] is None
                                                     and ident in unreadable)
            digest = None if unknown else _digests([blob])[0]
            if not copy_text:
                yield ident, None if digest is None else digest.digest(), pos
                continue
            if "\\" in ident or not ident.isprintable():
                ident = ident.translate(_COPY_ESCAPES)
            yield f"{ident}\t\\N\t{pos}\n" if digest is None else \
                f"{ident}\t\\\\x{digest.hexdigest()}\t{pos}\n"

    def load_differing(self, conn: Connection, table: Table, spill: IO[bytes],
                       differ: list[tuple[int, bytes | None, str | None]]) -> bool:
        """Load the whole rows of the spilled entities at ``differ``'s positions (with the
        digest staged for each) into ``table``; True when one has unread extended
        attributes (xattrs NULL: kept from the state)."""
        differ.sort()
        unknown = False
        row_of, unknown_at = self.spec.row_of, self.unknown_at

        try:
            spill.flush()
        except OSError as exc:
            raise StorageError(f"cannot write the diff's spill file: {exc}") from exc

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal unknown
            for pos, digest, _ in differ:
                try:
                    spill.seek(pos)
                    values = marshal.load(spill)
                except (OSError, EOFError, ValueError) as exc:
                    raise StorageError(f"cannot read the diff's spill file: {exc}") from exc
                row = row_of(values)
                if row[unknown_at] is None:
                    unknown = True
                yield (*row, digest)

        bulk_insert(conn, table, (*self.spec.columns, "row_digest"), rows(), encoded=True)
        return unknown


def _digests(data: list[bytes]) -> list[Any]:
    """The row digests (BLAKE2b objects, see :class:`_Digester`) of marshalled values, made
    by C calls only (copies of one started digest, each updated)."""
    digests = list(map(_blake2b.copy, repeat(_DIGEST_START, len(data))))
    deque(map(_blake2b.update, digests, data), 0)
    return digests


def _marshalled(values: tuple[Any, ...]) -> tuple[tuple[Any, ...], bytes]:
    """``values`` and their marshal encoding (version 2: no references, so equal values are
    equal bytes). Values of a subclass of a plain type (an enum, say) are made plain."""
    try:
        return values, marshal.dumps(values, 2)
    except ValueError:
        values = tuple(map(_plain_value, values))
        return values, marshal.dumps(values, 2)


def _plain_value(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return tuple(map(str, value))


def _differing(conn: Connection, spec: StateSpec, digests: Table, machine_id: int,
               mine_now: Any, postgres: bool
               ) -> tuple[list[tuple[int, bytes | None, str | None]], list[RowMapping]]:
    """The (spill position, staged digest, PostgreSQL: address of its state row) of each
    staged entity that is new or whose digest differs from its state row's (or is NULL),
    and the whole state rows (of the machine, ``mine_now``) that no staged entity names
    (PostgreSQL: with their address, ``tid``)."""
    table = spec.table
    differ: list[tuple[int, bytes | None, str | None]] = []
    if postgres:
        # one pass: the staged digests fully joined with the state's (hashed; enough memory
        # for it saves spilling it in batches). State rows are named by their physical
        # address from here on (a TID scan: no plan that hinges on statistics, which a
        # machine's first scan has just made stale); the scan holds the machine's lock
        # (Repository.lock_machine) and writes its state rows only at the end, so the
        # addresses hold until then
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{_JOIN_MEMORY}'")
        known = select(literal_column("ctid").label("tid"), table.c.path, table.c.row_digest
                       ).where(mine_now).subquery("s")
        gone_tids: list[str] = []
        for tid, pos, digest in conn.execute(
                select(cast(known.c.tid, Text), digests.c.pos, digests.c.row_digest)
                .select_from(digests.join(known, known.c.path == digests.c.path, full=True))
                .where(or_(known.c.path.is_(None), digests.c.path.is_(None),
                           digests.c.row_digest.is_(None),
                           known.c.row_digest.is_distinct_from(digests.c.row_digest)))):
            if pos is None:
                gone_tids.append(tid)
            else:
                differ.append((pos, digest, tid))
        gone = [] if not gone_tids else [r._mapping for r in conn.execute(
            select(table, _TID).where(_at(gone_tids)))]
        return differ, gone
    # SQLite joins by index lookups: the staged ids get theirs, built once
    conn.exec_driver_sql(f"CREATE INDEX ix_{digests.name} ON {digests.name} (path)")
    state = table.alias("s")
    differ.extend((pos, digest, None) for pos, digest in conn.execute(
        select(digests.c.pos, digests.c.row_digest).select_from(digests.outerjoin(state, and_(
            state.c.machine_id == machine_id, state.c.path == digests.c.path))).where(or_(
                state.c.path.is_(None), digests.c.row_digest.is_(None),
                state.c.row_digest.is_distinct_from(digests.c.row_digest)))))
    gone = [r._mapping for r in conn.execute(select(table).where(
        mine_now, ~exists().where(digests.c.path == table.c.path)))]
    return differ, gone


# PostgreSQL: a state row's physical address (ctid), as text
_TID = cast(literal_column("ctid"), Text).label("tid")


def _at(tids: list[str]) -> Any:
    """PostgreSQL: the condition naming the rows at these addresses (a TID scan)."""
    from sqlalchemy.dialects.postgresql import ARRAY  # not imported for SQLite

    return text("ctid = ANY(CAST(:tids AS tid[]))").bindparams(
        bindparam("tids", tids, type_=ARRAY(Text)))


def _keep_unknown(conn: Connection, stage: Table, table: Table, machine_id: int) -> None:
    """Staged rows whose extended attributes could not be read (xattrs NULL) keep the
    state's ACL, capability and attributes; with no state row, they store none."""
    state = table.alias("s")
    mine = and_(state.c.machine_id == machine_id, state.c.path == stage.c.path)
    unknown = stage.c.xattrs.is_(None)
    conn.execute(update(stage).where(unknown, exists().where(mine)).values(
        acl=select(state.c.acl).where(mine).scalar_subquery(),
        capability=select(state.c.capability).where(mine).scalar_subquery(),
        xattrs=select(state.c.xattrs).where(mine).scalar_subquery()))
    conn.execute(update(stage).where(unknown).values(xattrs={}))


def _compare_and_apply(conn: Connection, spec: StateSpec, rows: Table, rules: DiffRules,
                       key: tuple[int, int], unreadable: Collection[str],
                       unknown_xattrs: bool, tids: list[str], deleted: list[str],
                       postgres: bool) -> None:
    """Compare the whole ``rows`` (entities whose digest differs; PostgreSQL: ``tids``,
    the addresses of their state rows) with their state rows, decide each by ``rules``,
    rewrite the state rows that differ in any column (the digest included) and delete the
    ``deleted`` ones (stored ids; PostgreSQL: addresses). ``key``: machine and scan ids."""
    (machine_id, scan_id), table, columns = key, spec.table, spec.columns
    state = table.alias("s")
    mine = and_(state.c.machine_id == machine_id, state.c.path == rows.c.path)
    stored = (*columns, "row_digest")
    copy_all = select(literal(machine_id), literal(scan_id), *(rows.c[c] for c in stored))
    target = ["machine_id", "scan_id", *stored]
    if unknown_xattrs:  # unreadable extended attributes (xattrs NULL) keep their values
        _keep_unknown(conn, rows, table, machine_id)
    if unreadable and spec.keep_unread_hash:  # unreadable content keeps its previous hash
        listed = sorted(set(unreadable))
        for start in range(0, len(listed), _CHUNK):  # bounded statements (SQLite's variables)
            conn.execute(update(rows).where(
                rows.c.sha256.is_(None), rows.c.path.in_(listed[start:start + _CHUNK]),
                exists().where(mine, state.c.type == rows.c.type)
            ).values(sha256=select(state.c.sha256).where(mine).scalar_subquery(),
                     attributes=func.coalesce(rows.c.attributes, select(state.c.attributes).where(
                         mine, state.c.attributes == SPARSE).scalar_subquery())))
    # The rows are few: each is looked up in the state by its key (PostgreSQL: read by
    # address). A row with no state is new; one whose columns differ is compared (one whose
    # digest alone differs, a row written before digests or under another encoding, is
    # rewritten without an event).
    if postgres:
        known: Any = select(table, _TID).where(_at(tids)).subquery("s")
        mine = known.c.path == rows.c.path
        prefixed = [known.c.tid.label("prev_tid")]
    else:
        known, prefixed = state, []
    prefixed += [known.c[c].label("prev_" + c) for c in columns]
    query = select(*prefixed, *rows.c).select_from(rows.outerjoin(known, mine)).where(or_(
        known.c.path.is_(None),
        *(known.c[c].is_distinct_from(rows.c[c]) for c in stored[1:])))
    # The stored id of each is kept for the apply step (a value entity's path is rebuilt
    # from its key path, which differs from the stored id when that was shortened).
    rewrite: list[str] = []
    replaced: list[str] = []  # PostgreSQL: the addresses of the state rows rewritten
    for row in conn.execute(query):
        data = row._mapping
        if data["prev_path"] is None:
            rules.new_path(spec.entity(data, ""))
        else:
            rules.both(spec.entity(data, "prev_"), spec.entity(data, ""))
            if postgres:
                replaced.append(data["prev_tid"])
        rewrite.append(data["path"])

    # Apply: the rows that differ are rewritten, the new ones added, what is gone deleted
    # (what is kept as unreadable stays). PostgreSQL takes the ids as one array (index
    # lookups in the state, one pass over the rows); elsewhere they are named in a small
    # table, joined once.
    if postgres:
        from sqlalchemy.dialects.postgresql import ARRAY  # not imported for SQLite

        if replaced or deleted:
            conn.execute(delete(table).where(_at([*replaced, *deleted])))
        if rewrite:
            conn.execute(insert(table).from_select(target, copy_all.where(
                rows.c.path == any_(literal(rewrite, ARRAY(Text))))))
    elif rewrite or deleted:
        changed = spec.changed
        changed.drop(conn, checkfirst=True)
        changed.create(conn)
        bulk_insert(conn, changed, ("path",), ((p,) for p in (*rewrite, *deleted)))
        conn.execute(delete(table).where(table.c.machine_id == machine_id,
                                         table.c.path.in_(select(changed.c.path))))
        if rewrite:
            conn.execute(insert(table).from_select(target, copy_all.select_from(
                rows.join(changed, changed.c.path == rows.c.path))))
        changed.drop(conn)


def _has_state(conn: Connection, table: Table, machine_id: int) -> bool:
    """Whether the machine has any state row in ``table``."""
    return conn.execute(select(table.c.path).where(table.c.machine_id == machine_id)
                        .limit(1)).first() is not None


def _load_baseline(conn: Connection, spec: StateSpec, key: tuple[int, int],
                   rows: Iterable[tuple[Any, ...]]) -> None:
    """A first scan of a machine with no state: its rows (digest last) go straight into the
    state table (``key``: machine and scan ids), with no staging table to load and copy.
    Extended attributes that could not be read (NULL) are stored empty, as the staged path
    stores them when there is no state to keep them from (such a row has no digest)."""
    xattrs_at = spec.columns.index("xattrs") if "xattrs" in spec.columns else None

    def keyed() -> Iterable[tuple[Any, ...]]:
        for row in rows:
            if xattrs_at is not None and row[xattrs_at] is None:
                row = (*row[:xattrs_at], "{}", *row[xattrs_at + 1:])
            yield key + row

    bulk_insert(conn, spec.table, ("machine_id", "scan_id", *spec.columns, "row_digest"), keyed(),
                encoded=True)


def _replace_state(conn: Connection, spec: StateSpec, key: tuple[int, int],
                   rows: Iterable[tuple[Any, ...]], postgres: bool) -> None:
    """A first scan of a machine that still holds state rows (none of its scans completed):
    its whole rows (digest last) are staged, those whose extended attributes could not be
    read keep the state's, and they replace the machine's state."""
    machine_id, scan_id = key
    stage, table = spec.staging(postgres=postgres), spec.table
    stored = (*spec.columns, "row_digest")
    stage.drop(conn, checkfirst=True)
    stage.create(conn)
    unknown = False
    xattrs_at = spec.columns.index("xattrs") if "xattrs" in spec.columns else None

    def watched() -> Iterable[tuple[Any, ...]]:
        nonlocal unknown
        for row in rows:
            if xattrs_at is not None and row[xattrs_at] is None:
                unknown = True
            yield row

    bulk_insert(conn, stage, stored, watched(), encoded=True)
    if unknown:
        _keep_unknown(conn, stage, table, machine_id)
    conn.execute(delete(table).where(table.c.machine_id == machine_id))
    conn.execute(insert(table).from_select(
        ["machine_id", "scan_id", *stored],
        select(literal(machine_id), literal(scan_id), *(stage.c[c] for c in stored))))
    stage.drop(conn)


def count_state(conn: Connection, machine_id: int, spec: StateSpec = FILE_STATE) -> int:
    """Number of state rows of a machine."""
    table = spec.table
    return int(conn.execute(select(func.count()).select_from(table)
                            .where(table.c.machine_id == machine_id)).scalar() or 0)
