"""Tests of scanner.collectors.xattrs: hand-built bytes plus a real ext4 image read by
scanner.disk.ext_raw."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.collectors.xattrs import (
    CAP_NAMES,
    render_capability,
    render_posix_acl,
    render_value,
    render_xattrs,
)

# --- builders ----------------------------------------------------------------------------------

USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED_ID = 0xFFFFFFFF


def acl_vfs(entries: Sequence[tuple[int, int, int | None]]) -> bytes:
    """VFS / getxattr encoding: version 2, 8-byte entries."""
    out = struct.pack("<I", 2)
    for tag, perm, qid in entries:
        out += struct.pack("<HHI", tag, perm, UNDEFINED_ID if qid is None else qid)
    return out


def acl_ext4(entries: Sequence[tuple[int, int, int | None]]) -> bytes:
    """ext4 on-disk encoding: version 1, id only for ACL_USER / ACL_GROUP."""
    out = struct.pack("<I", 1)
    for tag, perm, qid in entries:
        out += struct.pack("<HH", tag, perm)
        if tag in (USER, GROUP):
            out += struct.pack("<I", qid)
    return out


def cap_v2(permitted: int, inheritable: int = 0, effective: bool = True) -> bytes:
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack(
        "<IIIII",
        magic,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        permitted >> 32,
        inheritable >> 32,
    )


def cap_v3(permitted: int, inheritable: int = 0, effective: bool = True, rootid: int = 0) -> bytes:
    raw = cap_v2(permitted, inheritable, effective)
    return (
        struct.pack("<I", 0x03000000 | (1 if effective else 0))
        + raw[4:]
        + struct.pack("<I", rootid)
    )


def bits(*names: str) -> int:
    return sum(1 << CAP_NAMES.index(n) for n in names)


EXAMPLE = [
    (USER_OBJ, 6, None),
    (USER, 4, 1000),
    (GROUP_OBJ, 4, None),
    (MASK, 4, None),
    (OTHER, 4, None),
]
EXAMPLE_TEXT = "user::rw-,user:1000:r--,group::r--,mask::r--,other::r--"

# --- POSIX ACLs --------------------------------------------------------------------------------


def test_acl_vfs_encoding() -> None:
    assert render_posix_acl(acl_vfs(EXAMPLE)) == EXAMPLE_TEXT


def test_acl_ext4_encoding() -> None:
    raw = acl_ext4(EXAMPLE)
    assert len(raw) == 4 + 4 + 8 + 4 + 4 + 4
    assert render_posix_acl(raw) == EXAMPLE_TEXT


def test_acl_exact_bytes_from_getfattr_and_from_disk() -> None:
    # what `getfattr -e hex` shows for `setfacl -m u:1000:r` on a 0644 file ...
    vfs = bytes.fromhex(
        "0200000001000600ffffffff02000400e803000004000400ffffffff10000400ffffffff20000400ffffffff"
    )
    # ... and what the ext4 inode holds for the same file inside an ext4 image built by mkfs.ext4 -d
    disk = bytes.fromhex("010000000100060002000400e8030000040004001000040020000400")
    assert render_posix_acl(vfs) == EXAMPLE_TEXT
    assert render_posix_acl(disk) == EXAMPLE_TEXT


def test_acl_all_tags_and_perms_keep_stored_order() -> None:
    entries = [
        (USER_OBJ, 7, None),
        (USER, 0, 0),
        (USER, 1, 4294967294),
        (GROUP_OBJ, 2, None),
        (GROUP, 3, 50),
        (GROUP, 5, 1001),
        (MASK, 7, None),
        (OTHER, 0, None),
    ]
    expected = (
        "user::rwx,user:0:---,user:4294967294:--x,group::-w-,group:50:-wx,"
        "group:1001:r-x,mask::rwx,other::---"
    )
    assert render_posix_acl(acl_vfs(entries)) == expected
    assert render_posix_acl(acl_ext4(entries)) == expected


def test_acl_accepts_bytearray_and_memoryview() -> None:
    raw = acl_ext4(EXAMPLE)
    assert render_posix_acl(bytearray(raw)) == EXAMPLE_TEXT  # type: ignore[arg-type]
    assert render_posix_acl(memoryview(raw)) == EXAMPLE_TEXT  # type: ignore[arg-type]


_tag = st.sampled_from([USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER])
_entry = st.tuples(_tag, st.integers(0, 7), st.integers(0, 0xFFFFFFFE))


@given(st.lists(_entry, min_size=1, max_size=20))
def test_acl_both_encodings_render_the_same(entries: list[tuple[int, int, int]]) -> None:
    assert render_posix_acl(acl_vfs(entries)) == render_posix_acl(acl_ext4(entries))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "too short"),
        (b"\x02\x00", "too short"),
        (struct.pack("<I", 3) + b"\x01\x00\x06\x00", "unknown version 3"),
        (struct.pack("<I", 2), "no entries"),
        (struct.pack("<I", 1), "no entries"),
        (acl_vfs(EXAMPLE)[:-1], "not a multiple of 8"),
        (acl_vfs(EXAMPLE) + b"\x00\x00\x00\x00", "not a multiple of 8"),
        (acl_ext4(EXAMPLE) + b"\x20\x00", "truncated entry"),
        (struct.pack("<I", 1) + struct.pack("<HH", USER, 4) + b"\xe8\x03", "truncated user"),
        (acl_vfs([(0x40, 4, None)]), "unknown entry tag 0x40"),
        (acl_ext4([(USER_OBJ, 6, None), (0x03, 4, None)]), "unknown entry tag 0x3"),
        (acl_vfs([(USER_OBJ, 8, None)]), "invalid permission bits 0x8"),
        (acl_ext4([(OTHER, 0x104, None)]), "invalid permission bits"),
    ],
)
def test_acl_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_posix_acl(raw)


def test_acl_vfs_bytes_read_as_ext4_are_not_silently_misparsed() -> None:
    # a v2 value is never interpreted with the v1 layout: the version decides
    raw = acl_vfs(EXAMPLE)
    assert raw[:4] == b"\x02\x00\x00\x00"
    assert render_posix_acl(raw) == EXAMPLE_TEXT


# --- capabilities ------------------------------------------------------------------------------


def test_cap_names_match_kernel_numbers() -> None:
    assert len(CAP_NAMES) == 41
    assert CAP_NAMES[0] == "cap_chown"
    assert CAP_NAMES[10] == "cap_net_bind_service"
    assert CAP_NAMES[13] == "cap_net_raw"
    assert CAP_NAMES[21] == "cap_sys_admin"
    assert CAP_NAMES[38] == "cap_perfmon"
    assert CAP_NAMES[40] == "cap_checkpoint_restore"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # exact bytes written by `setcap cap_net_raw+ep` (getfattr -e hex)
        (bytes.fromhex("0100000200200000000000000000000000000000"), "cap_net_raw=ep"),
        (
            cap_v2(bits("cap_net_bind_service", "cap_net_raw")),
            "cap_net_bind_service,cap_net_raw=ep",
        ),
        (cap_v2(bits("cap_setuid", "cap_setgid"), effective=False), "cap_setgid,cap_setuid=p"),
        (cap_v2(0, bits("cap_chown"), effective=False), "cap_chown=i"),
        # effective flag raises permitted | inheritable
        (cap_v2(0, bits("cap_chown")), "cap_chown=ei"),
        (
            cap_v2(bits("cap_chown", "cap_net_raw"), bits("cap_net_raw")),
            "cap_net_raw=eip cap_chown+ep",
        ),
        (
            cap_v2(bits("cap_net_admin"), bits("cap_net_admin", "cap_sys_admin"), effective=False),
            "cap_net_admin=ip cap_sys_admin+i",
        ),
        (cap_v2(bits("cap_checkpoint_restore")), "cap_checkpoint_restore=ep"),
        # all named capabilities: libcap's "=ep" / "=p"
        (cap_v2((1 << 41) - 1), "=ep"),
        (cap_v2((1 << 41) - 1, effective=False), "=p"),
        (cap_v2(((1 << 41) - 1) & ~bits("cap_kill")), "=ep cap_kill-ep"),
        (cap_v2(0, effective=False), "="),
        # bits the names table does not know
        (
            cap_v2(bits("cap_net_raw") | 1 << 45, 1 << 62, effective=False),
            "cap_net_raw=p cap_62+i cap_45+p",
        ),
    ],
)
def test_capability_v2(raw: bytes, expected: str) -> None:
    assert render_capability(raw) == expected


def test_capability_v3_rootid() -> None:
    # exact bytes written by `setcap -n 1000 cap_net_raw=ep`
    raw = bytes.fromhex("0100000300200000000000000000000000000000e8030000")
    assert render_capability(raw) == "cap_net_raw=ep [rootid=1000]"
    assert render_capability(cap_v3(bits("cap_net_raw"), rootid=0)) == "cap_net_raw=ep"
    # getcap prints the rootid with %d
    assert render_capability(cap_v3(bits("cap_chown"), rootid=0xFFFFFFFE)) == (
        "cap_chown=ep [rootid=-2]"
    )


def test_capability_v1() -> None:
    raw = struct.pack("<III", 0x01000001, bits("cap_net_raw"), bits("cap_kill"))
    assert render_capability(raw) == "cap_kill=ei cap_net_raw+ep"
    assert render_capability(struct.pack("<III", 0x01000000, 0, 0)) == "="


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "too short"),
        (b"\x01\x00\x00", "too short"),
        (struct.pack("<I", 0x04000001) + bytes(16), "unknown vfs_cap_data revision 4"),
        (struct.pack("<I", 0x00000001) + bytes(16), "revision 0"),
        (cap_v2(1)[:-1], "revision 2 must be 20 bytes, got 19"),
        (cap_v2(1) + b"\x00", "revision 2 must be 20 bytes, got 21"),
        (cap_v3(1)[:20], "revision 3 must be 24 bytes, got 20"),
        (struct.pack("<IIIII", 0x01000001, 1, 0, 0, 0), "revision 1 must be 12 bytes"),
        (struct.pack("<I", 0x02000003) + bytes(16), "unknown flag bits 0x000002"),
    ],
)
def test_capability_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_capability(raw)


# --- render_xattrs / render_value --------------------------------------------------------------


def test_render_value() -> None:
    assert render_value(b"hello world") == "hello world"
    assert render_value("ünïcode ✓".encode()) == "ünïcode ✓"
    assert render_value(b"") == ""
    assert render_value(b"\x00\xff") == "0x00ff"
    assert render_value(b"system_u:object_r:etc_t:s0\x00") == (
        "0x" + b"system_u:object_r:etc_t:s0\x00".hex()
    )
    assert render_value(b"line\n") == "0x6c696e650a"
    assert render_value(b"\xc3") == "0xc3"  # invalid UTF-8
    # text that looks like hex is hexed too, so b"0x00" and b"\x00" never render the same
    assert render_value(b"\x00") == "0x00"
    assert render_value(b"0x00") == "0x30783030"


def test_render_xattrs_all_parts() -> None:
    default = [
        (USER_OBJ, 7, None),
        (USER, 5, 1000),
        (GROUP_OBJ, 5, None),
        (MASK, 5, None),
        (OTHER, 5, None),
    ]
    attrs = {
        b"system.posix_acl_default": acl_ext4(default),
        b"system.posix_acl_access": acl_ext4(EXAMPLE),
        b"security.capability": cap_v2(bits("cap_net_raw")),
        b"user.note": b"hello",
        b"trusted.x": b"\x00\x01",
    }
    acl, cap, other = render_xattrs(attrs)
    assert acl == EXAMPLE_TEXT + (
        ",default:user::rwx,default:user:1000:r-x,default:group::r-x,default:mask::r-x,"
        "default:other::r-x"
    )
    assert cap == "cap_net_raw=ep"
    assert other == {"user.note": "hello", "trusted.x": "0x0001"}


def test_render_xattrs_empty_and_default_only() -> None:
    assert render_xattrs({}) == (None, None, {})
    acl, cap, other = render_xattrs({b"system.posix_acl_default": acl_vfs(EXAMPLE)})
    assert acl == ",".join("default:" + e for e in EXAMPLE_TEXT.split(","))
    assert cap is None
    assert other == {}


def test_render_xattrs_malformed_values_become_hex() -> None:
    bad_acl = b"\x07\x00\x00\x00\x01\x00"
    bad_default = struct.pack("<I", 2) + b"\x01"
    bad_cap = b"\x01\x00\x00\x09"
    acl, cap, other = render_xattrs(
        {
            b"system.posix_acl_access": bad_acl,
            b"system.posix_acl_default": bad_default,
            b"security.capability": bad_cap,
        }
    )
    assert acl == "0x070000000100,default:0x0200000001"
    assert cap == "0x01000009"
    assert other == {}


# --- real ext4 image read from its raw inodes --------------------------------------------------


def _run(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout


def _read_xattrs(image: Path, path: str) -> dict[bytes, bytes]:
    """The attributes as the ext backend reads them from the raw inode."""
    from scanner.disk.ext_raw import ExtInodes
    from scanner.sources.local import open_local
    from tests.imaging.ext4 import inode_info

    def no_ea_inodes(inode: int, size: int) -> bytes:
        raise AssertionError("no attribute lives in an inode of its own here")

    with open_local(image) as source:
        return ExtInodes(source).xattrs(inode_info(image, path)["inode"], 1 << 20, no_ea_inodes)


def _getfacl(path: Path) -> str:
    lines = _run("getfacl", "-c", "-n", "-p", "-E", path).split()
    return ",".join(lines)


def _getcap(path: Path) -> str:
    out = _run("getcap", "-n", path).strip()
    return out.split(" ", 1)[1]


def test_real_ext4_image_matches_getfacl_and_getcap(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    f = src / "f"
    f.write_text("hi\n")
    _run("setfacl", "-m", "u:1000:r", f)
    _run("setcap", "cap_net_raw+ep", f)
    _run("setfattr", "-n", "user.note", "-v", "hello world", f)
    _run("setfattr", "-n", "user.bin", "-v", "0x00ff", f)
    g = src / "g"
    g.write_text("g\n")
    _run("setfacl", "-m", "u:1000:rwx,u:0:r,g:50:w,g:1001:x,m::rx", g)
    _run("setcap", "cap_chown=ep cap_sys_admin=eip", g)
    h = src / "h"
    h.write_text("h\n")
    _run("setcap", "-n", "1000", "cap_net_bind_service,cap_net_raw=ep", h)
    d = src / "d"
    e = d / "e"
    e.mkdir(parents=True)  # before d gets a default ACL, so e inherits nothing
    _run("setfacl", "-d", "-m", "u::rwx", e)
    _run("setfacl", "-m", "u:1000:rwx", d)
    _run("setfacl", "-d", "-m", "u:1000:rx,g:27:rwx", d)

    image = tmp_path / "x.img"
    with image.open("wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    _run("mkfs.ext4", "-q", "-F", "-d", src, "-E", "root_owner=0:0", "-I", "256", image)

    # /f: names come back as the full Linux names; the ACL in ext4 on-disk (v1) encoding
    attrs = _read_xattrs(image, "/f")
    assert set(attrs) == {b"system.posix_acl_access", b"security.capability", b"user.note",
                          b"user.bin"}
    assert attrs[b"system.posix_acl_access"][:4] == b"\x01\x00\x00\x00"
    assert len(attrs[b"system.posix_acl_access"]) == 28
    acl, cap, other = render_xattrs(attrs)
    assert acl == "user::rw-,user:1000:r--,group::r--,mask::r--,other::r--"
    assert acl == _getfacl(f)
    assert cap == "cap_net_raw=ep"
    assert cap == _getcap(f)
    assert other == {"user.note": "hello world", "user.bin": "0x00ff"}

    acl, cap, other = render_xattrs(_read_xattrs(image, "/g"))
    assert acl == (
        "user::rw-,user:0:r--,user:1000:rwx,group::r--,group:50:-w-,group:1001:--x,"
        "mask::r-x,other::r--"
    )
    assert acl == _getfacl(g)
    assert cap == "cap_sys_admin=eip cap_chown+ep"
    assert cap == _getcap(g)
    assert other == {}

    acl, cap, other = render_xattrs(_read_xattrs(image, "/h"))
    assert acl is None
    assert cap == "cap_net_bind_service,cap_net_raw=ep [rootid=1000]"
    assert cap == _getcap(h)

    acl, cap, other = render_xattrs(_read_xattrs(image, "/d"))
    assert acl == (
        "user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::r-x,"
        "default:user::rwx,default:user:1000:r-x,default:group::r-x,default:group:27:rwx,"
        "default:mask::rwx,default:other::r-x"
    )
    assert acl == _getfacl(d)
    assert cap is None

    # default ACL only: getfacl adds the mode-derived access entries, the xattr holds none
    acl, _, _ = render_xattrs(_read_xattrs(image, "/d/e"))
    assert acl == "default:user::rwx,default:group::r-x,default:other::r-x"
    assert _getfacl(e).endswith("," + acl)


def test_debugfs_ea_set_encodings(tmp_path: Path) -> None:
    """debugfs translates a v2 value to v1 on disk unless -r (raw) is given; the raw reader returns
    the stored bytes untranslated, so both encodings can reach the renderer."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    (src / "b").write_text("b\n")
    image = tmp_path / "y.img"
    with image.open("wb") as fh:
        fh.truncate(16 * 1024 * 1024)
    _run("mkfs.ext4", "-q", "-F", "-d", src, "-E", "root_owner=0:0", "-I", "256", image)
    entries = [
        (USER_OBJ, 6, None),
        (USER, 4, 2000),
        (GROUP_OBJ, 4, None),
        (MASK, 4, None),
        (OTHER, 0, None),
    ]
    value = tmp_path / "acl.bin"
    value.write_bytes(acl_vfs(entries))
    _run("debugfs", "-w", "-R", f"ea_set -f {value} /a system.posix_acl_access", image)
    _run("debugfs", "-w", "-R", f"ea_set -r -f {value} /b system.posix_acl_access", image)

    stored_a = _read_xattrs(image, "/a")[b"system.posix_acl_access"]
    stored_b = _read_xattrs(image, "/b")[b"system.posix_acl_access"]
    assert stored_a == acl_ext4(entries)
    assert stored_b == acl_vfs(entries)
    expected = "user::rw-,user:2000:r--,group::r--,mask::r--,other::---"
    assert render_posix_acl(stored_a) == expected
    assert render_posix_acl(stored_b) == expected
