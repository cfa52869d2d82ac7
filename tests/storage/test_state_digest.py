"""A rescan stages each entity's (id, digest) and compares whole rows only where the digest
differs from the state's (scanner/storage/sqldiff.py), on SQLite and PostgreSQL.

The rows that go on to the full comparison are counted at the seam where they leave for the
database (:func:`scanner.storage.sqldiff.bulk_insert`): the digest stage gets every entity,
the table of differing rows only the changed and new ones. A state row a diff rewrites takes
the new scan's id, so an unchanged rescan must leave every row with its first scan's id.
"""

from __future__ import annotations

import errno
import io
import itertools
import marshal
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from hashlib import blake2b
from typing import Any

import pytest
from sqlalchemy import select, update

from scanner.diff import FileDiff
from scanner.entities import FileEntity, RegistryKeyEntity, RegistryValueEntity
from scanner.errors import StorageError
from scanner.storage import sqldiff
from scanner.storage.bulk import bulk_insert
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository
from scanner.storage.sqldiff import FILE_STATE, REGISTRY_STATE, StateSpec, diff_into_state

RUN = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"
ACTIVE = ["/etc", "/usr/bin", RUN]
BASE = FileEntity("/etc/passwd", "file", 1200, 0o644, 0, 0, 10**18, 10**18 + 1, 10**18 + 2,
                  10**18 + 3, inode=12, nlink=1, sha256="aa" * 32,
                  acl="user::rw-,group::r--,other::r--", xattrs={"user.a": "1"},
                  policies=("/etc",))
OTHERS = [FileEntity(f"/etc/f{i}", "file", i, 0o600, 0, 0, 10**18, 10**18, 10**18, 10**18,
                     inode=100 + i, nlink=1, sha256=f"{i:064x}", policies=("/etc",))
          for i in range(20)]
LINK = FileEntity("/usr/bin/sh", "symlink", 4, 0o777, 0, 0, 10**18, 10**18, 10**18, 10**18,
                  inode=7, nlink=1, link_target="dash", policies=("/usr/bin",))
KEY = RegistryKeyEntity(RUN, 10**17, "O:SYG:SYD:", 1, 2, (RUN,))
VALUE = RegistryValueEntity(RUN, "OneDrive", "REG_SZ", 18, "aa" * 32, "C:\\a.exe", (RUN,))
OTHER_VALUES = [RegistryValueEntity(RUN, f"v{i}", "REG_DWORD", 4, f"{i:064x}", str(i), (RUN,))
                for i in range(10)]
_machines = itertools.count()


@pytest.fixture
def loaded(staged: Counter[str]) -> Counter[str]:
    """Rows bulk-loaded per table by the diff (the ``staged`` fixture of conftest)."""
    return staged


def _differing(spec: StateSpec) -> str:
    return f"snapfim_rows_{spec.table.name}"


def _scan_ids(repository: Repository, spec: StateSpec, machine_id: int) -> dict[str, int]:
    with repository.transaction() as conn:
        table = spec.table
        return {p: s for p, s in conn.execute(select(table.c.path, table.c.scan_id).where(
            table.c.machine_id == machine_id))}


def _digests(repository: Repository, spec: StateSpec, machine_id: int) -> dict[str, Any]:
    with repository.transaction() as conn:
        table = spec.table
        return {p: d for p, d in conn.execute(select(table.c.path, table.c.row_digest).where(
            table.c.machine_id == machine_id))}


def _diff(repository: Repository, spec: StateSpec, machine_id: int, scan_id: int,
          entities: list[Any], *, baseline: bool = False, unreadable: Sequence[str] = ()
          ) -> FileDiff:
    with repository.transaction() as conn:
        diff, staged = diff_into_state(
            conn, machine_id, scan_id, entities, spec=spec, unreadable=unreadable,
            previous_policies=None if baseline else ACTIVE, current_policies=ACTIVE)
    assert staged == len(entities)
    return diff


def _machine(repository: Repository) -> int:
    with repository.transaction() as conn:
        return repository.machine_id(conn, f"digest-{next(_machines)}", create=True)


def _state(repository: Repository, spec: StateSpec, machine_id: int) -> dict[str, Any]:
    with repository.transaction() as conn:
        load = (repository.load_file_state if spec is FILE_STATE
                else repository.load_registry_state)
        return dict(load(conn, machine_id))


FILE_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("size", {"size": 1201}), ("mode", {"mode": 0o4755}), ("uid", {"uid": 1000}),
    ("gid", {"gid": 7}), ("mtime", {"mtime": 10**18 + 9}), ("ctime", {"ctime": 10**18 + 9}),
    ("crtime", {"crtime": 10**18 + 9}), ("sha256", {"sha256": "bb" * 32}),
    ("acl", {"acl": "user::rwx,group::r--,other::r--"}),
    ("capability", {"capability": "cap_net_raw=ep"}),
    ("xattrs", {"xattrs": {"user.a": "2"}}), ("xattrs", {"xattrs": {}}),
    ("attributes", {"attributes": "hidden"}), ("inode", {"inode": 13}),
    ("nlink", {"nlink": 2}), ("type", {"type": "stream"}),
]


@pytest.mark.parametrize(("field", "change"), FILE_CHANGES,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(FILE_CHANGES)])
def test_each_file_field_changed_is_found_through_the_digest(
        repository: Repository, loaded: Counter[str], field: str,
        change: dict[str, Any]) -> None:
    """Among 22 unchanged entities, the one with a changed field is the only row compared
    in full and rewritten, and its event names exactly that field."""
    machine = _machine(repository)
    entities = [BASE, LINK, *OTHERS]
    _diff(repository, FILE_STATE, machine, 1, entities, baseline=True)
    loaded.clear()
    changed = replace(BASE, **change)
    diff = _diff(repository, FILE_STATE, machine, 2, [changed, LINK, *OTHERS])
    assert loaded[FILE_STATE.stage.name] == len(entities)
    assert loaded[_differing(FILE_STATE)] == 1
    [event] = diff.events
    assert (event.category, event.path, event.fields_changed) == ("modified", BASE.path,
                                                                  (field,))
    assert (event.previous or {})[field] == getattr(BASE, field)
    assert (event.current or {})[field] == getattr(changed, field)
    scans = _scan_ids(repository, FILE_STATE, machine)
    assert scans == {e.path: 2 if e is BASE else 1 for e in entities}
    assert _state(repository, FILE_STATE, machine)[BASE.path] == changed


def test_a_symlink_target_change_and_atime_go_through_the_digest(
        repository: Repository, loaded: Counter[str]) -> None:
    """A new link target is a modification; a new atime (recorded, never compared) is
    rewritten in the state without an event."""
    machine = _machine(repository)
    _diff(repository, FILE_STATE, machine, 1, [BASE, LINK, *OTHERS], baseline=True)
    loaded.clear()
    relinked = replace(LINK, link_target="bash")
    touched = replace(OTHERS[3], atime=10**18 + 5)
    diff = _diff(repository, FILE_STATE, machine, 2, [BASE, relinked, *OTHERS[:3], touched,
                                                      *OTHERS[4:]])
    assert loaded[_differing(FILE_STATE)] == 2
    assert [(e.category, e.path, e.fields_changed) for e in diff.events] == [
        ("modified", LINK.path, ("link_target",))]
    state = _state(repository, FILE_STATE, machine)
    assert (state[LINK.path], state[touched.path]) == (relinked, touched)
    assert {p for p, s in _scan_ids(repository, FILE_STATE, machine).items() if s == 2} == {
        LINK.path, touched.path}


REGISTRY_CHANGES: list[tuple[Any, str, Any, bool]] = [
    (KEY, "acl", "O:BAG:SYD:", True), (KEY, "last_write", 2 * 10**17, False),
    (KEY, "subkey_count", 3, False), (VALUE, "type", "REG_EXPAND_SZ", True),
    (VALUE, "size", 20, True), (VALUE, "sha256", "cc" * 32, True),
    (VALUE, "preview", "C:\\b.exe", False),
]


@pytest.mark.parametrize(("base", "field", "value", "compared"), REGISTRY_CHANGES,
                         ids=[f"{type(b).__name__}-{f}" for b, f, _, _ in REGISTRY_CHANGES])
def test_each_registry_field_changed_is_found_through_the_digest(
        repository: Repository, loaded: Counter[str], base: Any, field: str, value: Any,
        compared: bool) -> None:
    """A key's ACL and a value's type and data (size, hash) are modifications; a recorded,
    uncompared field is rewritten quietly. Either way only that row is compared in full."""
    machine = _machine(repository)
    entities = [KEY, VALUE, *OTHER_VALUES]
    _diff(repository, REGISTRY_STATE, machine, 1, entities, baseline=True)
    loaded.clear()
    changed = replace(base, **{field: value})
    diff = _diff(repository, REGISTRY_STATE, machine, 2,
                 [changed if e is base else e for e in entities])
    assert loaded[REGISTRY_STATE.stage.name] == len(entities)
    assert loaded[_differing(REGISTRY_STATE)] == 1
    if compared:
        [event] = diff.events
        assert (event.category, event.path, event.fields_changed) == (
            "modified", RUN, (field,))
        assert (event.current or {})[field] == value
    else:
        assert diff.events == []
    assert _state(repository, REGISTRY_STATE, machine)[base.path] == changed
    assert {p for p, s in _scan_ids(repository, REGISTRY_STATE, machine).items()
            if s == 2} == {base.path}


@pytest.mark.parametrize("spec", [FILE_STATE, REGISTRY_STATE], ids=["files", "registry"])
def test_an_unchanged_rescan_compares_and_rewrites_nothing(
        repository: Repository, loaded: Counter[str], spec: StateSpec) -> None:
    machine = _machine(repository)
    entities: list[Any] = [BASE, LINK, *OTHERS] if spec is FILE_STATE else \
        [KEY, VALUE, *OTHER_VALUES]
    _diff(repository, spec, machine, 1, entities, baseline=True)
    state = _state(repository, spec, machine)
    assert all(d is not None and len(d) == 32 for d in
               _digests(repository, spec, machine).values())
    loaded.clear()
    diff = _diff(repository, spec, machine, 2, entities)
    assert (diff.events, diff.upserts, diff.deletes) == ([], [], [])
    assert loaded[spec.stage.name] == len(entities)
    assert loaded[_differing(spec)] == 0
    assert set(_scan_ids(repository, spec, machine).values()) == {1}
    assert _state(repository, spec, machine) == state


def test_added_and_removed_entities_through_the_digest(repository: Repository,
                                                       loaded: Counter[str]) -> None:
    machine = _machine(repository)
    _diff(repository, FILE_STATE, machine, 1, [BASE, LINK, *OTHERS], baseline=True)
    loaded.clear()
    new = replace(OTHERS[0], path="/etc/new", inode=999)
    diff = _diff(repository, FILE_STATE, machine, 2, [BASE, *OTHERS, new])
    assert [(e.category, e.path) for e in diff.events] == [("added", "/etc/new"),
                                                          ("removed", LINK.path)]
    assert loaded[_differing(FILE_STATE)] == 1  # only the new one: the gone one is read
    assert set(_state(repository, FILE_STATE, machine)) == {BASE.path, new.path,
                                                            *(e.path for e in OTHERS)}


def test_a_state_without_digests_is_compared_in_full_once(repository: Repository,
                                                          loaded: Counter[str]) -> None:
    """State rows written before the digest column (NULL), or with a digest that does not
    match, are compared in full: the real change is reported exactly, the rows whose values
    are equal get their digest without an event, and the next unchanged rescan compares
    none of them."""
    machine = _machine(repository)
    entities = [BASE, LINK, *OTHERS]
    _diff(repository, FILE_STATE, machine, 1, entities, baseline=True)
    digests = _digests(repository, FILE_STATE, machine)
    table = FILE_STATE.table
    with repository.transaction() as conn:
        conn.execute(update(table).where(table.c.machine_id == machine).values(row_digest=None))
        conn.execute(update(table).where(table.c.machine_id == machine,
                                         table.c.path == LINK.path).values(row_digest=b"x" * 32))
    loaded.clear()
    changed = replace(OTHERS[5], mode=0o666)
    now = [BASE, LINK, *OTHERS[:5], changed, *OTHERS[6:]]
    diff = _diff(repository, FILE_STATE, machine, 2, now)
    assert [(e.category, e.path, e.fields_changed) for e in diff.events] == [
        ("modified", changed.path, ("mode",))]
    assert loaded[_differing(FILE_STATE)] == len(entities)
    after = _digests(repository, FILE_STATE, machine)
    assert {p: d for p, d in after.items() if p != changed.path} == {
        p: d for p, d in digests.items() if p != changed.path}
    assert after[changed.path] not in (None, digests[changed.path])
    loaded.clear()
    diff = _diff(repository, FILE_STATE, machine, 3, now)
    assert (diff.events, loaded[_differing(FILE_STATE)]) == ([], 0)
    assert set(_scan_ids(repository, FILE_STATE, machine).values()) == {2}


def test_unread_attributes_and_content_are_kept_and_always_compared(
        repository: Repository, loaded: Counter[str]) -> None:
    """A file whose extended attributes could not be read keeps the state's ACL and
    attributes, one whose content could not be read keeps its hash: neither has a digest, so
    each is compared in full on every scan, and unchanged otherwise it is not rewritten."""
    machine = _machine(repository)
    _diff(repository, FILE_STATE, machine, 1, [BASE, LINK, *OTHERS], baseline=True)
    unread_attrs = replace(BASE, acl=None, capability=None, xattrs=None)
    unread_data = replace(OTHERS[2], sha256=None)
    now = [unread_attrs, LINK, *OTHERS[:2], unread_data, *OTHERS[3:]]
    for scan_id in (2, 3):
        loaded.clear()
        diff = _diff(repository, FILE_STATE, machine, scan_id, now,
                     unreadable=[unread_data.path])
        assert (diff.events, loaded[_differing(FILE_STATE)]) == ([], 2)
        state = _state(repository, FILE_STATE, machine)
        assert (state[BASE.path], state[OTHERS[2].path]) == (BASE, OTHERS[2])
    # the first of those scans rewrote the two rows without a digest; the second nothing
    assert {p for p, s in _scan_ids(repository, FILE_STATE, machine).items() if s != 1} == {
        BASE.path, OTHERS[2].path}
    assert {p: d for p, d in _digests(repository, FILE_STATE, machine).items()
            if d is None} == {BASE.path: None, OTHERS[2].path: None}
    loaded.clear()
    moved = replace(unread_attrs, gid=5)
    diff = _diff(repository, FILE_STATE, machine, 4, [moved, LINK, *OTHERS],
                 unreadable=[unread_data.path])
    assert [(e.path, e.fields_changed) for e in diff.events] == [(BASE.path, ("gid",))]
    assert _state(repository, FILE_STATE, machine)[BASE.path] == replace(BASE, gid=5)


HOSTILE_PATHS = ["/etc/tab\there", "/etc/new\nline", "/etc/cr\rx", "C:\\Windows\\back\\slash",
                 "/etc/\\N", "\\.", "/etc/nul\0x", "/etc/ünï\u2028cödé", "/etc/lone\ud800",
                 "/etc/" + "long/" * 600]


def test_hostile_ids_are_staged_and_found_unchanged(repository: Repository,
                                                    loaded: Counter[str]) -> None:
    """Ids holding COPY's delimiters and escapes, NUL, unpaired surrogates, or too long for
    an index entry are staged with their digest as stored: an unchanged rescan finds none
    of them different, a change to one is reported under its stored id."""
    machine = _machine(repository)
    entities = [replace(OTHERS[i], path=p) for i, p in enumerate(HOSTILE_PATHS)]
    _diff(repository, FILE_STATE, machine, 1, entities, baseline=True)
    loaded.clear()
    diff = _diff(repository, FILE_STATE, machine, 2, entities)
    assert (diff.events, loaded[_differing(FILE_STATE)]) == ([], 0)
    stored = set(_state(repository, FILE_STATE, machine))
    assert len(stored) == len(HOSTILE_PATHS)
    for i in range(len(entities)):
        entities[i] = replace(entities[i], size=entities[i].size + 1)
        diff = _diff(repository, FILE_STATE, machine, 3 + i, entities)
        [event] = diff.events
        assert event.path in stored and event.fields_changed == ("size",)
        assert set(_state(repository, FILE_STATE, machine)) == stored


def test_rows_of_a_database_upgraded_from_0012_are_compared_in_full(db_url: str) -> None:
    """Migration 0013 adds the digest column with no value: the first rescan after it
    reports exactly what changed and records the digests."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0012")
        repo = Repository(engine)
        columns = ("machine_id", "scan_id", *FILE_STATE.columns)
        with repo.transaction() as conn:
            machine = repo.machine_id(conn, "old", create=True)
            bulk_insert(conn, FILE_STATE.table, columns,
                        ((machine, 1, *FILE_STATE.row(e)) for e in [BASE, LINK, *OTHERS]),
                        encoded=True)
        upgrade(engine)
        assert set(_digests(repo, FILE_STATE, machine).values()) == {None}
        changed = replace(LINK, link_target="bash")
        diff = _diff(repo, FILE_STATE, machine, 2, [BASE, changed, *OTHERS])
        assert [(e.category, e.path, e.fields_changed) for e in diff.events] == [
            ("modified", LINK.path, ("link_target",))]
        assert None not in set(_digests(repo, FILE_STATE, machine).values())
        assert _state(repo, FILE_STATE, machine) == {
            e.path: e for e in [BASE, changed, *OTHERS]}
    finally:
        engine.dispose()


class _FullDisk(io.BytesIO):
    """A spill file on a disk that fills up after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_full_spill_disk_fails_the_scan_cleanly(repository: Repository,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The spill file is the diff's local storage: running out of it is a storage error
    (one line, no traceback at the boundary) and the scan's transaction leaves the state as
    it was."""
    machine = _machine(repository)
    entities = [BASE, LINK, *OTHERS]
    _diff(repository, FILE_STATE, machine, 1, entities, baseline=True)
    state = _state(repository, FILE_STATE, machine)
    monkeypatch.setattr(sqldiff.tempfile, "TemporaryFile", lambda **_: _FullDisk(1000))
    with pytest.raises(StorageError, match="cannot write the diff's spill file: .*No space"):
        _diff(repository, FILE_STATE, machine, 2, [replace(e, size=e.size + 1)
                                                   for e in entities])
    assert _state(repository, FILE_STATE, machine) == state
    assert set(_scan_ids(repository, FILE_STATE, machine).values()) == {1}


class _Uid(int):
    """An int of a subclass (as an enum would be): marshal refuses it."""


def test_values_of_a_subclass_of_a_plain_type_digest_as_the_plain_ones(
        repository: Repository, loaded: Counter[str]) -> None:
    machine = _machine(repository)
    odd = replace(BASE, uid=_Uid(1000))
    _diff(repository, FILE_STATE, machine, 1, [odd, LINK], baseline=True)
    loaded.clear()
    diff = _diff(repository, FILE_STATE, machine, 2, [replace(BASE, uid=1000), LINK])
    assert (diff.events, loaded[_differing(FILE_STATE)]) == ([], 0)
    diff = _diff(repository, FILE_STATE, machine, 3, [replace(odd, uid=_Uid(0)), LINK])
    assert [(e.path, e.fields_changed) for e in diff.events] == [(BASE.path, ("uid",))]


@pytest.mark.parametrize("copy_text", [True, False])
def test_batched_staging_stages_what_one_entity_at_a_time_does(
        monkeypatch: pytest.MonkeyPatch, copy_text: bool) -> None:
    """A rescan stages a batch of entities at a time through C calls; a batch holding an id
    to escape or make storable, or a row completed from the state, goes one entity at a
    time. Every batch, of either kind, stages the lines and spills the bytes that the
    per-entity path makes of the same entities, at the same positions."""
    monkeypatch.setattr(sqldiff, "_STAGE_BATCH", 3)
    hostile = [replace(OTHERS[i], path=p) for i, p in enumerate(HOSTILE_PATHS)]
    unread = replace(OTHERS[4], path="/etc/unread", sha256=None)
    entities = [*OTHERS[:6],                                            # plain batches
                replace(OTHERS[6], path="C:\\Windows\\a"), *OTHERS[7:9],  # a backslash
                unread, *OTHERS[9:11],                                  # an unreadable file
                replace(BASE, xattrs=None), *OTHERS[11:13],             # unread xattrs
                replace(BASE, uid=_Uid(7)), *OTHERS[13:15],             # a subclassed value
                *hostile, LINK, *OTHERS[15:]]
    digester = sqldiff._Digester(FILE_STATE, ["/etc/unread"])
    one_at_a_time: list[str] = []  # the first id of each batch that took the per-entity path
    real_each = sqldiff._Digester._each

    def each(self: Any, batch: list[tuple[Any, ...]], *args: Any) -> Any:
        one_at_a_time.append(batch[0][0])
        return real_each(self, batch, *args)

    monkeypatch.setattr(sqldiff._Digester, "_each", each)
    spill = io.BytesIO()
    staged = list(digester.staged(entities, spill, copy_text))
    monkeypatch.setattr(sqldiff._Digester, "_each", real_each)
    # plain batches, a backslash and a subclassed value take the batched path; the rows
    # completed from the state and the hostile ids go one entity at a time
    assert one_at_a_time[:2] == ["/etc/unread", BASE.path]
    assert not {OTHERS[0].path, OTHERS[3].path, "C:\\Windows\\a"} & set(one_at_a_time)

    values_of = FILE_STATE.values
    assert values_of is not None
    values = [sqldiff._marshalled(values_of(e))[0] for e in entities]
    data = [marshal.dumps(v, 2) for v in values]
    starts = list(itertools.accumulate(map(len, data), initial=0))[:-1]
    expected = list(sqldiff._Digester(FILE_STATE, ["/etc/unread"])._each(
        values, data, starts, copy_text))
    assert digester.count == len(entities)
    assert spill.getvalue() == b"".join(data)
    if copy_text:
        assert len(staged) == -(-len(entities) // 3)  # one block per batch
        assert "".join(staged) == "".join(expected)
        first = blake2b(data[0], digest_size=32, person=b"snapfim-row-v1").hexdigest()
        assert staged[0].startswith(f"{OTHERS[0].path}\t\\\\x{first}\t0\n")
        assert "C:\\\\Windows\\\\a\t\\\\x" in staged[2]
    else:
        assert staged == expected
    unknown = [row for row in expected if ("\t\\N\t" in row if copy_text else row[1] is None)]
    assert len(unknown) == 2  # the unread xattrs and the unreadable file: no digest
