"""Gone under unreadable: registry ids and Windows paths compare case-insensitively (as
Windows names them), Linux paths exactly (issue 9, fuzz class F)."""

from __future__ import annotations

from scanner.diff import diff_files
from scanner.entities import FileEntity, RegistryKeyEntity
from scanner.paths import WithinAny, fold, is_within


def file(path: str) -> FileEntity:
    return FileEntity(path=path, type="file", size=3, mode=0o644, uid=0, gid=0,
                      mtime=1, ctime=1, crtime=1, atime=1, inode=12, nlink=1,
                      sha256="aa" * 32, policies=("p",))


def key(path: str) -> RegistryKeyEntity:
    return RegistryKeyEntity(path, 1, None, 0, 0, ("p",))


def test_registry_ids_under_an_unreadable_id_spelled_otherwise_are_kept() -> None:
    """The unreadable id may carry the policy's spelling of a segment that could not be
    listed (``SECRETS``): the state's ``Secrets`` and everything below it is kept; a key
    beside it is removed."""
    gone = ["HKLM\\SECURITY\\Policy\\Secrets", "HKLM\\SECURITY\\Policy\\Secrets\\NL$KM",
            "HKLM\\SECURITY\\Policy\\Secrets\\NL$KM\\\\", "HKLM\\SECURITY\\Policy\\PolAdtEv",
            "HKU\\bob\\Software\\Run", "HKU\\bobby\\Software"]
    state = {p: key(p) for p in gone}
    result = diff_files(state, {}, previous_policies=["p"], current_policies=["p"],
                        unreadable=["HKLM\\SECURITY\\Policy\\SECRETS", "hku\\BOB\\software"])
    assert [(e.category, e.path) for e in result.events] == [
        ("removed", "HKLM\\SECURITY\\Policy\\PolAdtEv"), ("removed", "HKU\\bobby\\Software")]
    assert result.kept_unreadable == 4


def test_windows_paths_compare_case_insensitively_linux_paths_exactly() -> None:
    """An NTFS name conflict is recorded under the first entry's spelling (``Hosts``); the
    state may hold another (``hosts``): kept, with its streams. ``/ETC`` unreadable does not
    cover ``/etc`` on a case-sensitive Linux filesystem."""
    gone = ["C:\\Windows\\System32\\drivers\\etc\\hosts",
            "C:\\Windows\\System32\\drivers\\etc\\hosts:Zone.Identifier",
            "C:\\Windows\\System32\\drivers\\etc\\lmhosts.sam", "/etc/passwd", "/ETC/x"]
    state = {p: file(p) for p in gone}
    result = diff_files(state, {}, previous_policies=["p"], current_policies=["p"],
                        unreadable=["c:\\windows\\system32\\DRIVERS\\ETC\\Hosts", "/ETC"])
    assert sorted(e.path for e in result.events) == [
        "/etc/passwd", "C:\\Windows\\System32\\drivers\\etc\\lmhosts.sam"]
    assert result.kept_unreadable == 3


def test_fold_and_within() -> None:
    assert fold("/Etc/Passwd") == "/Etc/Passwd"
    assert fold("HKLM\\Software\\Straße") == fold("HKLM\\SOFTWARE\\STRASSE")
    assert is_within("HKLM\\SOFTWARE\\Microsoft\\Run", "hklm\\software\\MICROSOFT")
    assert is_within("C:\\Users\\Bob\\f:s", "c:\\users\\bob\\F")
    assert not is_within("/usr/Bin/ls", "/usr/bin")
    assert "HKLM\\SOFTWARE\\X" in WithinAny(["hklm\\software\\x"])
    assert "/A/b" not in WithinAny(["/a"])
