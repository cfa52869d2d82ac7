"""The pure diff engine: categories, fields, policy scope and unreadable paths."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from scanner.diff import diff_files
from scanner.entities import FileEntity
from scanner.paths import WithinAny, is_within


def entity(path: str, **changes: object) -> FileEntity:
    base = FileEntity(path=path, type="file", size=3, mode=0o644, uid=0, gid=0,
                      mtime=1_000_000_000, ctime=1_000_000_000, crtime=1_000_000_000,
                      atime=1_000_000_000, inode=12, nlink=1, sha256="aa" * 32,
                      policies=("/etc/*.conf",))
    return replace(base, **changes)  # type: ignore[arg-type]


POLICIES = ["/etc/*.conf", "/usr/bin"]


def test_first_scan_is_a_quiet_baseline() -> None:
    current = {"/etc/a.conf": entity("/etc/a.conf")}
    result = diff_files({}, current, previous_policies=None, current_policies=POLICIES)
    assert result.baseline and result.events == [] and result.upserts == [current["/etc/a.conf"]]


def test_unchanged_state_gives_no_events_and_no_writes() -> None:
    state = {"/etc/a.conf": entity("/etc/a.conf")}
    result = diff_files(state, {"/etc/a.conf": entity("/etc/a.conf")},
                        previous_policies=POLICIES, current_policies=POLICIES)
    assert result.events == [] and result.upserts == [] and result.deletes == []


def test_modified_lists_fields_in_order_with_before_and_after() -> None:
    before = entity("/etc/a.conf")
    after = entity("/etc/a.conf", mode=0o600, sha256="bb" * 32, ctime=2_000_000_000)
    result = diff_files({before.path: before}, {after.path: after},
                        previous_policies=POLICIES, current_policies=POLICIES)
    [event] = result.events
    assert (event.category, event.path, event.fields_changed) == (
        "modified", "/etc/a.conf", ("mode", "sha256", "ctime"))
    assert [(event.previous[f], event.current[f]) for f in event.fields_changed] == [  # type: ignore[index]
        (0o644, 0o600), ("aa" * 32, "bb" * 32), (1_000_000_000, 2_000_000_000)]


def test_atime_alone_is_recorded_but_never_a_change() -> None:
    before, after = entity("/etc/a.conf"), entity("/etc/a.conf", atime=5_000_000_000)
    result = diff_files({before.path: before}, {after.path: after},
                        previous_policies=POLICIES, current_policies=POLICIES)
    assert result.events == [] and result.upserts == [after]


def test_type_change_is_a_modification() -> None:
    before = entity("/usr/bin/ls", policies=("/usr/bin",))
    after = entity("/usr/bin/ls", type="symlink", size=8, sha256=None, link_target="/tmp/x",
                   policies=("/usr/bin",))
    [event] = diff_files({before.path: before}, {after.path: after},
                         previous_policies=POLICIES, current_policies=POLICIES).events
    assert event.category == "modified"
    assert event.fields_changed == ("type", "size", "link_target", "sha256")


def test_directory_growth_is_not_a_change_but_its_mode_is() -> None:
    before = entity("/usr/bin", type="directory", size=4096, nlink=2, sha256=None,
                    policies=("/usr/bin",))
    grown = replace(before, size=8192, nlink=3, mtime=9, ctime=9)
    assert diff_files({before.path: before}, {grown.path: grown}, previous_policies=POLICIES,
                      current_policies=POLICIES).events == []
    opened = replace(grown, mode=0o777)
    [event] = diff_files({before.path: before}, {opened.path: opened},
                         previous_policies=POLICIES, current_policies=POLICIES).events
    assert event.fields_changed == ("mode",)


def test_added_and_removed() -> None:
    old, new = entity("/etc/old.conf"), entity("/etc/new.conf")
    result = diff_files({old.path: old}, {new.path: new}, previous_policies=POLICIES,
                        current_policies=POLICIES)
    assert [(e.category, e.path) for e in result.events] == [
        ("added", "/etc/new.conf"), ("removed", "/etc/old.conf")]
    assert result.events[0].previous is None and result.events[0].current == new.values()
    assert result.events[1].current is None and result.events[1].previous == old.values()
    assert result.deletes == ["/etc/old.conf"]


def test_unreadable_paths_keep_their_state() -> None:
    state = {"/boot/vmlinuz": entity("/boot/vmlinuz", policies=("/boot",))}
    result = diff_files(state, {}, previous_policies=["/boot"], current_policies=["/boot"],
                        unreadable=["/boot"])
    assert result.events == [] and result.deletes == [] and result.kept_unreadable == 1


def test_disabled_entity_is_dropped_quietly() -> None:
    state = {"/usr/bin/ls": entity("/usr/bin/ls", policies=("/usr/bin",))}
    result = diff_files(state, {}, previous_policies=POLICIES, current_policies=["/etc/*.conf"])
    assert result.events == [] and result.deletes == ["/usr/bin/ls"]
    assert result.quiet_dropped == 1


def test_path_still_covered_by_another_entity_is_removed_loudly() -> None:
    state = {"/usr/bin/ls": entity("/usr/bin/ls", policies=("/bin", "/usr/bin"))}
    result = diff_files(state, {}, previous_policies=["/bin", "/usr/bin"],
                        current_policies=["/bin"])
    assert [(e.category, e.path) for e in result.events] == [("removed", "/usr/bin/ls")]


def test_newly_enabled_entity_records_new_coverage_quietly() -> None:
    current = {"/srv/app/x": entity("/srv/app/x", policies=("/srv/app",))}
    result = diff_files({}, current, previous_policies=POLICIES,
                        current_policies=[*POLICIES, "/srv/app"])
    assert result.events == [] and result.quiet_added == 1 and len(result.upserts) == 1


@given(st.dictionaries(st.sampled_from([f"/etc/{c}.conf" for c in "abcdef"]),
                       st.integers(min_value=0, max_value=3), max_size=6),
       st.dictionaries(st.sampled_from([f"/etc/{c}.conf" for c in "abcdef"]),
                       st.integers(min_value=0, max_value=3), max_size=6))
def test_applying_a_diff_reproduces_the_current_state(before: dict[str, int],
                                                      after: dict[str, int]) -> None:
    previous = {p: entity(p, size=v) for p, v in before.items()}
    current = {p: entity(p, size=v) for p, v in after.items()}
    result = diff_files(previous, current, previous_policies=POLICIES, current_policies=POLICIES)
    state = dict(previous)
    for path in result.deletes:
        del state[path]
    state.update({e.path: e for e in result.upserts})
    assert state == current
    assert {e.path for e in result.events if e.category == "added"} == set(after) - set(before)
    assert {e.path for e in result.events if e.category == "removed"} == set(before) - set(after)
    assert {e.path for e in result.events if e.category == "modified"} == {
        p for p in set(before) & set(after) if before[p] != after[p]}


def test_unreadable_content_keeps_the_hash_but_metadata_changes_report() -> None:
    before = entity("/usr/bin/ls", policies=("/usr/bin",))
    after = entity("/usr/bin/ls", mode=0o4755, sha256=None, policies=("/usr/bin",))
    result = diff_files({before.path: before}, {after.path: after}, previous_policies=POLICIES,
                        current_policies=POLICIES, unreadable=["/usr/bin/ls"])
    [event] = result.events
    assert (event.category, event.fields_changed) == ("modified", ("mode",))
    assert event.current["sha256"] == "aa" * 32  # type: ignore[index]
    assert result.upserts[0].sha256 == "aa" * 32


# -- issue 9, item 11: the unreadable check is linear, with the same meaning -------------------

def test_gone_paths_under_unreadable_dirs_and_unreadable_files_keep_their_state() -> None:
    """An unreadable directory keeps its subtree, an unreadable file keeps itself; a sibling
    that merely shares a name prefix (``/srv/app2`` beside ``/srv/app``), a parent of an
    unreadable path, Windows streams and registry subkeys follow :func:`is_within` exactly."""
    gone = ["/srv/app/x", "/srv/app/deep/y", "/srv/app2/z", "/srv/f", "/srv/f.bak", "/srv",
            "C:\\Windows\\a.exe", "C:\\Windows\\a.exe:zone", "C:\\Windowsx\\b",
            "HKLM\\SOFTWARE\\Run\\v", "HKLM\\SOFTWAREX\\k"]
    state = {p: entity(p, policies=("p",)) for p in gone}
    unreadable = ["/srv/app", "/srv/f", "C:\\Windows\\", "HKLM\\SOFTWARE"]
    result = diff_files(state, {}, previous_policies=["p"], current_policies=["p"],
                        unreadable=unreadable)
    kept = {"/srv/app/x", "/srv/app/deep/y", "/srv/f", "C:\\Windows\\a.exe",
            "C:\\Windows\\a.exe:zone", "HKLM\\SOFTWARE\\Run\\v"}
    assert sorted(result.deletes) == sorted(set(gone) - kept)
    assert sorted(e.path for e in result.events) == sorted(set(gone) - kept)
    assert {e.category for e in result.events} == {"removed"}
    assert result.kept_unreadable == len(kept)


def test_everything_is_kept_when_the_root_is_unreadable() -> None:
    state = {p: entity(p, policies=("p",)) for p in ("/etc/a", "//p1/etc/a", "C:\\x")}
    result = diff_files(state, {}, previous_policies=["p"], current_policies=["p"],
                        unreadable=["/"])
    assert result.events == [] and result.kept_unreadable == 3


_SEGMENT = st.text(alphabet="aAb:/\\", min_size=0, max_size=3)


@given(st.lists(st.builds("".join, st.lists(_SEGMENT, max_size=4)), max_size=6),
       st.builds("".join, st.lists(_SEGMENT, max_size=5)))
def test_within_any_is_any_is_within(prefixes: list[str], path: str) -> None:
    assert (path in WithinAny(prefixes)) == any(is_within(path, p) for p in prefixes)
