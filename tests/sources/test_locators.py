"""The one table of locator kinds: every kind reopens to the same bytes, unknown kinds are a
SourceError, and reopenable() says which can be opened in another process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scanner.collectors.hashing import VolumeRef
from scanner.errors import SourceError
from scanner.sources.base import BlockSource, SliceSource
from scanner.sources.cache import CachedSource, CacheSettings, FileFetcher
from scanner.sources.local import open_local
from scanner.sources.locators import KINDS, LocatorKind, lazy, needs, open_locator, reopenable
from scanner.sources.memory import MemorySource
from tests.imaging.lvm import lvm_fill, lvm_linear, lvm_pv
from tests.imaging.tools import MIB

EXTENT = 4 * MIB
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lvm_disk(tmp_path: Path) -> tuple[Path, bytes]:
    """A disk whose one PV (at 1 MiB) holds VG ``vg0`` with LV ``data`` of 2 extents laid
    out backwards (extents 3, then 1) over known random bytes."""
    content = random.Random(11).randbytes(2 * EXTENT)
    (tmp_path / "lv.bin").write_bytes(content)
    image = tmp_path / "lvm.img"
    size = MIB + 4 * EXTENT + MIB
    with image.open("wb") as fh:
        fh.truncate(MIB + size)
    pv = lvm_pv(image, MIB, size, "vg0", [lvm_linear("data", [(3, 1), (1, 1)])])
    lvm_fill(image, pv, [(3, 1), (1, 1)], tmp_path / "lv.bin")
    return image, content


def lvm_locator(pv: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "lvm", "pvs": [pv], "vg": "vg0", "lv": "data"}


def check_reopens(locator: dict[str, Any], expected: bytes) -> BlockSource:
    """Open ``locator``; it must hold ``expected`` and describe itself by the same locator."""
    assert reopenable(locator)
    source = open_locator(locator)
    try:
        assert source.size == len(expected)
        assert source.read_at(0, len(expected) + 10) == expected
        assert source.read_at(len(expected) - 3, 3) == expected[-3:]
        assert source.locator == locator
    finally:
        source.close()
    return source


def test_local(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(70_000)
    (tmp_path / "a.img").write_bytes(data)
    check_reopens({"kind": "local", "path": str((tmp_path / "a.img").resolve())}, data)


def test_slice_of_a_slice(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(70_000)
    (tmp_path / "a.img").write_bytes(data)
    local = {"kind": "local", "path": str((tmp_path / "a.img").resolve())}
    inner = {"kind": "slice", "parent": local, "offset": 1000, "length": 60_000}
    outer = {"kind": "slice", "parent": inner, "offset": 500, "length": 40_000}
    check_reopens(outer, data[1500:41_500])


def test_a_reopened_slice_closes_the_parent_it_opened(tmp_path: Path) -> None:
    (tmp_path / "a.img").write_bytes(b"x" * 4096)
    local = {"kind": "local", "path": str((tmp_path / "a.img").resolve())}
    source = open_locator({"kind": "slice", "parent": local, "offset": 0, "length": 10})
    assert isinstance(source, SliceSource)
    parent = source.parent
    source.close()
    with pytest.raises(SourceError):
        parent.read_at(0, 1)
    with open_local(tmp_path / "a.img") as disk:  # a slice made in-process leaves it open
        SliceSource(disk, 0, 10).close()
        assert disk.read_at(0, 2) == b"xx"


def test_lvm_over_a_local_disk_and_over_a_slice(lvm_disk: tuple[Path, bytes]) -> None:
    image, content = lvm_disk
    local = {"kind": "local", "path": str(image.resolve())}
    pv_slice = {"kind": "slice", "parent": local, "offset": MIB,
                "length": MIB + 4 * EXTENT + MIB}
    check_reopens(lvm_locator(pv_slice), content)


def test_file_blocks_and_lvm_over_them(lvm_disk: tuple[Path, bytes]) -> None:
    image, content = lvm_disk
    settings = CacheSettings(cache_bytes=2 * MIB, read_ahead=2, threads=2)
    with open_local(image) as disk:
        cached = CachedSource(FileFetcher(SliceSource(disk, MIB, disk.size - MIB), 1 << 16),
                              settings)
        locator = cached.locator
        cached.close()
    with open_local(image) as disk:
        expected = disk.read_at(MIB, disk.size)
    check_reopens(locator, expected)
    check_reopens(lvm_locator(locator), content)


def test_every_kind_of_the_table_is_covered() -> None:
    assert {"local", "slice", "lvm", "file-blocks", "memory"} <= set(KINDS)


@pytest.mark.parametrize("locator, message", [
    ({"kind": "tape", "path": "/dev/st0"}, "cannot open a block source of kind 'tape'"),
    ({"path": "/tmp/x.img"}, "cannot open a block source of kind None"),
    ({"kind": 3}, "cannot open a block source of kind 3"),
    ({"kind": "local"}, "malformed local locator: KeyError('path')"),
    ({"kind": "slice", "parent": {"kind": "nope"}, "offset": 0, "length": 1},
     "cannot open a block source of kind 'nope'"),
    ({"kind": "memory", "name": "m"}, "memory source 'm' lives in one process only and "
     "cannot be reopened"),
])
def test_what_cannot_be_opened_is_a_source_error(locator: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError) as info:
        open_locator(locator)
    assert str(info.value) == message
    assert not reopenable(locator)


def test_reopenable_follows_the_kinds_inside(tmp_path: Path) -> None:
    local = {"kind": "local", "path": str(tmp_path / "a.img")}
    memory = MemorySource(b"\0" * 100).locator
    assert reopenable(local) and not reopenable(memory)
    assert reopenable({"kind": "slice", "parent": local, "offset": 0, "length": 1})
    assert not reopenable({"kind": "slice", "parent": memory, "offset": 0, "length": 1})
    assert reopenable(lvm_locator(local))
    assert not reopenable({"kind": "lvm", "pvs": [local, memory], "vg": "v", "lv": "l"})
    assert not reopenable({"kind": "lvm", "pvs": [], "vg": "v", "lv": "l"})
    blocks = {"kind": "file-blocks", "source": local, "block_size": 512, "delay": 0}
    assert reopenable(blocks)
    assert not reopenable({**blocks, "source": memory})
    assert not reopenable({"kind": "slice"})  # malformed


def test_hash_workers_reopen_any_reopenable_kind(tmp_path: Path) -> None:
    """The decision to hash in forked workers follows the table: a remote-like cached source
    is reopened there, a memory source is hashed in-process."""
    local = {"kind": "local", "path": str(tmp_path / "a.img")}
    blocks = {"kind": "file-blocks", "source": local, "block_size": 512, "delay": 0}
    memory = MemorySource(b"").locator
    assert VolumeRef(blocks, 0, 10).reopenable
    assert VolumeRef(memory, 0, 0, volume_locator=lvm_locator(blocks)).reopenable
    assert not VolumeRef(memory, 0, 10).reopenable
    assert not VolumeRef(blocks, 0, 10, volume_locator=lvm_locator(memory)).reopenable


def test_the_table_imports_an_opener_only_when_its_kind_is_opened(tmp_path: Path) -> None:
    (tmp_path / "a.img").write_bytes(b"abc" * 1000)
    script = (
        "import sys\n"
        "from scanner.sources.locators import open_locator\n"
        "before = {m for m in ('scanner.sources.cache', 'scanner.disk.lvm') if m in sys.modules}\n"
        f"local = {{'kind': 'local', 'path': {str(tmp_path / 'a.img')!r}}}\n"
        "s = open_locator({'kind': 'file-blocks', 'source': local, 'block_size': 512})\n"
        "print(sorted(before), s.read_at(2998, 5), 'scanner.sources.cache' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout == "[] b'bc' True\n"


def test_a_new_kind_is_one_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a.img").write_bytes(b"xyz" * 10)
    monkeypatch.setitem(KINDS, "test-store", LocatorKind(
        lazy("tests.sources.test_locators", "open_test_store"), needs("path")))
    locator = {"kind": "test-store", "path": str(tmp_path / "a.img")}
    assert reopenable(locator) and not reopenable({"kind": "test-store"})
    assert open_locator(locator).read_at(0, 4) == b"xyzx"


def open_test_store(locator: dict[str, Any]) -> BlockSource:
    """The opener of the ``test-store`` kind above: the file as a plain local source."""
    return open_local(locator["path"])
