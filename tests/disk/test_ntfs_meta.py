"""scanner.disk.ntfs_meta against real NTFS images from tests.imaging.ntfs (nothing mounted),
plus $SDS mirror handling and error translation with a fake pytsk3 handle."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
import pytsk3

from scanner.disk import ntfs_meta
from scanner.disk.ntfs_meta import NtfsMeta, Reparse, Stream
from scanner.errors import CorruptFilesystem, SourceReadError
from tests.fake_tsk import FakeAttr, FakeAttrInfo
from tests.imaging.hives import security_descriptor
from tests.imaging.ntfs import (
    FILE_ATTRIBUTE_HIDDEN,
    FILE_ATTRIBUTE_SYSTEM,
    Dir,
    Entry,
    File,
    Junction,
    Symlink,
    build_ntfs_tree,
)

MIB = 1 << 20
# O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)
SD_FILE = security_descriptor("S-1-5-32-544", "S-1-5-18",
                              [(0, 0x03, 0x1F01FF, "S-1-5-18"), (0, 0, 0x1200A9, "S-1-5-32-545")],
                              control=0x1400)
# O:SYG:SYD:AI(A;OICI;FA;;;BA)(A;OICIIO;GA;;;CO)
SD_DIR = security_descriptor("S-1-5-18", "S-1-5-18",
                             [(0, 0x03, 0x1F01FF, "S-1-5-32-544"),
                              (0, 0x0B, 0x10000000, "S-1-3-0")],
                             control=0x0400)
ZONE = b"[ZoneTransfer]\r\nZoneId=3\r\n"
BIG_ADS = hashlib.sha256(b"ads").digest() * (2 * MIB // 32)  # exactly 2 MiB, non-resident

TREE: dict[str, Entry] = {
    "Windows/System32/config/SOFTWARE": File(b"regf", security=SD_FILE),
    "Windows/System32/config/SYSTEM": File(b"regf-system"),
    "Windows/System32/config": Dir(security=SD_DIR),
    "pagefile.sys": File(b"\0" * 4096,
                         dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM),
    "Users/Public/setup.exe": File(b"MZ", streams={"Zone.Identifier": ZONE, "big": BIG_ADS}),
    "Documents and Settings": Junction("C:\\Users"),
    "Users/Public/readme-link.txt": Symlink("Downloads\\setup.exe"),
    "Users/Public/abs-link": Symlink("C:\\Windows\\System32", relative=False, directory=True),
}


@pytest.fixture(scope="module")
def fs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    image = build_ntfs_tree(tmp_path_factory.mktemp("ntfsmeta") / "win.img", TREE)
    return pytsk3.FS_Info(pytsk3.Img_Info(str(image)))


@pytest.fixture(scope="module")
def meta(fs: Any) -> Any:
    return NtfsMeta(fs)


def ino(fs: Any, path: str) -> int:
    return int(fs.open(path).info.meta.addr)


def test_custom_descriptors_exact(fs: Any, meta: Any) -> None:
    software = ino(fs, "/Windows/System32/config/SOFTWARE")
    assert meta.security_descriptor(software) == SD_FILE
    assert meta.acl(software) == "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)"
    config = ino(fs, "/Windows/System32/config")
    assert meta.security_descriptor(config) == SD_DIR
    assert meta.acl(config) == "O:SYG:SYD:AI(A;OICI;FA;;;BA)(A;OICIIO;GA;;;CO)"
    # libntfs-3g stores set descriptors in $Secure:$SDS (no 0x50 attribute): the $SDS path
    assert not any(int(a.info.type) == 0x50 for a in fs.open_meta(inode=software))
    assert meta._sds is not None and len(meta._sds) >= 2


def test_default_descriptor_attribute(fs: Any, meta: Any) -> None:
    system = ino(fs, "/Windows/System32/config/SYSTEM")
    assert any(int(a.info.type) == 0x50 for a in fs.open_meta(inode=system))
    sd = meta.security_descriptor(system)
    assert sd is not None and sd != SD_FILE
    acl = meta.acl(system)
    assert acl is not None and acl.startswith("O:")
    assert meta.acl(9) == "O:BAG:BAD:(A;;0x12019f;;;SY)(A;;0x12019f;;;BA)"  # $Secure, via $SDS


def test_acl_keeps_raw_bytes_when_sddl_fails(fs: Any, meta: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_sd: bytes) -> str:
        raise ValueError("conditional ACE")

    monkeypatch.setattr(ntfs_meta, "sddl_from_descriptor", refuse)
    assert meta.acl(ino(fs, "/Windows/System32/config/SOFTWARE")) == "0x" + SD_FILE.hex()


def test_dos_attributes(fs: Any, meta: Any) -> None:
    attrs = meta.dos_attributes(ino(fs, "/pagefile.sys"))
    assert attrs == FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM == 0x06
    assert ntfs_meta.format_attributes(attrs) == "hidden,system"
    assert meta.dos_attributes(ino(fs, "/Windows/System32/config/SYSTEM")) == 0x20  # archive
    link = meta.dos_attributes(ino(fs, "/Users/Public/readme-link.txt"))
    assert "reparse_point" in ntfs_meta.attribute_names(link)


def test_attribute_rendering() -> None:
    fmt = ntfs_meta.format_attributes
    assert fmt(0) == ""
    assert fmt(0x01 | 0x20) == "readonly,archive"
    assert fmt(0x400 | 0x800 | 0x4000 | 0x200) == "sparse,reparse_point,compressed,encrypted"
    assert fmt(0x10000000 | 0x8) == "directory_index,0x8"


def test_streams(fs: Any, meta: Any) -> None:
    setup = ino(fs, "/Users/Public/setup.exe")
    streams = meta.streams(setup)
    # MFT attribute order (names collated upper-case): "big" before "Zone.Identifier"
    assert [(s.name, s.size) for s in streams] == [("big", 2 * MIB),
                                                    ("Zone.Identifier", len(ZONE))]
    by_name = {s.name: s for s in streams}
    assert b"".join(meta.read_stream(setup, by_name["Zone.Identifier"])) == ZONE
    chunks = list(meta.read_stream(setup, by_name["big"], chunk=300_000))
    assert len(chunks) == -(-2 * MIB // 300_000)
    got = b"".join(chunks)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(BIG_ADS).hexdigest()
    assert got == BIG_ADS


def test_no_streams(fs: Any, meta: Any) -> None:
    assert meta.streams(ino(fs, "/pagefile.sys")) == []
    assert meta.streams(ino(fs, "/Windows/System32/config")) == []
    assert meta.reparse(ino(fs, "/pagefile.sys")) is None


def test_reparse_points(fs: Any, meta: Any) -> None:
    junction = meta.reparse(ino(fs, "/Documents and Settings"))
    assert junction == Reparse(0xA0000003, "junction", "C:\\Users")
    link = meta.reparse(ino(fs, "/Users/Public/readme-link.txt"))
    assert link == Reparse(0xA000000C, "symlink", "Downloads\\setup.exe", relative=True)
    absolute = meta.reparse(ino(fs, "/Users/Public/abs-link"))
    assert (absolute.kind, absolute.target, absolute.relative) == \
        ("symlink", "C:\\Windows\\System32", False)


def test_parse_reparse_variants() -> None:
    parse = ntfs_meta.parse_reparse
    # substitute name only (empty print name): falls back, strips \??\
    sub = "\\??\\D:\\data".encode("utf-16-le")
    body = struct.pack("<HHHH", 0, len(sub), len(sub) + 2, 0) + sub + b"\0\0"
    buf = struct.pack("<IHH", 0xA0000003, len(body), 0) + body
    assert parse(buf) == Reparse(0xA0000003, "junction", "D:\\data")
    other = struct.pack("<IHH", 0x8000001B, 4, 0) + b"abcd"  # e.g. AppExecLink-ish tag
    assert parse(other) == Reparse(0x8000001B, "other", None)
    with pytest.raises(ValueError):
        parse(buf[:20])
    with pytest.raises(ValueError):
        parse(b"\x0c\x00")


def test_bad_inode_is_corrupt_filesystem(meta: Any) -> None:
    with pytest.raises(CorruptFilesystem, match="inode 99999999"):
        meta.streams(99_999_999)


# -- fake pytsk3 objects: $SDS layout with mirrors, read errors ---------------------------------
class _Handle:
    def __init__(self, attrs: dict[tuple[int, bytes | None], bytes], fail: bool = False) -> None:
        self.attrs = attrs
        self.fail = fail
        self.reads: list[int] = []

    def __iter__(self) -> Any:
        return iter([FakeAttr(FakeAttrInfo(t, n, len(v), i)) for i, ((t, n), v)
                     in enumerate(self.attrs.items())])

    def read_random(self, off: int, n: int, atype: int, attr_id: int) -> bytes:
        if self.fail:
            raise OSError("tsk3.cpp:123) Error reading image file (truncated)")
        self.reads.append(off)
        value = list(self.attrs.values())[attr_id]
        return value[off:off + n]


class _Fs:
    def __init__(self, handles: dict[int, _Handle]) -> None:
        self.handles = handles

    def open_meta(self, inode: int) -> _Handle:
        if inode not in self.handles:
            raise OSError("tsk3.cpp:99) Invalid inode number")
        return self.handles[inode]


def _sds_entry(sec_id: int, position: int, sd: bytes) -> bytes:
    raw = struct.pack("<IIQI", 0x1234, sec_id, position, 20 + len(sd)) + sd
    return raw + b"\0" * (-len(raw) % 16)


def _si(security_id: int, attrs: int = 0x20) -> bytes:
    si = bytearray(72)
    struct.pack_into("<I", si, 0x20, attrs)
    struct.pack_into("<I", si, 0x34, security_id)
    return bytes(si)


def test_sds_mirror_blocks_are_skipped() -> None:
    block = 0x40000
    sd_a, sd_b, sd_c = (security_descriptor(o, "S-1-5-18", []) for o in
                        ("S-1-5-18", "S-1-5-32-544", "S-1-1-0"))
    first = _sds_entry(256, 0, sd_a)
    first += _sds_entry(257, len(first), sd_b)
    first = first.ljust(block, b"\0")
    second = _sds_entry(300, 2 * block, sd_c).ljust(block, b"\0")
    sds = first + first + second + second[:500]  # each block followed by its (cut) mirror
    secure = _Handle({(0x10, None): _si(0), (0x80, b"$SDS"): sds})
    fake = _Fs({9: secure, 40: _Handle({(0x10, None): _si(300)}),
                41: _Handle({(0x10, None): _si(999)}), 42: _Handle({(0x10, None): _si(257)})})
    meta = NtfsMeta(fake)
    assert meta.security_descriptor(40) == sd_c
    assert meta.security_descriptor(42) == sd_b
    assert meta._sds == {256: sd_a, 257: sd_b, 300: sd_c}
    assert secure.reads == [0, 2 * block]  # primary blocks only, loaded once
    with pytest.raises(CorruptFilesystem, match="security id 999"):
        meta.security_descriptor(41)


def test_read_errors_translated() -> None:
    fake = _Fs({7: _Handle({(0x10, None): _si(0), (0x80, b"ads"): b"x" * 10}, fail=True),
                9: _Handle({(0x10, None): _si(0)})})
    meta = NtfsMeta(fake)
    with pytest.raises(SourceReadError, match="inode 7.*Error reading image file"):
        meta.dos_attributes(7)
    with pytest.raises(SourceReadError):
        list(meta.read_stream(7, Stream("ads", 10, 1)))
    with pytest.raises(CorruptFilesystem, match="inode 8: Invalid inode number"):
        meta.reparse(8)
    ok = NtfsMeta(_Fs({9: _Handle({(0x10, None): _si(0)}), 5: _Handle({(0x10, None): _si(5)})}))
    with pytest.raises(CorruptFilesystem, match=r"\$SDS"):
        ok.security_descriptor(5)


def test_short_standard_information() -> None:
    si48 = _si(0, attrs=0x06)[:48]
    meta = NtfsMeta(_Fs({3: _Handle({(0x10, None): si48})}))
    assert meta.dos_attributes(3) == 0x06
    assert meta.security_descriptor(3) is None and meta.acl(3) is None
