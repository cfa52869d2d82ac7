"""Policy validation, defaults and matching (pure)."""

from __future__ import annotations

import pytest

from scanner.errors import PolicyError
from scanner.policy import (
    RECOMMENDED_LINUX,
    EntityKind,
    EntitySource,
    ExcludeMatcher,
    infer_kind,
    make_entity,
    recommended_entities,
    segment_regex,
)


def test_recommended_linux_is_the_union_of_both_seed_tables() -> None:
    older = {"/bin/login", "/bin/passwd", "/etc/*.conf", "/usr/bin", "/usr/sbin", "/bin", "/sbin",
             "/boot", "/usr/local/bin", "/usr/local/sbin", "/opt/bin", "/opt/sbin",
             "/etc/crontab", "/etc/init.d", "/etc/cron.hourly", "/etc/cron.daily",
             "/etc/cron.weekly", "/etc/cron.monthly"}
    newer = {"/bin", "/bin/passwd", "/boot", "/etc/*.conf", "/etc/cron.daily", "/etc/cron.hourly",
             "/etc/cron.monthly", "/etc/cron.weekly", "/etc/crontab", "/etc/init.d", "/opt/sbin",
             "/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin", "/usr/sbin", "/bin/login",
             "/opt/bin"}
    assert set(RECOMMENDED_LINUX) == older | newer
    linux = [e for e in recommended_entities() if e.kind is EntityKind.LINUX_FILE]
    assert {e.name for e in linux} == older | newer
    assert all(e.source is EntitySource.RECOMMENDED and e.enabled for e in linux)


def test_recommended_registry_includes_newer_wildcards_and_secrets() -> None:
    names = {e.name for e in recommended_entities() if e.kind is EntityKind.WINDOWS_REGISTRY}
    assert "HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\*" in names
    assert "HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Cryptography\\OID\\*" in names
    assert "HKLM\\SECURITY\\POLICY\\SECRETS" in names
    assert "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run" in names
    assert len(names) == len(set(names))


def test_pattern_entities_default_to_depth_zero_and_dirs_to_unlimited() -> None:
    assert make_entity("/etc/*.conf").depth == 0
    assert make_entity("/etc/*.conf").is_pattern
    assert make_entity("/usr/bin").depth is None
    assert make_entity("/srv/app", depth=2).depth == 2


@pytest.mark.parametrize(("path", "message"), [
    ("", "empty path"),
    ("etc/passwd", "not an absolute Linux path"),
    ("/etc/*/passwd", "last path segment only"),
    ("/etc/../passwd", "'..'"),
    ("/etc/pass\nwd", "control characters"),
    ("relative", "not an absolute Linux path"),
])
def test_invalid_paths_are_rejected_with_a_reason(path: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("*", r"\*").replace(".", r"\.")):
        make_entity(path)


def test_linux_kind_requires_an_absolute_path() -> None:
    with pytest.raises(PolicyError, match="must be absolute"):
        make_entity("etc/passwd", kind=EntityKind.LINUX_FILE)


def test_negative_depth_is_rejected() -> None:
    with pytest.raises(PolicyError, match="depth"):
        make_entity("/srv", depth=-1)


def test_paths_are_normalised() -> None:
    assert make_entity("/etc//ssh/").path == "/etc/ssh"


def test_kind_is_inferred_from_the_path() -> None:
    assert infer_kind("/etc") is EntityKind.LINUX_FILE
    assert infer_kind("C:\\Windows\\win.ini") is EntityKind.WINDOWS_FILE
    assert infer_kind("%windir%\\system.ini") is EntityKind.WINDOWS_FILE
    assert infer_kind("HKLM\\SOFTWARE\\X") is EntityKind.WINDOWS_REGISTRY


def test_registry_wildcards_only_in_the_last_segment() -> None:
    make_entity("HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\*")
    with pytest.raises(PolicyError, match="last key segment"):
        make_entity("HKLM\\SOFTWARE\\*\\Run")


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("*.conf", "a.conf", True),
    ("*.conf", "a.conf.bak", False),
    ("*.conf", ".conf", True),
    ("?.conf", "ab.conf", False),
    ("?.conf", "a.conf", True),
    ("[ab].conf", "a.conf", False),       # brackets are literal, not a class
    ("[ab].conf", "[ab].conf", True),
    ("*", "sub/b.conf", False),           # never across '/'
])
def test_segment_wildcards(pattern: str, name: str, matches: bool) -> None:
    assert bool(segment_regex(pattern).match(name)) is matches


def test_case_insensitive_segments_for_windows() -> None:
    assert segment_regex("*.INI", case_sensitive=False).match("win.ini")
    assert not segment_regex("*.INI").match("win.ini")


def test_excludes_take_the_subtree_and_allow_wildcards_anywhere() -> None:
    matcher = ExcludeMatcher(("/srv/app/cache", "/srv/*/tmp"))
    assert matcher.excluded("/srv/app/cache")
    assert matcher.excluded("/srv/app/cache/x/y")
    assert matcher.excluded("/srv/other/tmp/z")
    assert not matcher.excluded("/srv/app/cachet")
    assert not matcher.excluded("/srv/app")
    assert not ExcludeMatcher(()).excluded("/anything")
