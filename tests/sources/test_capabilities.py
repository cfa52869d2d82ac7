"""Capabilities asked through the protocol: local_file(), whole_local_path(), disk_offset(),
and the readers that use them (pytsk3's native image, the pread fast path of SourceFile)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytsk3

from scanner.disk.tsk_image import SourceImgInfo, open_image
from scanner.sources.base import LocalFile, SliceSource, disk_offset, local_file, whole_local_path
from scanner.sources.cache import CachedSource, CacheSettings, FileFetcher
from scanner.sources.fileobj import SourceFile
from scanner.sources.local import open_local
from scanner.sources.lvm import Extent, LvmVolumeSource
from scanner.sources.memory import MemorySource
from tests.imaging.vhd import append_vhd_footer

DATA = random.Random(5).randbytes(200_000)


def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(DATA)
    return path


def test_a_slice_of_a_slice_of_a_local_file_gives_its_fd_and_summed_offset(
        tmp_path: Path) -> None:
    with open_local(image(tmp_path)) as disk:
        inner = SliceSource(disk, 4096, 100_000)
        outer = SliceSource(inner, 512, 50_000)
        found = local_file(outer)
        assert found == LocalFile(str(disk.path), disk.fileno(), 4608, len(DATA))
        assert os.pread(found.fd, 10, found.offset) == outer.read_at(0, 10)
        assert disk_offset(outer) == 4608
        assert disk_offset(inner) == 4096 and disk_offset(disk) == 0
        assert whole_local_path(outer) is None  # not the whole file
        assert whole_local_path(disk) == str(disk.path)
        assert whole_local_path(SliceSource(disk, 0, disk.size)) == str(disk.path)


def test_a_fixed_vhd_has_an_fd_but_no_whole_path(tmp_path: Path) -> None:
    path = append_vhd_footer(image(tmp_path))
    with open_local(path) as disk:
        assert disk.size == len(DATA)
        found = local_file(disk)
        assert found is not None and (found.offset, found.file_size) == (0, len(DATA) + 512)
        assert whole_local_path(disk) is None  # the native readers would see the footer
        assert isinstance(open_image(disk), SourceImgInfo)


def test_sources_that_are_no_local_file_say_so(tmp_path: Path) -> None:
    memory = MemorySource(DATA)
    assert local_file(memory) is None and local_file(SliceSource(memory, 10, 10)) is None
    assert disk_offset(SliceSource(memory, 10, 10)) == 10
    with open_local(image(tmp_path)) as disk:
        cached = CachedSource(FileFetcher(disk, 1 << 16), CacheSettings(cache_bytes=1 << 20))
        assert local_file(cached) is None and disk_offset(cached) == 0
        cached.close()
        lv = LvmVolumeSource([Extent(0, 1000, disk, 5000)], 1000, {"kind": "lvm"})
        assert local_file(lv) is None
        assert disk_offset(lv) is None and disk_offset(SliceSource(lv, 10, 10)) is None
    assert local_file(disk) is None  # closed: no fd to lend


class Bare:
    """A source with none of the optional capabilities."""

    size = 3
    locator: dict[str, Any] = {"kind": "memory", "name": "bare"}

    def read_at(self, offset: int, length: int) -> bytes:
        return b"abc"[offset:offset + length]

    def close(self) -> None:
        pass


def test_a_source_without_capabilities_is_a_whole_disk_with_no_file() -> None:
    assert local_file(Bare()) is None
    assert disk_offset(Bare()) == 0
    assert whole_local_path(Bare()) is None


def test_tsk_uses_its_native_image_only_for_a_whole_raw_file(tmp_path: Path) -> None:
    with open_local(image(tmp_path)) as disk:
        native = open_image(disk)
        assert type(native) is pytsk3.Img_Info
        assert native.read(100, 50) == DATA[100:150]
        assert type(open_image(SliceSource(disk, 0, disk.size))) is pytsk3.Img_Info
        adapted = open_image(SliceSource(disk, 512, 1000))
        assert isinstance(adapted, SourceImgInfo)
        assert adapted.read(0, 10) == DATA[512:522]
    assert isinstance(open_image(MemorySource(DATA)), SourceImgInfo)


def test_source_file_preads_a_local_slice_and_reads_others(tmp_path: Path) -> None:
    with open_local(image(tmp_path)) as disk:
        fast = SourceFile(SliceSource(SliceSource(disk, 1000, 100_000), 24, 5000))
        assert fast._fd == disk.fileno()  # noqa: SLF001 - the pread path is taken
        fast.seek(4990)
        assert fast.read(100) == DATA[1024 + 4990:1024 + 5000]  # bounded by the slice
    slow = SourceFile(SliceSource(MemorySource(DATA), 1024, 5000))
    assert slow._fd == -1  # noqa: SLF001
    slow.seek(4990)
    assert slow.read(100) == DATA[1024 + 4990:1024 + 5000]
