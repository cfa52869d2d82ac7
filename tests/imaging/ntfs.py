"""Build real NTFS images for tests without mounting (mkntfs + libntfs-3g through ctypes).

    build_ntfs_tree(image, {
        "Windows/System32/config/SOFTWARE": File(b"regf..."),
        "Users/a/dl.exe": File(b"MZ", streams={"Zone.Identifier": b"[ZoneTransfer]\\r\\n"}),
        "Windows/System32": Dir(security=security_descriptor(...)),
    })

Paths are relative, ``/`` or ``\\`` separated; missing parent directories are created with
default metadata.  The key ``""`` may hold a :class:`Dir` for the root directory's times and
security.  Only ``mkntfs`` (ntfs-3g) and ``libntfs-3g.so.89`` are needed at run time; struct
offsets below were measured against the ntfs-3g 2022.10.3 headers on x86_64 (see the constants).

Determinism: ``mkntfs -T`` (epoch time, fixed serial) makes the empty volume byte-identical;
entries are created in the order given (parents first); every inode we create (and the root)
gets explicit times (``DEFAULT_TIME`` unless given), written into the in-memory inode *and* into the
$FILE_NAME attributes of its MFT record, so no wall-clock time reaches the image.  Two builds
of the same tree are byte-identical (tested).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.imaging.tools import MIB, run

__all__ = [
    "DEFAULT_TIME", "Dir", "Entry", "File", "Junction", "Symlink", "NtfsError", "build_ntfs_tree",
    "build_ntfs",
    "FILE_ATTRIBUTE_READONLY", "FILE_ATTRIBUTE_HIDDEN", "FILE_ATTRIBUTE_SYSTEM",
    "FILE_ATTRIBUTE_ARCHIVE", "unix_ns_to_filetime",
]

FILE_ATTRIBUTE_READONLY = 0x01
FILE_ATTRIBUTE_HIDDEN = 0x02
FILE_ATTRIBUTE_SYSTEM = 0x04
FILE_ATTRIBUTE_ARCHIVE = 0x20

# 2024-01-01T00:00:00Z in ns since the Unix epoch; used for every time not given explicitly.
DEFAULT_TIME = 1_704_067_200_000_000_000
_FILETIME_EPOCH = 116_444_736_000_000_000  # 1601-01-01 -> 1970-01-01 in 100 ns units

Times = tuple[int, int, int, int]  # (crtime, mtime, ctime, atime), ns since the Unix epoch


@dataclass(frozen=True)
class File:
    data: bytes = b""
    streams: Mapping[str, bytes] = field(default_factory=dict)  # named $DATA (ADS)
    times: Times | None = None
    security: bytes | None = None  # self-relative SECURITY_DESCRIPTOR
    dos_attributes: int | None = None  # None: libntfs default (ARCHIVE); else set exactly
    links: tuple[str, ...] | list[str] = ()  # extra hard-link paths (parents must exist)


@dataclass(frozen=True)
class Dir:
    times: Times | None = None
    security: bytes | None = None
    dos_attributes: int | None = None


@dataclass(frozen=True)
class Symlink:
    """IO_REPARSE_TAG_SYMLINK on a file (or directory if ``directory``). ``target`` is
    stored as both substitute and print name; ``relative`` sets SYMLINK_FLAG_RELATIVE."""
    target: str
    relative: bool = True
    directory: bool = False
    times: Times | None = None


@dataclass(frozen=True)
class Junction:
    """IO_REPARSE_TAG_MOUNT_POINT on a directory; ``target`` like ``C:\\Users\\Public``."""
    target: str
    times: Times | None = None


Entry = File | Dir | Symlink | Junction


class NtfsError(RuntimeError):
    pass


def unix_ns_to_filetime(ns: int) -> int:
    return ns // 100 + _FILETIME_EPOCH


# --- libntfs-3g ABI (ntfs-3g 2022.10.3, x86_64, LP64) ----------------------------------------
_FILE_ROOT = 5
_AT_DATA = 0x80
_AT_FILE_NAME = 0x30
_S_IFREG = 0o100000
_S_IFDIR = 0o040000
# struct _ntfs_inode
_NI_MFT_NO = 0            # u64
_NI_STATE = 24            # unsigned long, bits: 0 Dirty, 3 FileNameDirty, 5 TimesSet
_NI_TIMES = 80            # creation, last_data_change, last_mft_change, last_access (le64 each)
_NI_FILENAME_DIRTY = 1 << 3
_NI_TIMES_SET = 1 << 5
# struct ntfs_attr_search_ctx: attr pointer at 8; ATTR_RECORD.value_offset (u16) at 20;
# FILE_NAME_ATTR: creation_time at 8, then data change, mft change, access (le64 each).
_CTX_ATTR = 8
_ATTR_VALUE_OFFSET = 20
_FN_TIMES = 8
# struct SECURITY_CONTEXT is 48 bytes, vol pointer first; ntfs_set_ntfs_acl only uses ->vol
# (and the legacy cache, only for inodes without security_id that are not content indexed).
_SCX_SIZE = 48

_lib: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL("libntfs-3g.so.89", use_errno=True)
    p, i, u32, s64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_int64
    sigs: dict[str, tuple[object, list[object]]] = {
        "ntfs_mount": (p, [ctypes.c_char_p, ctypes.c_ulong]),
        "ntfs_umount": (i, [p, i]),
        "ntfs_open_secure": (i, [p]),
        "ntfs_inode_open": (p, [p, ctypes.c_uint64]),
        "ntfs_inode_close": (i, [p]),
        "ntfs_inode_close_in_dir": (i, [p, p]),
        "ntfs_inode_mark_dirty": (None, [p]),
        "ntfs_create": (p, [p, u32, p, ctypes.c_uint8, ctypes.c_uint]),
        "ntfs_link": (i, [p, p, p, ctypes.c_uint8]),
        "ntfs_attr_open": (p, [p, u32, p, u32]),
        "ntfs_attr_close": (None, [p]),
        "ntfs_attr_pwrite": (s64, [p, s64, s64, p]),
        "ntfs_attr_add": (i, [p, u32, p, ctypes.c_uint8, p, s64]),
        "ntfs_attr_get_search_ctx": (p, [p, p]),
        "ntfs_attr_put_search_ctx": (None, [p]),
        "ntfs_attr_lookup": (i, [u32, p, u32, i, s64, p, u32, p]),
        "ntfs_set_ntfs_acl": (i, [p, p, p, ctypes.c_size_t, i]),
        "ntfs_set_ntfs_attrib": (i, [p, p, ctypes.c_size_t, i]),
        "ntfs_set_ntfs_reparse_data": (i, [p, p, ctypes.c_size_t, i]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    _lib = lib
    return lib


def _check(ok: bool, what: str) -> None:
    if not ok:
        err = ctypes.get_errno()
        raise NtfsError(f"{what} failed: {os.strerror(err)} (errno {err})")


class _Ucs:
    """A UTF-16LE name in malloc'd memory (libntfs may keep and free attribute names)."""

    _libc = ctypes.CDLL(None)
    _libc.malloc.restype = ctypes.c_void_p
    _libc.malloc.argtypes = [ctypes.c_size_t]

    def __init__(self, name: str) -> None:
        raw = name.encode("utf-16-le", "surrogatepass")
        if not raw or len(raw) // 2 > 255:
            raise ValueError(f"bad NTFS name {name!r}")
        self.length = len(raw) // 2
        self.ptr = self._libc.malloc(len(raw) + 2)
        ctypes.memmove(self.ptr, raw + b"\0\0", len(raw) + 2)


class _Volume:
    def __init__(self, path: Path) -> None:
        self.lib = _load()
        self.vol = self.lib.ntfs_mount(os.fsencode(path), 0)
        _check(bool(self.vol), f"ntfs_mount({path})")
        _check(self.lib.ntfs_open_secure(self.vol) == 0, "ntfs_open_secure")
        self._scx = ctypes.create_string_buffer(_SCX_SIZE)
        ctypes.c_void_p.from_buffer(self._scx).value = self.vol
        self.mft: dict[str, int] = {"": _FILE_ROOT}
        self.is_dir: dict[str, bool] = {"": True}

    def close(self) -> None:
        _check(self.lib.ntfs_umount(self.vol, 0) == 0, "ntfs_umount")

    def open(self, path: str) -> int:
        ni = self.lib.ntfs_inode_open(self.vol, self.mft[path])
        _check(bool(ni), f"ntfs_inode_open({path!r})")
        return int(ni)

    def close_inode(self, ni: int, what: str) -> None:
        _check(self.lib.ntfs_inode_close(ni) == 0, f"ntfs_inode_close({what!r})")

    # -- creation (phase 1) --
    def create(self, path: str, directory: bool) -> int:
        """Create ``path`` in its (existing) parent; returns the open child inode and the
        open parent. Caller closes the child with close_in_dir, then the parent."""
        parent, _, name = path.rpartition("/")
        if not self.is_dir.get(parent, False):
            raise NtfsError(f"parent of {path!r} is not a directory")
        dir_ni = self.open(parent)
        ucs = _Ucs(name)
        ni = self.lib.ntfs_create(dir_ni, 0, ucs.ptr, ucs.length,
                                  _S_IFDIR if directory else _S_IFREG)
        if not ni:
            err = ctypes.get_errno()
            self.lib.ntfs_inode_close(dir_ni)
            raise NtfsError(f"ntfs_create({path!r}): {os.strerror(err)}")
        self.mft[path] = ctypes.c_uint64.from_address(ni + _NI_MFT_NO).value
        self.is_dir[path] = directory
        self._pending_parent = dir_ni
        return int(ni)

    def finish_create(self, ni: int, path: str) -> None:
        _check(self.lib.ntfs_inode_close_in_dir(ni, self._pending_parent) == 0,
               f"close {path!r}")
        self.close_inode(self._pending_parent, path.rpartition("/")[0])

    def write_stream(self, ni: int, name: str | None, data: bytes, what: str) -> None:
        ucs = None
        if name:
            ucs = _Ucs(name)
            _check(self.lib.ntfs_attr_add(ni, _AT_DATA, ucs.ptr, ucs.length, None, 0) == 0,
                   f"ntfs_attr_add({what}:{name})")
            ucs = _Ucs(name)  # a fresh copy for ntfs_attr_open, which may keep/free it
        na = self.lib.ntfs_attr_open(ni, _AT_DATA, ucs.ptr if ucs else self._unnamed(),
                                     ucs.length if ucs else 0)
        _check(bool(na), f"ntfs_attr_open({what}:{name or ''})")
        try:
            done = 0
            while done < len(data):
                chunk = data[done:done + (1 << 20)]
                n = self.lib.ntfs_attr_pwrite(na, done, len(chunk), chunk)
                _check(n > 0, f"ntfs_attr_pwrite({what}:{name or ''})")
                done += n
        finally:
            self.lib.ntfs_attr_close(na)

    def _unnamed(self) -> int:
        return ctypes.addressof(ctypes.c_uint16.in_dll(self.lib, "AT_UNNAMED"))

    def link(self, path: str, new_path: str) -> None:
        parent, _, name = new_path.rpartition("/")
        if not self.is_dir.get(parent, False):
            raise NtfsError(f"parent of link {new_path!r} is not a directory")
        ni = self.open(path)
        dir_ni = self.open(parent)
        ucs = _Ucs(name)
        rc = self.lib.ntfs_link(ni, dir_ni, ucs.ptr, ucs.length)
        err = ctypes.get_errno()
        # Close the directory first: the file now has names in two directories, and
        # ntfs_inode_close (dir_ni NULL) opens each parent itself to sync its index entries.
        self.close_inode(dir_ni, parent)
        self.close_inode(ni, path)
        if rc:
            raise NtfsError(f"ntfs_link({path!r} -> {new_path!r}): {os.strerror(err)}")
        self.mft[new_path] = self.mft[path]

    # -- metadata (phase 2, one inode open at a time) --
    def set_security(self, ni: int, sd: bytes, what: str) -> None:
        buf = ctypes.create_string_buffer(sd, len(sd))
        rc = self.lib.ntfs_set_ntfs_acl(ctypes.addressof(self._scx), ni, buf, len(sd), 0)
        _check(rc == 0, f"ntfs_set_ntfs_acl({what}) (descriptor valid and self-relative?)")

    def set_attributes(self, ni: int, attrs: int, what: str) -> None:
        buf = ctypes.create_string_buffer(attrs.to_bytes(4, "little"), 4)
        _check(self.lib.ntfs_set_ntfs_attrib(ni, buf, 4, 0) == 0,
               f"ntfs_set_ntfs_attrib({what})")

    def set_reparse(self, ni: int, data: bytes, what: str) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        _check(self.lib.ntfs_set_ntfs_reparse_data(ni, buf, len(data), 0) == 0,
               f"ntfs_set_ntfs_reparse_data({what})")

    def set_times(self, ni: int, times: Times) -> None:
        """All four times, without ntfs_inode_set_times (which stamps ctime with now)."""
        crtime, mtime, ctime, atime = (unix_ns_to_filetime(t) for t in times)
        ft = (crtime, mtime, ctime, atime)  # inode order: creation, data, mft, access
        for k, v in enumerate(ft):
            ctypes.c_int64.from_address(ni + _NI_TIMES + 8 * k).value = v
        state = ctypes.c_ulong.from_address(ni + _NI_STATE)
        state.value = (state.value & ~_NI_TIMES_SET) | _NI_FILENAME_DIRTY
        # The $FILE_NAME attributes inside the MFT record (index copies are synced on close).
        ctx = self.lib.ntfs_attr_get_search_ctx(ni, None)
        _check(bool(ctx), "ntfs_attr_get_search_ctx")
        try:
            while self.lib.ntfs_attr_lookup(_AT_FILE_NAME, None, 0, 0, 0, None, 0, ctx) == 0:
                attr = ctypes.c_void_p.from_address(ctx + _CTX_ATTR).value
                assert attr is not None
                voff = ctypes.c_uint16.from_address(attr + _ATTR_VALUE_OFFSET).value
                for k, v in enumerate(ft):
                    ctypes.c_int64.from_address(attr + voff + _FN_TIMES + 8 * k).value = v
        finally:
            self.lib.ntfs_attr_put_search_ctx(ctx)
        self.lib.ntfs_inode_mark_dirty(ni)


def _reparse_symlink(target: str, relative: bool) -> bytes:
    name = target.encode("utf-16-le", "surrogatepass")
    # SubstituteNameOffset, SubstituteNameLength, PrintNameOffset, PrintNameLength, Flags
    body = (0).to_bytes(2, "little") + len(name).to_bytes(2, "little") \
        + len(name).to_bytes(2, "little") + len(name).to_bytes(2, "little") \
        + (1 if relative else 0).to_bytes(4, "little") + name + name
    return (0xA000000C).to_bytes(4, "little") + len(body).to_bytes(2, "little") \
        + b"\0\0" + body


def _reparse_junction(target: str) -> bytes:
    sub = ("\\??\\" + target).encode("utf-16-le")
    prt = target.encode("utf-16-le")
    # names NUL-terminated like Windows writes them; lengths exclude the NUL
    body = (0).to_bytes(2, "little") + len(sub).to_bytes(2, "little") \
        + (len(sub) + 2).to_bytes(2, "little") + len(prt).to_bytes(2, "little") \
        + sub + b"\0\0" + prt + b"\0\0"
    return (0xA0000003).to_bytes(4, "little") + len(body).to_bytes(2, "little") \
        + b"\0\0" + body


def _norm(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"'..' in {path!r}")
    return "/".join(parts)


def _mkntfs(path: Path, size_mb: int, label: str, start_sector: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(
        ["mkntfs", "-F", "-Q", "-q", "-T", "-s", "512", "-c", "4096", "-H", "255", "-S", "63",
         "-p", str(start_sector), "-L", label, str(path)],
        check=True, capture_output=True)


def build_ntfs_tree(image: Path, tree: Mapping[str, Entry], *, size_mb: int = 64,
                    offset: int = 0, label: str = "Windows") -> Path:
    """Write an NTFS volume holding ``tree`` to ``image`` (created/overwritten) or, with
    ``offset`` > 0, into the existing disk image ``image`` at that byte offset (a partition
    the caller made; ``size_mb`` must fit it). Returns ``image``."""
    image = Path(image)
    if offset % 512:
        raise ValueError("offset must be a multiple of 512")
    entries = {_norm(k): v for k, v in tree.items()}
    if offset:
        if not image.exists() or image.stat().st_size < offset + (size_mb << 20):
            raise ValueError("disk image missing or too small for the partition")
        with tempfile.TemporaryDirectory(dir=image.parent) as tmp:
            part = Path(tmp) / "part.ntfs"
            _mkntfs(part, size_mb, label, offset // 512)
            _populate(part, entries)
            with open(part, "rb") as src, open(image, "r+b") as dst:
                dst.seek(offset)
                shutil.copyfileobj(src, dst, 1 << 20)
        return image
    _mkntfs(image, size_mb, label, 0)
    _populate(image, entries)
    return image


def _populate(path: Path, entries: Mapping[str, Entry]) -> None:
    # In the order given, each entry after its parent directories (implicit ones with default
    # metadata): an entry added to a tree gets a new MFT record and renumbers no other.
    wanted: dict[str, Entry] = {}
    for p in (p for p in entries if p):
        parts = p.split("/")
        for n in range(1, len(parts)):
            parent = "/".join(parts[:n])
            if parent not in wanted:
                wanted[parent] = entries.get(parent, Dir())
        wanted.setdefault(p, entries[p])
    create = list(wanted)
    vol = _Volume(path)
    try:
        for p in create:
            e = wanted[p]
            directory = isinstance(e, Dir | Junction) or (isinstance(e, Symlink)
                                                          and e.directory)
            ni = vol.create(p, directory)
            try:
                if isinstance(e, File):
                    if e.data:
                        vol.write_stream(ni, None, e.data, p)
                    for sname, sdata in sorted(e.streams.items()):
                        vol.write_stream(ni, sname, sdata, p)
            finally:
                vol.finish_create(ni, p)
            if isinstance(e, Symlink | Junction):
                vol.is_dir[p] = False  # nothing may be created below a reparse point
        for p in create:
            e = wanted[p]
            if isinstance(e, File):
                for extra in e.links:
                    vol.link(p, _norm(extra))
        root = entries.get("", Dir())
        for p in [*reversed(create), ""]:
            e = wanted.get(p, root)
            ni = vol.open(p)
            try:
                if isinstance(e, Symlink):
                    vol.set_reparse(ni, _reparse_symlink(e.target, e.relative), p)
                elif isinstance(e, Junction):
                    vol.set_reparse(ni, _reparse_junction(e.target), p)
                sec = getattr(e, "security", None)
                if sec is not None:
                    vol.set_security(ni, sec, p)
                attrs = getattr(e, "dos_attributes", None)
                if attrs is not None:
                    vol.set_attributes(ni, attrs, p)
                vol.set_times(ni, e.times or (DEFAULT_TIME,) * 4)
            finally:
                vol.close_inode(ni, p)
    finally:
        vol.close()


def build_ntfs(image: str | os.PathLike[str], files: dict[str, bytes], *,
               size_mb: int = 16) -> Path:
    """An NTFS image (``mkntfs -F -Q -q``) with ``files`` (name -> content) in its root
    directory (``ntfscp``, which copies into existing directories only)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkntfs", "-F", "-Q", "-q", image)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            host = Path(tmp) / "payload"
            host.write_bytes(data)
            run("ntfscp", image, host, f"/{name}")
    return image
