"""scanner.winpaths: posix <-> Windows paths, %variables%, policy entities for the walker."""

from __future__ import annotations

import pytest

from scanner.errors import PolicyError
from scanner.policy import EntityKind, EntitySource, make_entity, recommended_entities
from scanner.winpaths import (
    drive_of,
    expand,
    fixed_prefix,
    system_variables,
    to_posix,
    to_windows,
    walk_entity,
)

VARS = system_variables("/Windows")


def test_to_windows() -> None:
    assert to_windows("/Windows/explorer.exe") == "C:\\Windows\\explorer.exe"
    assert to_windows("/") == "C:\\"
    assert to_windows("/Program Files/a b/c.exe", drive="D:") == "D:\\Program Files\\a b\\c.exe"
    assert to_windows("/Windows/System32/") == "C:\\Windows\\System32"


def test_to_posix() -> None:
    assert to_posix("C:\\Windows\\*.exe") == "/Windows/*.exe"
    assert to_posix("c:\\Windows") == "/Windows"
    assert to_posix("C:\\") == "/"
    assert to_posix("C:") == "/"
    assert to_posix("C:/Windows/win.ini") == "/Windows/win.ini"
    assert to_posix("D:\\data") is None
    assert to_posix("d:\\data", drive="D:") == "/data"
    assert to_posix("\\\\server\\share\\x") is None
    assert to_posix("Windows\\x") is None


def test_system_variables() -> None:
    assert VARS == {
        "windir": "C:\\Windows",
        "systemroot": "C:\\Windows",
        "systemdrive": "C:",
        "programfiles": "C:\\Program Files",
        "programfiles(x86)": "C:\\Program Files (x86)",
        "programw6432": "C:\\Program Files",
        "programdata": "C:\\ProgramData",
        "allusersprofile": "C:\\ProgramData",
        "public": "C:\\Users\\Public",
        "commonprogramfiles": "C:\\Program Files\\Common Files",
        "commonprogramfiles(x86)": "C:\\Program Files (x86)\\Common Files",
        "commonprogramw6432": "C:\\Program Files\\Common Files",
    }
    old = system_variables("/WINNT", drive="E:")
    assert (old["windir"], old["systemroot"], old["systemdrive"], old["programfiles"]) == \
        ("E:\\WINNT", "E:\\WINNT", "E:", "E:\\Program Files")


def test_expand() -> None:
    assert expand("%windir%\\system.ini", VARS) == "C:\\Windows\\system.ini"
    assert expand("%WINDIR%\\System32", VARS) == "C:\\Windows\\System32"
    assert expand("%ProgramFiles(x86)%\\app", VARS) == "C:\\Program Files (x86)\\app"
    assert expand("%SystemDrive%\\boot.ini", VARS) == "C:\\boot.ini"
    assert expand("C:\\100% sure\\a%b", VARS) == "C:\\100% sure\\a%b"  # no variable there
    assert expand("%x%", {"X": "C:\\x"}) == "C:\\x"  # mapping keys of any case
    with pytest.raises(PolicyError, match="unknown variable %UserProfile%"):
        expand("%UserProfile%\\ntuser.dat", VARS)


def test_walk_entity_translates_paths_and_keeps_the_rest() -> None:
    entity = make_entity("%windir%\\System32", name="sys32", depth=2,
                         excludes=("c:\\Windows\\System32\\*.log",
                                   "%SystemRoot%\\System32\\LogFiles", "D:\\elsewhere"),
                         source=EntitySource.RECOMMENDED, enabled=False)
    out = walk_entity(entity, VARS)
    assert not isinstance(out, str)
    assert out.path == "/Windows/System32"
    assert out.excludes == ("/Windows/System32/*.log", "/Windows/System32/LogFiles")
    assert (out.name, out.kind, out.depth, out.values, out.enabled, out.source) == \
        ("sys32", EntityKind.WINDOWS_FILE, 2, (), False, EntitySource.RECOMMENDED)
    assert not out.is_pattern and not out.case_sensitive


def test_walk_entity_patterns_and_drive_letters() -> None:
    out = walk_entity(make_entity("C:\\Windows\\*.exe"), VARS)
    assert not isinstance(out, str)
    assert (out.path, out.depth, out.is_pattern) == ("/Windows/*.exe", 0, True)
    lower = walk_entity(make_entity("c:\\windows\\regedit.exe"), VARS)
    assert not isinstance(lower, str) and lower.path == "/windows/regedit.exe"
    root = walk_entity(make_entity("C:\\"), VARS)
    assert not isinstance(root, str) and root.path == "/"
    on_e = walk_entity(make_entity("e:\\data\\x"), system_variables("/Windows", "E:"), "E:")
    assert not isinstance(on_e, str) and on_e.path == "/data/x"


def test_walk_entity_reasons() -> None:
    assert walk_entity(make_entity("D:\\data\\*.cfg"), VARS) == \
        "D:\\data\\*.cfg is not on the system drive C:"
    assert walk_entity(make_entity("%UserProfile%\\ntuser.dat"), VARS) == \
        "unknown variable %UserProfile% in %UserProfile%\\ntuser.dat"
    assert walk_entity(make_entity("C:\\x", excludes=("%temp%\\y",)), VARS) == \
        "unknown variable %temp% in %temp%\\y"
    with pytest.raises(ValueError, match="not a Windows file entity"):
        walk_entity(make_entity("/etc/passwd"), VARS)


def test_recommended_windows_files_all_translate() -> None:
    paths = [out.path for e in recommended_entities() if e.kind is EntityKind.WINDOWS_FILE
             for out in [walk_entity(e, VARS)] if not isinstance(out, str)]
    assert paths == [
        "/autoexec.bat", "/boot.ini", "/config.sys", "/Windows/system.ini", "/Windows/win.ini",
        "/Windows/regedit.exe", "/Windows/System32/userinit.exe", "/Windows/explorer.exe",
        "/Program Files/Microsoft Security Client/msseces.exe",
    ]


def test_drive_of_expands_variables_and_names_the_letter() -> None:
    assert drive_of(make_entity("d:\\app\\config.ini"), VARS) == ("D:", "D:\\app\\config.ini")
    assert drive_of(make_entity("%windir%\\win.ini"), VARS) == ("C:", "C:\\Windows\\win.ini")
    assert drive_of(make_entity("%SystemDrive%\\boot.ini"), system_variables("/W", "E:")) == (
        "E:", "E:\\boot.ini")
    with pytest.raises(PolicyError, match="unknown variable %nope%"):
        drive_of(make_entity("%nope%\\x"), VARS)
    with pytest.raises(PolicyError, match="no drive letter"):
        drive_of(make_entity("%temp%\\x"), {"temp": "\\\\server\\share"})


def test_fixed_prefix_is_the_place_above_a_wildcard() -> None:
    assert fixed_prefix("D:\\app\\*.ini") == "D:\\app"
    assert fixed_prefix("D:\\app\\config.ini") == "D:\\app\\config.ini"
    assert fixed_prefix("D:\\app\\") == "D:\\app"
    assert fixed_prefix("D:\\") == "D:"
    assert fixed_prefix("D:\\*") == "D:"
