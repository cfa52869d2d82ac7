"""Windows file entities from real NTFS images (tests.imaging.ntfs, nothing mounted): SDDL,
DOS attributes, alternate data streams, reparse targets, times, and a walk of a translated
``%windir%`` pattern; plus NtfsMeta.describe's single open with a fake pytsk3 handle."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
import pytsk3

from scanner.collectors.windows_files import windows_entities
from scanner.disk.nodes import FsIdentity
from scanner.disk.ntfs_meta import NtfsFileInfo, NtfsMeta, Reparse, Stream
from scanner.disk.tsk_fs import TskFilesystem
from scanner.disk.walker import Found, Mount, Walker
from scanner.entities import FileEntity
from scanner.errors import CorruptFilesystem, SourceReadError
from scanner.policy import make_entity
from scanner.winpaths import system_variables, to_windows, walk_entity
from tests.fake_tsk import FakeAttr, FakeAttrInfo
from tests.imaging.hives import security_descriptor
from tests.imaging.ntfs import (
    DEFAULT_TIME,
    FILE_ATTRIBUTE_ARCHIVE,
    FILE_ATTRIBUTE_HIDDEN,
    FILE_ATTRIBUTE_READONLY,
    FILE_ATTRIBUTE_SYSTEM,
    Entry,
    File,
    Junction,
    Symlink,
    _reparse_symlink,
    build_ntfs_tree,
)

MIB = 1 << 20
# O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)
SD_FILE = security_descriptor("S-1-5-32-544", "S-1-5-18",
                              [(0, 0x03, 0x1F01FF, "S-1-5-18"), (0, 0, 0x1200A9, "S-1-5-32-545")],
                              control=0x1400)
SDDL_FILE = "O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;;0x1200a9;;;BU)"
ZONE = b"[ZoneTransfer]\r\nZoneId=3\r\n"
BIG_ADS = bytes(range(256)) * (3 * MIB // 256 + 7)  # 3 MiB + 1792 bytes, non-resident
# (crtime, mtime, ctime, atime) with 100 ns digits everywhere
TIMES = (1_600_000_000_123_456_700, 1_700_000_001_234_567_800, 1_700_000_002_345_678_900,
         1_700_000_003_456_789_000)

TREE: dict[str, Entry] = {
    "Windows/System32/config/SOFTWARE": File(b"regf", security=SD_FILE, times=TIMES),
    "Windows/win.ini": File(b"; for 16-bit app support\r\n",
                            dos_attributes=FILE_ATTRIBUTE_READONLY | FILE_ATTRIBUTE_ARCHIVE),
    "Windows/SYSTEM.INI": File(b"[drivers]\r\n"),
    "Windows/Setup.Ini": File(b"x"),
    "Windows/notes.txt": File(b"not an ini"),
    "Windows/ini.d/a.ini": File(b"deeper: not matched by Windows\\*.INI"),
    "pagefile.sys": File(b"\0" * 4096,
                         dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM),
    "Users/Public/setup.exe": File(b"MZ", streams={"Zone.Identifier": ZONE, "big": BIG_ADS}),
    "Users/Public/empty.txt": File(b"", streams={"empty": b""}),
    "Documents and Settings": Junction("C:\\Users"),
    "Users/Public/readme-link.txt": Symlink("setup.exe"),
    "Users/Public/abs-link": Symlink("C:\\Windows\\System32", relative=False, directory=True),
}


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Mount:
    image = build_ntfs_tree(tmp_path_factory.mktemp("winfiles") / "win.img", TREE)
    fs = TskFilesystem(pytsk3.Img_Info(str(image)), 0, FsIdentity())
    return Mount("/", fs, "p1")


def walk(mount: Mount, *paths: str) -> dict[str, Found]:
    walker = Walker([mount])
    for path in paths:
        walker.walk_entity(make_entity(path, depth=0))
    return walker.result.found


def entities_of(mount: Mount, posix: str) -> tuple[list[FileEntity], dict[str, str]]:
    found = walk(mount, posix)[posix]
    return windows_entities(to_windows(posix), found, ("p",))


def test_ntfs_meta_is_cached_per_volume(mount: Mount) -> None:
    fs = mount.fs
    assert isinstance(fs, TskFilesystem)
    assert fs.ntfs_meta() is fs.ntfs_meta()
    other = TskFilesystem.__new__(TskFilesystem)
    other.is_ntfs, other.fs_type = False, "ext4"
    with pytest.raises(ValueError, match="ext4"):
        other.ntfs_meta()


def test_file_with_descriptor_and_times(mount: Mount) -> None:
    path = "/Windows/System32/config/SOFTWARE"
    found = walk(mount, path)[path]
    entities, unreadable = windows_entities("C:\\Windows\\System32\\config\\SOFTWARE", found,
                                            ("win", "reg"))
    assert unreadable == {}
    assert entities == [FileEntity(
        path="C:\\Windows\\System32\\config\\SOFTWARE", type="file", size=4, mode=0, uid=0,
        gid=0, crtime=TIMES[0], mtime=TIMES[1], ctime=TIMES[2], atime=TIMES[3],
        inode=found.node.inode, nlink=1, link_target=None, sha256=None, acl=SDDL_FILE,
        attributes="archive", policies=("win", "reg"))]


def test_dos_attributes(mount: Mount) -> None:
    (page,), _ = entities_of(mount, "/pagefile.sys")
    assert page.attributes == "hidden,system"
    (ini,), _ = entities_of(mount, "/Windows/win.ini")
    assert ini.attributes == "readonly,archive"
    assert (ini.mtime, ini.ctime, ini.crtime, ini.atime) == (DEFAULT_TIME,) * 4
    assert ini.acl is not None and ini.acl.startswith("O:")  # libntfs-3g's default descriptor


def test_alternate_data_streams(mount: Mount) -> None:
    entities, unreadable = entities_of(mount, "/Users/Public/setup.exe")
    assert unreadable == {}
    node, big, zone = entities
    assert (node.path, node.type, node.size, node.sha256) == \
        ("C:\\Users\\Public\\setup.exe", "file", 2, None)
    common = dict(type="stream", mode=0, uid=0, gid=0, mtime=None, ctime=None, crtime=None,
                  atime=None, inode=node.inode, nlink=1, link_target=None, acl=None,
                  attributes=None, policies=("p",))
    assert big == FileEntity(path="C:\\Users\\Public\\setup.exe:big", size=len(BIG_ADS),
                             sha256=hashlib.sha256(BIG_ADS).hexdigest(), **common)
    assert zone == FileEntity(path="C:\\Users\\Public\\setup.exe:Zone.Identifier",
                              size=len(ZONE), sha256=hashlib.sha256(ZONE).hexdigest(), **common)
    (_, empty), _ = entities_of(mount, "/Users/Public/empty.txt")
    assert (empty.path, empty.size, empty.sha256) == (
        "C:\\Users\\Public\\empty.txt:empty", 0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_reparse_targets(mount: Mount) -> None:
    (junction,), _ = entities_of(mount, "/Documents and Settings")
    assert (junction.type, junction.link_target) == ("directory", "C:\\Users")
    assert junction.attributes is not None and "reparse_point" in junction.attributes
    (rel,), _ = entities_of(mount, "/Users/Public/readme-link.txt")
    assert (rel.type, rel.link_target) == ("file", "setup.exe")
    (absolute,), _ = entities_of(mount, "/Users/Public/abs-link")
    assert (absolute.type, absolute.link_target) == ("directory", "C:\\Windows\\System32")
    (plain,), _ = entities_of(mount, "/pagefile.sys")
    assert plain.link_target is None


def test_unreadable_stream_is_reported(mount: Mount, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(mount.fs, TskFilesystem)
    meta = mount.fs.ntfs_meta()
    real = meta.read_stream

    def read_stream(inode: int, stream: Stream, chunk: int = MIB) -> Any:
        if stream.name == "big":
            yield b"partial"
            raise SourceReadError(f"read of inode {inode} at 1048576 failed: truncated")
        yield from real(inode, stream, chunk)

    monkeypatch.setattr(meta, "read_stream", read_stream)
    entities, unreadable = entities_of(mount, "/Users/Public/setup.exe")
    assert [(e.path, e.sha256) for e in entities] == [
        ("C:\\Users\\Public\\setup.exe", None),
        ("C:\\Users\\Public\\setup.exe:big", None),
        ("C:\\Users\\Public\\setup.exe:Zone.Identifier", hashlib.sha256(ZONE).hexdigest())]
    assert unreadable == {"C:\\Users\\Public\\setup.exe:big":
                          f"read of inode {entities[0].inode} at 1048576 failed: truncated"}


def test_node_metadata_errors_propagate(mount: Mount) -> None:
    found = walk(mount, "/pagefile.sys")["/pagefile.sys"]
    bogus = Found(dataclasses.replace(found.node, inode=99_999_999), mount)
    with pytest.raises(CorruptFilesystem, match="inode 99999999"):
        windows_entities("C:\\pagefile.sys", bogus, ())


def test_not_ntfs_gives_node_metadata_only(mount: Mount) -> None:
    found = walk(mount, "/pagefile.sys")["/pagefile.sys"]
    fat = Found(found.node, Mount("/", object(), "p2"))  # type: ignore[arg-type]
    (entity,), unreadable = windows_entities("C:\\pagefile.sys", fat, ())
    assert (entity.acl, entity.attributes, entity.link_target, unreadable) == \
        (None, None, None, {})
    assert entity.size == 4096


def test_walk_translated_windir_pattern(mount: Mount) -> None:
    entity = make_entity("%WinDir%\\*.INI", name="ini files",
                         excludes=("c:\\windows\\SETUP.ini",))
    walk_as = walk_entity(entity, system_variables("/Windows"))
    assert not isinstance(walk_as, str)
    assert (walk_as.path, walk_as.excludes, walk_as.depth) == \
        ("/Windows/*.INI", ("/windows/SETUP.ini",), 0)  # excludes match any case
    assert walk_as.is_pattern and not walk_as.case_sensitive
    walker = Walker([mount])
    walker.walk_entity(walk_as)
    found = walker.result.found
    assert sorted(found) == ["/Windows/SYSTEM.INI", "/Windows/win.ini"]  # on-disk spelling
    assign = walker.result.policy_assigner()
    assert assign("/Windows/win.ini") == ("ini files",)
    assert [to_windows(p) for p in sorted(found)] == \
        ["C:\\Windows\\SYSTEM.INI", "C:\\Windows\\win.ini"]


def test_walk_translated_directory_case_insensitive(mount: Mount) -> None:
    walk_as = walk_entity(make_entity("c:\\USERS\\public", name="public", depth=1),
                          system_variables("/Windows"))
    assert not isinstance(walk_as, str)
    walker = Walker([mount])
    walker.walk_entity(walk_as)
    assert sorted(walker.result.found) == [
        "/Users/Public", "/Users/Public/abs-link", "/Users/Public/empty.txt",
        "/Users/Public/readme-link.txt", "/Users/Public/setup.exe"]


# -- describe(): one open, one attribute listing (fake pytsk3 handle) -----------------------------
class _Handle:
    def __init__(self, attrs: list[tuple[int, bytes | None, bytes]]) -> None:
        self.attrs = attrs
        self.listings = 0

    def __iter__(self) -> Any:
        self.listings += 1
        return iter([FakeAttr(FakeAttrInfo(t, n, len(v), i))
                     for i, (t, n, v) in enumerate(self.attrs)])

    def read_random(self, off: int, n: int, atype: int, attr_id: int) -> bytes:
        return self.attrs[attr_id][2][off:off + n]


class _Fs:
    def __init__(self, handle: _Handle) -> None:
        self.handle = handle
        self.opens = 0

    def open_meta(self, inode: int) -> _Handle:
        self.opens += 1
        return self.handle


def test_describe_opens_and_lists_once() -> None:
    si = bytearray(72)
    si[0x20] = FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM
    handle = _Handle([(0x10, None, bytes(si)), (0x50, None, SD_FILE), (0x80, None, b"MZ"),
                      (0x80, b"Zone.Identifier", ZONE),
                      (0xC0, None, _reparse_symlink("x", relative=True))])
    fs = _Fs(handle)
    info = NtfsMeta(fs).describe(40)
    assert info == NtfsFileInfo(acl=SDDL_FILE, attributes=0x06,
                                streams=(Stream("Zone.Identifier", len(ZONE), 3),),
                                reparse=Reparse(0xA000000C, "symlink", "x", relative=True),
                                times=(None, None, None, None))
    assert (fs.opens, handle.listings) == (1, 1)


def test_describe_renders_each_descriptor_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from scanner.disk import ntfs_meta

    rendered: list[bytes] = []

    def render(sd: bytes) -> str:
        rendered.append(sd)
        return "O:SY"

    monkeypatch.setattr(ntfs_meta, "sddl_from_descriptor", render)
    meta = NtfsMeta(_Fs(_Handle([(0x10, None, bytes(72)), (0x50, None, SD_FILE)])))
    assert [meta.describe(n).acl for n in (40, 41, 42)] == ["O:SY"] * 3
    assert rendered == [SD_FILE]


def test_describe_on_image_matches_single_methods(mount: Mount) -> None:
    assert isinstance(mount.fs, TskFilesystem)
    meta = mount.fs.ntfs_meta()
    for posix in ("/Users/Public/setup.exe", "/Documents and Settings", "/pagefile.sys",
                  "/Windows/System32/config/SOFTWARE"):
        node = walk(mount, posix)[posix].node
        inode = node.inode
        assert meta.describe(inode) == NtfsFileInfo(
            meta.acl(inode), meta.dos_attributes(inode), tuple(meta.streams(inode)),
            meta.reparse(inode), (node.crtime, node.mtime, node.ctime, node.atime))
