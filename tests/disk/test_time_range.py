"""Times beyond what storage holds (fuzz class E): a registry key's last-write FILETIME
after 2262-04-11 made the store fail (``OverflowError: Python int too large to convert to
SQLite INTEGER``; PostgreSQL: bigint out of range) on this and every later scan of the
machine. Times are clamped to the signed 64-bit nanosecond range at the one place they
become nanoseconds (:mod:`scanner.timestamps`), so a timestomp to 2300 is a change of that
field, stored and reported, and the next scan of the same disk is quiet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scanner.entities import RegistryKeyEntity
from scanner.policy import make_entity
from scanner.registry.hive import filetime_to_ns
from scanner.storage.policies import add_entity, ensure_recommended
from scanner.storage.repository import Repository
from scanner.timestamps import NS_MAX, NS_MIN, storable_ns
from tests.disk.test_windows_mutations import HKLM_SW, MACHINE, events, scan_image
from tests.imaging.ntfs import File
from tests.imaging.windows import (
    RUN,
    RUN_TIME,
    SOFTWARE,
    base_layout,
    build_windows_image,
    copy_layout,
)

FAR = datetime(2300, 1, 1, tzinfo=UTC)
HOSTS_FILE = "Windows/System32/drivers/etc/hosts"
HOSTS_PATH = "C:\\Windows\\System32\\drivers\\etc\\hosts"


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000_000


def test_registry_key_written_in_2300_is_a_change_not_a_crash(repo: Repository,
                                                            tmp_path: Path) -> None:
    base = base_layout()
    first = scan_image(repo, build_windows_image(tmp_path / "base.img", base))
    assert first.baseline and first.status == "succeeded"
    changed = copy_layout(base)
    changed.hives[SOFTWARE].key(RUN, last_write=FAR)
    image = build_windows_image(tmp_path / "far.img", changed)

    record = scan_image(repo, image)
    # a key's last-write time is recorded, not compared (it moves with everything below it)
    assert (record.status, events(record)) == ("succeeded", [])
    assert _last_write(repo) == NS_MAX
    again = scan_image(repo, image)  # the same disk: stored as it was read, nothing new
    assert (again.status, events(again)) == ("succeeded", [])
    back = scan_image(repo, build_windows_image(tmp_path / "back.img", base))
    assert (back.status, events(back)) == ("succeeded", [])
    assert _last_write(repo) == _ns(RUN_TIME)


def _last_write(repo: Repository) -> int:
    with repo.transaction() as conn:
        state = repo.load_registry_state(conn, repo.machine_id(conn, MACHINE))
    key = state[HKLM_SW + RUN]
    assert isinstance(key, RegistryKeyEntity)
    return key.last_write


@pytest.mark.parametrize(("filetime", "ns"), [
    (0, NS_MIN),                                   # "never": 1601, before 1677
    (116444736000000000, 0),                       # the Unix epoch
    (0xFF00000000000000, NS_MAX),                  # the fuzz case (year ~52000)
    (0x7FFFFFFFFFFFFFFF, NS_MAX),
])
def test_filetime_outside_the_storable_range_is_clamped(filetime: int, ns: int) -> None:
    assert filetime_to_ns(filetime) == ns


def test_storable_ns_bounds() -> None:
    assert [storable_ns(v) for v in (NS_MIN - 1, NS_MIN, 5, NS_MAX, NS_MAX + 1)] == [
        NS_MIN, NS_MIN, 5, NS_MAX, NS_MAX]


def test_ntfs_file_time_in_2300_is_a_change_of_that_field(repo: Repository,
                                                           tmp_path: Path) -> None:
    """TSK turns a $STANDARD_INFORMATION time past 2106 into nothing (the change read as
    "mtime: 2019 -> -"); the raw FILETIME is read and stored at the bound."""
    with repo.transaction() as conn:
        ensure_recommended(conn)
        add_entity(conn, make_entity(HOSTS_PATH))
    base = base_layout()
    first = scan_image(repo, build_windows_image(tmp_path / "base.img", base))
    assert first.baseline and first.status == "succeeded"
    changed = copy_layout(base)
    hosts = changed.files[HOSTS_FILE]
    assert isinstance(hosts, File) and hosts.times is not None
    crtime, mtime, ctime, atime = hosts.times
    far = _ns(FAR)
    assert far > NS_MAX  # not storable as it is
    changed.files[HOSTS_FILE] = replace(hosts, times=(crtime, far, ctime, atime))
    image = build_windows_image(tmp_path / "far.img", changed)
    record = scan_image(repo, image)
    assert (record.status, events(record)) == ("succeeded", [
        ("file", "modified", HOSTS_PATH, None, ("mtime",), {"mtime": (mtime, NS_MAX)})])
    again = scan_image(repo, image)
    assert (again.status, events(again)) == ("succeeded", [])
