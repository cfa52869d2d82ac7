"""Raw ext inodes read in chunks of their table (scanner.disk.ext_geometry.ExtInodeReader):
the same bytes as one read per inode, far fewer reads, bounded, and an inode past the end of
a truncated image is still refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.disk.ext_geometry import ExtInodeReader
from scanner.errors import SourceReadError
from tests.imaging.ext4 import build_ext4, inode_info


def _reader(image: Path, limit: int | None = None) -> tuple[ExtInodeReader, list[int]]:
    data = image.read_bytes()[:limit]
    reads: list[int] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append(length)
        return data[offset:offset + length]

    return ExtInodeReader(read_at), reads


def test_inodes_come_from_chunks_of_their_table(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    for i in range(40):
        (src / "etc" / f"f{i:02d}").write_text(f"file {i}\n")
    image = build_ext4(src, tmp_path / "x.img", size_mb=8)
    reader, reads = _reader(image)
    size = reader.inode_size
    table = reader._inode_table(0)
    raw = image.read_bytes()
    reads.clear()
    inodes = range(1, 60)
    got = [reader.inode(n) for n in inodes]
    assert got == [raw[table + (n - 1) * size:table + n * size] for n in inodes]
    chunks = {(table + (n - 1) * size) // 4096 for n in inodes}  # aligned on the disk
    assert len(reads) == len(chunks) < 10  # one read per 4 KiB of the table, not per inode
    last = inode_info(image, "/etc/f39")["inode"]
    assert reader.inode(last)[:2] == raw[table + (last - 1) * size:][:2]
    for n in range(1, 64 * 4096 // size + 200, 16):  # many chunks: the kept ones stay bounded
        reader.inode(n if n <= reader.inodes_count else 1)
    assert len(reader._chunks) <= 64


def test_an_inode_past_the_end_of_a_truncated_image_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    image = build_ext4(src, tmp_path / "x.img", size_mb=8)
    whole, _ = _reader(image)
    table, size = whole._inode_table(0), whole.inode_size
    reader, _ = _reader(image, limit=table + 20 * size + 100)  # ends inside inode 21
    assert reader.inode(20) == whole.inode(20)
    with pytest.raises(SourceReadError):
        reader.inode(21)
    with pytest.raises(SourceReadError):
        reader.inode(40)
