"""tests.imaging.ntfs: real NTFS images written through libntfs-3g, checked with pytsk3 and
the ntfs-3g tools (ntfsfix, ntfsls, ntfssecaudit). Nothing is mounted."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytsk3

from scanner.sddl import sddl_from_descriptor
from tests.imaging.hives import security_descriptor
from tests.imaging.ntfs import (
    DEFAULT_TIME,
    FILE_ATTRIBUTE_HIDDEN,
    FILE_ATTRIBUTE_SYSTEM,
    Dir,
    Entry,
    File,
    Junction,
    Symlink,
    build_ntfs_tree,
    unix_ns_to_filetime,
)

MIB = 1 << 20
T_FILE = (1_600_000_000_123_456_700, 1_600_000_100_000_000_000,
          1_600_000_200_000_000_000, 1_600_000_300_000_000_000)  # crtime, mtime, ctime, atime
T_DIR = (1_500_000_000_000_000_000, 1_500_000_001_000_000_000,
         1_500_000_002_000_000_000, 1_500_000_003_000_000_000)
# O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)
SD_FILE = security_descriptor("S-1-5-32-544", "S-1-5-18",
                              [(0, 0x03, 0x1F01FF, "S-1-5-18"), (0, 0, 0x1200A9, "S-1-5-32-545")],
                              control=0x1400)
# O:SYG:SYD:AI(A;OICI;FA;;;BA)(A;OICIIO;GA;;;CO)
SD_DIR = security_descriptor("S-1-5-18", "S-1-5-18",
                             [(0, 0x03, 0x1F01FF, "S-1-5-32-544"),
                              (0, 0x0B, 0x10000000, "S-1-3-0")],
                             control=0x0400)
SOFTWARE = b"regf" + bytes(range(256)) * 40
BIG = hashlib.sha256(b"seed").digest() * (3 * MIB // 64 + 5)  # > 1 MiB: non-resident
ZONE = b"[ZoneTransfer]\r\nZoneId=3\r\n"

TREE: dict[str, Entry] = {
    "Windows/System32/config/SOFTWARE": File(SOFTWARE, times=T_FILE, security=SD_FILE),
    "Windows/System32/config/SYSTEM": File(b"regf-system"),
    "Windows/System32/config": Dir(times=T_DIR, security=SD_DIR),
    "Windows\\System32\\drivers\\etc\\hosts": File(b"127.0.0.1 localhost\r\n"),
    "Users/Public/Downloads/setup.exe": File(b"MZ\x90\x00", streams={"Zone.Identifier": ZONE},
                                             links=["Windows/Temp/setup-copy.exe"]),
    "Windows/Temp": Dir(),
    "pagefile.sys": File(b"\0" * 4096,
                         dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM),
    "big.bin": File(BIG),
    "Documents and Settings": Junction("C:\\Users"),
    "Users/Public/readme-link.txt": Symlink("Downloads\\setup.exe"),
}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ntfs_tree(tmp_path_factory.mktemp("ntfs") / "win.img", TREE)


@pytest.fixture(scope="module")
def fs(image: Path) -> Any:
    return pytsk3.FS_Info(pytsk3.Img_Info(str(image)))


def read_attr(f: Any, atype: int, name: bytes | None = None) -> bytes:
    for attr in f:
        if int(attr.info.type) == atype and attr.info.name == name:
            return bytes(f.read_random(0, attr.info.size, atype, attr.info.id))
    raise KeyError((atype, name))


def security_of(fs: Any, f: Any) -> bytes:
    """0x50 attribute if present, else $STANDARD_INFORMATION.security_id looked up in $SDS."""
    try:
        return read_attr(f, 0x50)
    except KeyError:
        pass
    si = read_attr(f, 0x10)
    assert len(si) == 72
    (sec_id,) = struct.unpack_from("<I", si, 0x34)
    sds = read_attr(fs.open_meta(inode=9), 0x80, b"$SDS")
    off = 0
    while off + 20 <= len(sds):
        _hash, sid, _self_off, length = struct.unpack_from("<IIQI", sds, off)
        if length == 0:  # end of this 256 KiB block: skip its mirror block
            off = (off // 0x40000 + 2) * 0x40000
            continue
        if sid == sec_id:
            return sds[off + 20:off + length]
        off = (off + length + 15) & ~15
    raise KeyError(sec_id)


def test_content_and_nested_directories(fs: Any) -> None:
    f = fs.open("/Windows/System32/config/SOFTWARE")
    assert f.read_random(0, f.info.meta.size) == SOFTWARE
    assert fs.open("/Windows/System32/config/SYSTEM").read_random(0, 11) == b"regf-system"
    hosts = fs.open("/Windows/System32/drivers/etc/hosts")
    assert hosts.read_random(0, 100) == b"127.0.0.1 localhost\r\n"
    names = {e.info.name.name for e in fs.open_dir("/Windows/System32")
             if e.info.name.flags & pytsk3.TSK_FS_NAME_FLAG_ALLOC}
    assert {b"config", b"drivers"} <= names
    big = fs.open("/big.bin")
    assert big.info.meta.size == len(BIG) > MIB
    got = b"".join(big.read_random(o, MIB) for o in range(0, len(BIG), MIB))
    assert got == BIG
    data_attr = next(a for a in big if int(a.info.type) == 0x80)
    assert data_attr.info.flags & pytsk3.TSK_FS_ATTR_NONRES


def test_alternate_data_stream(fs: Any) -> None:
    f = fs.open("/Users/Public/Downloads/setup.exe")
    streams = {a.info.name: a for a in f if int(a.info.type) == 0x80}
    assert set(streams) == {None, b"Zone.Identifier"}
    ads = streams[b"Zone.Identifier"]
    assert f.read_random(0, ads.info.size, pytsk3.TSK_FS_ATTR_TYPE_NTFS_DATA,
                         ads.info.id) == ZONE
    assert f.read_random(0, 100) == b"MZ\x90\x00"


def test_hard_link(fs: Any) -> None:
    a = fs.open("/Users/Public/Downloads/setup.exe")
    b = fs.open("/Windows/Temp/setup-copy.exe")
    assert a.info.meta.addr == b.info.meta.addr
    assert a.info.meta.nlink == 2
    assert b.read_random(0, 4) == b"MZ\x90\x00"
    assert sum(1 for x in a if int(x.info.type) == 0x30) == 2  # two $FILE_NAME


def test_fixed_timestamps(fs: Any) -> None:
    for path, times in (("/Windows/System32/config/SOFTWARE", T_FILE),
                        ("/Windows/System32/config", T_DIR),
                        ("/Windows/System32/config/SYSTEM", (DEFAULT_TIME,) * 4),
                        ("/", (DEFAULT_TIME,) * 4)):
        m = fs.open(path).info.meta
        got = [(m.crtime, m.crtime_nano), (m.mtime, m.mtime_nano), (m.ctime, m.ctime_nano),
               (m.atime, m.atime_nano)]
        assert got == [divmod(t, 10**9) for t in times], path
    # $FILE_NAME in the MFT record carries the same times (no wall clock anywhere)
    fn = read_attr(fs.open("/Windows/System32/config/SOFTWARE"), 0x30)
    assert struct.unpack_from("<4Q", fn, 8) == tuple(unix_ns_to_filetime(t) for t in T_FILE)


def test_security_descriptors(fs: Any) -> None:
    f = fs.open("/Windows/System32/config/SOFTWARE")
    assert security_of(fs, f) == SD_FILE
    assert sddl_from_descriptor(security_of(fs, f)) == \
        "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)"
    d = fs.open("/Windows/System32/config")
    assert security_of(fs, d) == SD_DIR
    # files without a descriptor keep libntfs-3g's default $SECURITY_DESCRIPTOR attribute
    other = security_of(fs, fs.open("/Windows/System32/config/SYSTEM"))
    assert other != SD_FILE and sddl_from_descriptor(other).startswith("O:")


def test_security_with_ntfssecaudit(image: Path) -> None:
    out = subprocess.run(["ntfssecaudit", str(image), "/Windows/System32/config/SOFTWARE"],
                         capture_output=True, text=True, check=True).stdout
    assert "Windows owner S-1-5-32-544" in out and "Windows group S-1-5-18" in out
    audit = subprocess.run(["ntfssecaudit", "-a", str(image)], capture_output=True,
                           text=True, check=True).stdout
    assert "No errors were found" in audit


def test_dos_attributes(fs: Any) -> None:
    si = read_attr(fs.open("/pagefile.sys"), 0x10)
    (attrs,) = struct.unpack_from("<I", si, 0x20)
    assert attrs == FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM
    si = read_attr(fs.open("/Windows/System32/config/SYSTEM"), 0x10)
    hidden_system = FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM
    assert struct.unpack_from("<I", si, 0x20)[0] & hidden_system == 0


def test_reparse_points(fs: Any) -> None:
    j = fs.open("/Documents and Settings")
    assert j.info.meta.type == pytsk3.TSK_FS_META_TYPE_DIR
    rp = read_attr(j, 0xC0)
    tag, _len, _res, soff, slen, poff, plen = struct.unpack_from("<IHHHHHH", rp)
    assert tag == 0xA0000003
    assert rp[16 + soff:16 + soff + slen].decode("utf-16-le") == "\\??\\C:\\Users"
    assert rp[16 + poff:16 + poff + plen].decode("utf-16-le") == "C:\\Users"
    s = fs.open("/Users/Public/readme-link.txt")
    rp = read_attr(s, 0xC0)
    tag, _len, _res, soff, slen, _poff, _plen, flags = struct.unpack_from("<IHHHHHHI", rp)
    assert (tag, flags) == (0xA000000C, 1)
    assert rp[20 + soff:20 + soff + slen].decode("utf-16-le") == "Downloads\\setup.exe"
    si = read_attr(s, 0x10)
    assert struct.unpack_from("<I", si, 0x20)[0] & 0x400  # FILE_ATTRIBUTE_REPARSE_POINT


def test_ntfs_tools_accept_image(image: Path) -> None:
    fix = subprocess.run(["ntfsfix", "-n", str(image)], capture_output=True, text=True)
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert "processed successfully" in fix.stdout
    ls = subprocess.run(["ntfsls", "-R", str(image)], capture_output=True, text=True,
                        check=True).stdout
    for name in ("SOFTWARE", "setup.exe", "setup-copy.exe", "pagefile.sys", "hosts"):
        assert name in ls


def test_deterministic(tmp_path: Path, image: Path) -> None:
    again = build_ntfs_tree(tmp_path / "again.img", TREE)
    assert again.read_bytes() == image.read_bytes()


def test_partition_offset(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(40 * MIB)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, size=65536, "
                   "type=7\n", text=True, check=True, capture_output=True)
    build_ntfs_tree(disk, {"Windows/win.ini": File(b"[fonts]\r\n")}, size_mb=32,
                    offset=2048 * 512, label="OS")
    img = pytsk3.Img_Info(str(disk))
    vs = pytsk3.Volume_Info(img)
    parts = [p for p in vs if p.flags & pytsk3.TSK_VS_PART_FLAG_ALLOC]
    assert [p.start for p in parts] == [2048]
    part_fs = pytsk3.FS_Info(img, offset=2048 * 512)
    assert part_fs.info.ftype == pytsk3.TSK_FS_TYPE_NTFS
    assert part_fs.open("/Windows/win.ini").read_random(0, 100) == b"[fonts]\r\n"
    with open(disk, "rb") as f:  # hidden sectors field of the boot sector = partition start
        f.seek(2048 * 512 + 0x1C)
        assert struct.unpack("<I", f.read(4))[0] == 2048


def test_large_directory_unicode_names_and_big_stream(tmp_path: Path) -> None:
    tree: dict[str, Entry] = {
        f"Windows/WinSxS/entry-{i:04d}-Ünïcødé.manifest": File(b"x" * i, times=(i * 10**9,) * 4)
        for i in range(400)}  # several $I30 index blocks ($INDEX_ALLOCATION)
    tree["Windows/WinSxS/big-ads.txt"] = File(b"a", streams={"big": b"y" * (2 * MIB)})
    image = build_ntfs_tree(tmp_path / "sxs.img", tree)
    assert subprocess.run(["ntfsfix", "-n", str(image)], capture_output=True).returncode == 0
    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(image)))
    names = {e.info.name.name.decode() for e in fs.open_dir("/Windows/WinSxS")
             if e.info.name.flags & pytsk3.TSK_FS_NAME_FLAG_ALLOC} - {".", ".."}
    assert len(names) == 401 and "entry-0123-Ünïcødé.manifest" in names
    m = fs.open("/Windows/WinSxS/entry-0399-Ünïcødé.manifest").info.meta
    assert (m.size, m.mtime, m.crtime) == (399, 399, 399)
    f = fs.open("/Windows/WinSxS/big-ads.txt")
    ads = next(a for a in f if a.info.name == b"big")
    assert ads.info.size == 2 * MIB
    assert f.read_random(2 * MIB - 4, 4, pytsk3.TSK_FS_ATTR_TYPE_NTFS_DATA, ads.info.id) == b"yyyy"
