"""The set-based SQL diff (scanner/storage/sqldiff.py) reports exactly what the README's rules
say, on SQLite and PostgreSQL, for every recorded field of files, registry keys and registry
values. The expectation comes from tests/oracle_diff.py (written from the README, not from
scanner.diff); the in-memory diff is held to the same oracle.

Property-based (hypothesis): random previous states, random next scans (entities kept, changed
in one to three fields, replaced, added, removed), random policy activity and unreadable paths.
Values are drawn from small domains so that equal and different values both occur often. The
single-field tests below change each field alone, so that dropping a column from the SQL
comparison fails deterministically, whatever hypothesis draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.diff import FileDiff, diff_files
from scanner.entities import FileEntity, RegistryKeyEntity, RegistryValueEntity, value_id
from scanner.storage.repository import Repository
from scanner.storage.sqldiff import FILE_STATE, REGISTRY_STATE, StateSpec, diff_into_state
from tests.oracle_diff import (
    FILE_COMPARED,
    FILE_RECORDED,
    KEY_COMPARED,
    KEY_RECORDED,
    VALUE_COMPARED,
    VALUE_RECORDED,
    Event,
    Expected,
    event_key,
    expected_diff,
)

# -- files ------------------------------------------------------------------------------------
HOSTS = "C:\\Windows\\System32\\drivers\\etc\\hosts"
FILE_IDS = ["/etc/a.conf", "/etc/b.conf", "/etc/c.conf", "/etc/ssh", "/etc/ssh/sshd_config",
            "/etc/ssh/ssh_config", "/usr/bin/su", "/usr/bin/login", "/usr/bin/passwd",
            "/usr/bin/sudo", "/usr/sbin/sshd", HOSTS, HOSTS + ":Zone.Identifier",
            "C:\\Windows\\explorer.exe", "C:\\Windows\\System32\\config\\SAM"]
FILE_POLICIES = ["/etc", "/etc/*.conf", "/usr/bin", "/bin",
                 "%windir%\\System32\\drivers\\etc\\hosts", "%windir%\\explorer.exe"]
FILE_UNREADABLE = ["/etc/ssh", "/etc/a.conf", "/usr/bin/su", "/usr", HOSTS,
                   "C:\\Windows\\explorer.exe"]
TIMES = [None, -1, 0, 10**18, 1_700_000_000_123_456_789]
FILE_VALUES: dict[str, list[Any]] = {
    "type": ["file", "directory", "symlink", "stream"],
    "size": [0, 3, 4096, 2**40],
    "mode": [0, 0o644, 0o755, 0o4755, 0o1777],
    "uid": [0, 1000, 4294967294],
    "gid": [0, 7, 4294967294],
    "link_target": [None, "", "../lib/x", "C:\\Windows\\Sys ü'\""],
    "sha256": [None, "aa" * 32, "bb" * 32],
    "acl": [None, "user::rw-,group::r--,other::r--", "O:BAG:SYD:(A;;FA;;;SY)"],
    "capability": [None, "cap_net_raw=ep", "cap_setgid,cap_setuid=ep"],
    "xattrs": [{}, {"user.a": "1"}, {"security.selinux": "system_u:object_r:etc_t:s0",
                                     "user.a": "2"}, {"trusted.x": "0x00ff"}],
    "attributes": [None, "archive", "hidden,system,archive"],
    "mtime": TIMES, "ctime": TIMES, "crtime": TIMES, "atime": TIMES,
    "inode": [2, 12, 2**40 + 1],
    "nlink": [1, 2, 65000],
    "policies": [("/etc",), ("/etc/*.conf", "/etc"), ("/usr/bin",), ("/bin", "/usr/bin"),
                 (FILE_POLICIES[4],), (FILE_POLICIES[5],)],
}
assert set(FILE_VALUES) == {*FILE_RECORDED, "policies"}


def file_entity(path: str) -> st.SearchStrategy[FileEntity]:
    """Any file entity at ``path``."""
    return st.fixed_dictionaries({f: st.sampled_from(v) for f, v in FILE_VALUES.items()}).map(
        lambda values: FileEntity(path, **values))


# -- registry ---------------------------------------------------------------------------------
RUN = "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"
OID = "HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\EncodingType 0\\A"
SVC = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\svc"
USER_RUN = "HKU\\alice\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"
KEY_IDS = [RUN, RUN + "\\Sub", OID, SVC, USER_RUN]
VALUE_IDS = [(RUN, ""), (RUN, "OneDrive"), (RUN, "Updater"), (RUN + "\\Sub", "x"), (OID, "Dll"),
             (OID, "FuncName"), (SVC, "ImagePath"), (USER_RUN, "evil")]
REGISTRY_IDS = KEY_IDS + [value_id(k, n) for k, n in VALUE_IDS]
REG_POLICIES = [RUN, "HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\*", "HKU\\*\\Run",
                "HKLM\\SYSTEM\\CurrentControlSet\\Services"]
REG_UNREADABLE = [RUN, RUN + "\\Sub", OID, "HKLM\\SOFTWARE", value_id(RUN, "OneDrive")]
REG_POLICY_SETS = [(RUN,), (REG_POLICIES[1],), (RUN, REG_POLICIES[2]), (REG_POLICIES[3],)]
KEY_VALUES: dict[str, list[Any]] = {
    "last_write": [0, 10**17, 2 * 10**17],
    "acl": [None, "O:SYG:SYD:(A;;KA;;;SY)", "O:BAG:SYD:", "0x0102"],
    "subkey_count": [0, 1, 3],
    "value_count": [0, 2],
    "policies": REG_POLICY_SETS,
}
VALUE_VALUES: dict[str, list[Any]] = {
    "type": ["REG_SZ", "REG_EXPAND_SZ", "REG_DWORD", "REG_BINARY"],
    "size": [0, 4, 18],
    "sha256": ["aa" * 32, "bb" * 32],
    "preview": [None, "", "C:\\a.exe", "%TEMP%\\x.exe", "1"],
    "policies": REG_POLICY_SETS,
}
assert set(KEY_VALUES) == {*KEY_RECORDED, "policies"}
assert set(VALUE_VALUES) == {*VALUE_RECORDED, "policies"}


def registry_entity(entity_id: str) -> st.SearchStrategy[Any]:
    """Any key entity (a key id) or value entity (a value id)."""
    if entity_id in KEY_IDS:
        return st.fixed_dictionaries({f: st.sampled_from(v) for f, v in KEY_VALUES.items()}
                                     ).map(lambda v: RegistryKeyEntity(entity_id, **v))
    key, name = next((k, n) for k, n in VALUE_IDS if value_id(k, n) == entity_id)
    return st.fixed_dictionaries({f: st.sampled_from(v) for f, v in VALUE_VALUES.items()}).map(
        lambda v: RegistryValueEntity(key, name, **v))


def domains(entity: Any) -> dict[str, list[Any]]:
    if isinstance(entity, FileEntity):
        return FILE_VALUES
    return KEY_VALUES if isinstance(entity, RegistryKeyEntity) else VALUE_VALUES


# -- scans ------------------------------------------------------------------------------------
@st.composite
def scans(draw: st.DrawFn, ids: list[str], entity: Any, policy_names: list[str],
          unreadable: list[str]) -> dict[str, Any]:
    """A previous state, the next scan's entities, the policies active at each scan and the
    paths the next scan could not read."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for entity_id in ids:
        if draw(st.booleans()):
            before[entity_id] = prev = draw(entity(entity_id))
            action = draw(st.sampled_from(["same", "change", "change", "change", "change",
                                           "replace", "gone"]))
            if action == "same":
                after[entity_id] = prev
            elif action == "change":  # mostly one field, else two or three, takes a new value
                values = domains(prev)
                names = sorted(values)
                fields = draw(st.one_of(st.sampled_from(names).map(lambda f: [f]),
                                        st.sampled_from(names).map(lambda f: [f]),
                                        st.lists(st.sampled_from(names), min_size=2,
                                                 max_size=3, unique=True)))
                after[entity_id] = replace(prev, **{
                    f: draw(st.sampled_from([v for v in values[f] if v != getattr(prev, f)]))
                    for f in fields})
            elif action == "replace":
                after[entity_id] = draw(entity(entity_id))
        elif draw(st.booleans()):
            after[entity_id] = draw(entity(entity_id))
    return {"before": before, "after": after,
            "previous_policies": draw(st.lists(st.sampled_from(policy_names), unique=True)),
            "current_policies": draw(st.lists(st.sampled_from(policy_names), unique=True)),
            "unreadable": draw(st.lists(st.sampled_from(unreadable), max_size=2, unique=True))}


_machines = itertools.count()


def observed(diff: FileDiff) -> Expected:
    """A diff's outcome in the oracle's terms (the state is filled in separately)."""
    events: list[Event] = [(e.entity_type, e.category, e.path, e.value_name, e.fields_changed,
                            e.previous, e.current, e.policies) for e in diff.events]
    order = [(e.entity_type, e.path, e.value_name or "") for e in diff.events]
    assert order == sorted(order), "events are listed in path order"
    return Expected(sorted(events, key=event_key), sorted(diff.deletes), diff.kept_unreadable,
                    diff.quiet_added, diff.quiet_dropped)


def sql_diff(repository: Repository, spec: StateSpec, before: Mapping[str, Any],
             after: Mapping[str, Any], **policies: Any) -> Expected:
    """Record ``before`` as a new machine's baseline, diff ``after`` in SQL, read the state."""
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, f"m{next(_machines)}", create=True)
        _, staged = diff_into_state(conn, machine_id, 1, before.values(), previous_policies=None,
                                    current_policies=policies["previous_policies"], spec=spec)
        assert staged == len(before)
        diff, staged = diff_into_state(conn, machine_id, 2, after.values(), spec=spec,
                                       **policies)
        assert staged == len(after)
        load = (repository.load_file_state if spec is FILE_STATE
                else repository.load_registry_state)
        state = load(conn, machine_id)
    result = observed(diff)
    result.state = dict(state)
    return result


def memory_diff(before: Mapping[str, Any], after: Mapping[str, Any], **policies: Any
                ) -> Expected:
    """The in-memory diff's outcome; its state is ``before`` with the writes applied."""
    diff = diff_files(before, after, **policies)
    result = observed(diff)
    state = {i: e for i, e in before.items() if i not in diff.deletes}
    state.update({e.path: e for e in diff.upserts})
    result.state = state
    return result


PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(case=scans(FILE_IDS, file_entity, FILE_POLICIES, FILE_UNREADABLE))
def test_sql_diff_of_files_follows_the_rules(repository: Repository,
                                             case: dict[str, Any]) -> None:
    expected = expected_diff(**case)
    before, after = case.pop("before"), case.pop("after")
    assert memory_diff(before, after, **case) == expected
    assert sql_diff(repository, FILE_STATE, before, after, **case) == expected


@PROPERTY
@given(case=scans(REGISTRY_IDS, registry_entity, REG_POLICIES, REG_UNREADABLE))
def test_sql_diff_of_registry_entities_follows_the_rules(repository: Repository,
                                                         case: dict[str, Any]) -> None:
    expected = expected_diff(**case)
    before, after = case.pop("before"), case.pop("after")
    assert memory_diff(before, after, **case) == expected
    assert sql_diff(repository, REGISTRY_STATE, before, after, **case) == expected


# -- one field at a time ----------------------------------------------------------------------
def other_value(values: list[Any], current: Any) -> Any:
    return next(v for v in values if v != current)


BASE_FILE = FileEntity("/etc/a.conf", "file", 3, 0o644, 0, 0, 10**18, 10**18, 10**18, 10**18,
                       12, 1, None, "aa" * 32, None, None, {}, None, ("/etc",))
BASE_DIR = replace(BASE_FILE, path="/etc/ssh", type="directory", size=4096, sha256=None)
BASE_KEY = RegistryKeyEntity(RUN, 10**17, "O:SYG:SYD:", 1, 2, (RUN,))
BASE_VALUE = RegistryValueEntity(RUN, "OneDrive", "REG_SZ", 18, "aa" * 32, "C:\\a.exe", (RUN,))
ACTIVE = {"/etc", RUN}


@pytest.mark.parametrize(("base", "compared"), [
    (BASE_FILE, FILE_COMPARED),
    (BASE_DIR, tuple(f for f in FILE_COMPARED if f not in ("size", "mtime", "ctime", "nlink"))),
    (BASE_KEY, KEY_COMPARED),
    (BASE_VALUE, VALUE_COMPARED),
], ids=["file", "directory", "registry-key", "registry-value"])
def test_each_field_changed_alone(repository: Repository, base: Any,
                                  compared: tuple[str, ...]) -> None:
    """Every compared field, changed alone, is a modification of exactly that field with its
    before and after values; every other recorded field (atime, a directory's size, mtime,
    ctime and link count, a key's last-write time and counts, a value's preview) and the
    covering policies change the stored state without an event."""
    spec = FILE_STATE if isinstance(base, FileEntity) else REGISTRY_STATE
    for name, values in domains(base).items():
        if name == "type" and base is BASE_DIR:
            continue  # a directory that stops being one: covered with the file's type change
        changed = replace(base, **{name: other_value(values, getattr(base, name))})
        policies = {"previous_policies": ACTIVE, "current_policies": ACTIVE, "unreadable": ()}
        got = sql_diff(repository, spec, {base.path: base}, {base.path: changed}, **policies)
        assert got == expected_diff({base.path: base}, {base.path: changed}, **policies), name
        assert got.state == {base.path: changed}, name
        if name in compared:
            [(kind, category, _, _, fields, previous, current, _)] = got.events
            assert (category, fields) == ("modified", (name,)), name
            assert (previous or {})[name] == getattr(base, name), name
            assert (current or {})[name] == getattr(changed, name), name
        else:
            assert got.events == [], name


def test_an_unreadable_file_keeps_its_hash_and_its_metadata_is_compared(
        repository: Repository) -> None:
    unread = replace(BASE_FILE, sha256=None, gid=7)
    policies = {"previous_policies": ACTIVE, "current_policies": ACTIVE,
                "unreadable": [BASE_FILE.path]}
    got = sql_diff(repository, FILE_STATE, {BASE_FILE.path: BASE_FILE},
                   {BASE_FILE.path: unread}, **policies)
    kept = replace(unread, sha256=BASE_FILE.sha256)
    assert got.state == {BASE_FILE.path: kept}
    assert [(e[1], e[4], e[5]["gid"], e[6]["gid"], e[6]["sha256"]) for e in got.events
            if e[5] and e[6]] == [("modified", ("gid",), 0, 7, "aa" * 32)]


# -- a machine's first scan ---------------------------------------------------------------------
def test_a_first_scan_goes_straight_into_the_state(repository: Repository,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No staging table for a machine with no state: its rows are loaded into the state (one
    whose extended attributes could not be read stores none). A first scan of a machine that
    still holds state rows (none of its scans completed) is staged and replaces them."""
    from scanner.storage import sqldiff

    loaded: dict[str, int] = {}
    real = sqldiff.bulk_insert

    def counting(conn: Any, table: Any, columns: Any, rows: Any, **kw: Any) -> None:
        rows = list(rows)
        loaded[table.name] = loaded.get(table.name, 0) + len(rows)
        real(conn, table, columns, rows, **kw)

    monkeypatch.setattr(sqldiff, "bulk_insert", counting)
    unread = FileEntity("/etc/a.conf", "file", 3, 0o644, 0, 0, 10, 11, 12, 13, inode=5,
                        nlink=1, sha256="aa" * 32, xattrs=None, policies=("/etc",))
    read = replace(unread, path="/etc/b.conf", xattrs={"user.a": "1"}, acl="user::rw-")
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, "first-scan", create=True)
        diff, staged = diff_into_state(conn, machine_id, 1, [unread, read],
                                       previous_policies=None, current_policies=["/etc"])
        assert (diff.baseline, diff.events, staged) == (True, [], 2)
        assert loaded == {"file_state": 2}
        state = repository.load_file_state(conn, machine_id)
        assert state == {"/etc/a.conf": replace(unread, xattrs={}), "/etc/b.conf": read}

        loaded.clear()
        again = replace(read, size=4)
        diff, staged = diff_into_state(conn, machine_id, 2, [again],
                                       previous_policies=None, current_policies=["/etc"])
        assert (diff.baseline, diff.events, staged) == (True, [], 1)
        assert loaded == {FILE_STATE.stage.name: 1}
        assert repository.load_file_state(conn, machine_id) == {"/etc/b.conf": again}
