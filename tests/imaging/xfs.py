"""Build and change real XFS images for tests (``mkfs.xfs -p`` protofiles, ``xfs_db``),
nothing mounted. mkfs.xfs 6.1 refuses filesystems under 300 MiB (:data:`XFS_MIN_MB`); a
sparse 300 MiB image or partition costs nothing."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from tests.imaging.tools import BASE_TIME, MIB, SECTOR, ImagingError, _copy_range, embed, run
from tests.imaging.trees import tree_paths
from tests.imaging.xattrs import _ACL_TAGS, _ACL_UNDEFINED_ID


def build_xfs(image: str | os.PathLike[str], *, size_mb: int = 300,
              uuid: str | None = None) -> Path:
    """An empty XFS image (sparse; mkfs.xfs 6.1 wants 300 MiB at least)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkfs.xfs", "-q", "-f", *(["-m", f"uuid={uuid}"] if uuid else []), image)
    return image


# XFS, built from a protofile and changed with xfs_db ------------------------------------------
#
# Facts (xfsprogs 6.1.0, checked when these helpers were written):
#
# - ``mkfs.xfs -p PROTOFILE`` creates files, directories, symlinks, device nodes and FIFOs with
#   the modes and owners the protofile gives (no sticky bit, no hard links, no xattrs, no
#   timestamps: every inode gets the mkfs time, atime 0), in protofile order; names and symlink
#   targets are whitespace-separated tokens, so they cannot hold whitespace or ``:``, and a
#   name ``$`` ends a directory. Any other bytes, invalid UTF-8 included, are taken as they are.
# - xfs_db reports every error on stdout (``field bogus not found``, ``/x: No such file or
#   directory``) and mostly exits 0: :func:`xfs_db` checks the output.
# - ``path P`` selects an inode by path, ``write FIELD VALUE`` changes one inode field and
#   recomputes the inode CRC. Writing ``core.mtime.sec`` / ``.nsec`` is broken in 6.1 (with
#   bigtime each replaces the whole 64-bit value; without it ``.sec`` lands in the nanoseconds):
#   :func:`xfs_set_times` writes the whole 8-byte field as hex bytes instead: with bigtime
#   (mkfs.xfs 6.1's default) nanoseconds since 1901-12-13T20:45:52Z, i.e.
#   ``(seconds + 2**31) * 10**9 + nanoseconds``; without it ``be32 seconds, be32 nanoseconds``.
# - Numbers are parsed as signed 64-bit (``0xffffffffffffffff`` saturates): 64-bit masks are
#   written as ``#HEX`` bytes too.
# - ``attr_set -r|-s|-u -v LEN NAME`` creates an attribute in the trusted (``-r``), security
#   (``-s``) or user (``-u``) namespace holding LEN bytes ``v``; the value is then written with
#   ``write a.sfattr.list[N].value #HEX`` (``#`` takes hex bytes of any length; ``0x`` is a
#   number, at most 8 bytes, right-aligned). xfs_repair validates stored ACLs.
# - xfs_db has no link, unlink or create command: files are added or removed by rebuilding
#   (:func:`build_xfs_tree` puts ``last`` paths at the end of the protofile, so every other
#   inode keeps its number and data blocks). A directory entry can be renamed in place to a
#   name of the same length (``write u3.sfdir3.list[N].name``), and made to point at another
#   inode (``...inumber.i4``), which is how :func:`xfs_hard_link` makes hard links.
# - xfs_db and xfs_repair take no offset: a filesystem inside a disk image is copied out
#   (sparse) and back in by :func:`xfs_db` and :func:`xfs_repair_ok`.

XFS_EPOCH_OFFSET = 1 << 31   # bigtime: seconds from 1901-12-13T20:45:52Z to the Unix epoch
XFS_MIN_MB = 300
_XFS_DB_ERRORS = re.compile(r"not found|No such file|parsing error|\b(?:[Ii]nvalid|[Bb]ad|"
                            r"[Uu]nable|[Cc]annot|can't|[Uu]nknown|[Ee]rror|must be|too large)\b|"
                            r"Allowing write of corrupted data")  # "\b": hex like 0x..fbad
_XFS_DB_FIELD = re.compile(r"^[\w.\[\]-]+ = ")  # printed fields (names may hold "bad")


class _Extracted:
    """An XFS filesystem at ``offset`` of a disk image as a file of its own (copied out on
    entry, back in on exit when ``write``), so the offset-less xfsprogs tools can work on it."""

    def __init__(self, image: str | os.PathLike[str], offset: int, write: bool) -> None:
        self.image, self.offset, self.write = Path(image), offset, write
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if not self.offset:
            return self.image
        with open(self.image, "rb") as fh:
            fh.seek(self.offset)
            sb = fh.read(512)
        block_size, blocks = struct.unpack_from(">IQ", sb, 4)
        self.length = block_size * blocks
        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / "fs.img"
        with path.open("wb") as fh:
            fh.truncate(self.length)
        _copy_range(self.image, path, self.offset, self.length, 0)
        self.path = path
        return path

    def __exit__(self, *exc: object) -> None:
        if self._tmp is None:
            return
        if self.write and exc[0] is None:
            _copy_range(self.path, self.image, 0, self.length, self.offset)
        self._tmp.cleanup()


def xfs_db(image: str | os.PathLike[str], *commands: str, offset: int = 0,
           write: bool = True, tolerate: str | None = None) -> str:
    """Run xfs_db commands (``-x`` expert mode when ``write``) on an XFS image or on the XFS
    filesystem at ``offset`` of a disk image; return stdout. Raises :class:`ImagingError` when
    xfs_db exits non-zero or reports an error (other than lines matching ``tolerate``)."""
    args: list[str] = ["xfs_db", *(["-x"] if write else ["-r"])]
    for command in commands:
        args += ["-c", command]
    with _Extracted(image, offset, write) as target:
        proc = subprocess.run([*args, os.fspath(target)], capture_output=True, text=True,
                              env={**os.environ, "TZ": "UTC"})  # dates it prints are UTC
    errors = [line for line in (proc.stdout + proc.stderr).splitlines()
              if _XFS_DB_ERRORS.search(line) and not _XFS_DB_FIELD.match(line)
              and not (tolerate and re.search(tolerate, line))]
    if proc.returncode != 0 or errors:
        raise ImagingError(f"xfs_db failed on {image} (exit {proc.returncode}):\n"
                           + "\n".join(errors or [proc.stderr]) + "\ncommands:\n"
                           + "\n".join(commands))
    return proc.stdout


def xfs_repair_ok(image: str | os.PathLike[str], offset: int = 0) -> bool:
    """True when ``xfs_repair -n`` finds the filesystem clean; raises :class:`ImagingError`
    with its report otherwise."""
    with _Extracted(image, offset, write=False) as target:
        proc = subprocess.run(["xfs_repair", "-n", os.fspath(target)], capture_output=True,
                              text=True)
    if proc.returncode != 0:
        raise ImagingError(f"xfs_repair -n {image}: exit {proc.returncode}\n"
                           f"{proc.stdout}{proc.stderr}")
    return True


def _proto_mode(kind: str, mode: int) -> str:
    return (kind + ("u" if mode & 0o4000 else "-") + ("g" if mode & 0o2000 else "-")
            + f"{mode & 0o777:03o}")


def _proto_token_ok(raw: bytes) -> bool:
    return bool(raw) and raw != b"$" and not re.search(rb"[\s:]", raw)


def xfs_protofile(src_dir: str | os.PathLike[str], *, last: Iterable[str] = (),
                  skipped: list[str] | None = None, copy_hard_links: bool = False
                  ) -> tuple[bytes, list[tuple[str, str]]]:
    """A ``mkfs.xfs -p`` protofile for ``src_dir`` (owners 0:0, modes as on the host).

    Entries come sorted by name, except that each path of ``last`` (and its parents) comes
    after its siblings. Hard links after the first name become empty placeholder files and
    are returned as ``(link path, first path)`` for :func:`xfs_hard_link` (or, with
    ``copy_hard_links``, separate copies of the content, and nothing is returned). Names and
    symlink targets the format cannot hold (whitespace, ``:``, a lone ``$``) are left out and
    listed in ``skipped`` when given; so are sockets.
    """
    import stat

    root = Path(src_dir)
    late = {tuple(Path(p.strip("/")).parts) for p in last}
    late_prefixes = {parts[:n] for parts in late for n in range(1, len(parts) + 1)}
    out = [b"snapfim", b"0 0", b"d--755 0 0"]
    links: list[tuple[str, str]] = []
    first_name: dict[tuple[int, int], str] = {}
    empty = b"/dev/null"

    def walk(directory: Path, parts: tuple[str, ...]) -> None:
        names = sorted(os.listdir(directory), key=lambda n: (parts + (n,) in late_prefixes, n))
        for name in names:
            path = directory / name
            rel = "/" + "/".join(parts + (name,))
            raw = os.fsencode(name)
            info = path.lstat()
            mode = info.st_mode
            if not _proto_token_ok(raw):
                if skipped is not None:
                    skipped.append(rel)
                continue
            if stat.S_ISDIR(mode):
                out.append(raw + b" " + _proto_mode("d", mode).encode() + b" 0 0")
                walk(path, parts + (name,))
                out.append(b"$")
            elif stat.S_ISLNK(mode):
                target = os.fsencode(os.readlink(path))
                if not _proto_token_ok(target):
                    if skipped is not None:
                        skipped.append(rel)
                    continue
                out.append(raw + b" l--777 0 0 " + target)
            elif stat.S_ISREG(mode):
                key = (info.st_dev, info.st_ino)
                source = os.fsencode(path)
                if info.st_nlink > 1 and key in first_name and not copy_hard_links:
                    links.append((rel, first_name[key]))
                    source = empty
                elif info.st_nlink > 1:
                    first_name[key] = rel
                if not _proto_token_ok(source):
                    if skipped is not None:
                        skipped.append(rel)
                    continue
                out.append(raw + b" " + _proto_mode("-", mode).encode() + b" 0 0 " + source)
            elif stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
                kind = "b" if stat.S_ISBLK(mode) else "c"
                out.append(raw + b" " + _proto_mode(kind, mode).encode()
                           + f" 0 0 {os.major(info.st_rdev)} {os.minor(info.st_rdev)}".encode())
            elif stat.S_ISFIFO(mode):
                out.append(raw + b" " + _proto_mode("p", mode).encode() + b" 0 0")
            elif skipped is not None:
                skipped.append(rel)

    walk(root, ())
    out += [b"$", b""]
    return b"\n".join(out), links


def build_xfs_tree(src_dir: str | os.PathLike[str], image: str | os.PathLike[str], *,
                   size_mb: int = XFS_MIN_MB, offset: int = 0, uuid: str | None = None,
                   label: str | None = None, when: int | None = BASE_TIME,
                   last: Iterable[str] = (), bigtime: bool = True, crc: bool = True) -> Path:
    """An XFS filesystem of ``size_mb`` MiB holding ``src_dir`` (:func:`xfs_protofile`):
    every path owned by 0:0, hard links made real (:func:`xfs_hard_link`) and, unless ``when``
    is None, every timestamp of every inode pinned to ``when`` (nanoseconds 0). Written to
    a bare ``image`` (``offset`` 0) or into the partition at ``offset`` of an existing disk
    image. ``bigtime=False`` builds classic 32-bit second timestamps, ``crc=False`` a v4
    filesystem (no creation times; implies ``bigtime=False``)."""
    image = Path(image)
    proto, links = xfs_protofile(src_dir, last=last)
    with tempfile.TemporaryDirectory() as tmp:
        proto_path = Path(tmp) / "proto"
        proto_path.write_bytes(proto)
        target = Path(tmp) / "fs.img" if offset else image
        with target.open("wb") as fh:
            fh.truncate(size_mb * MIB)
        features = "crc=0" if not crc else f"bigtime={1 if bigtime else 0}"
        run("mkfs.xfs", "-q", "-f", "-p", proto_path,
            "-m", features + (f",uuid={uuid}" if uuid else ""),
            *(["-L", label] if label else []), target)
        for link, first in links:
            xfs_hard_link(target, first, link)
        if crc:
            for path in _long_symlinks(src_dir):
                xfs_symlink_header(target, path)
        if when is not None:
            paths = list(tree_paths(src_dir))
            fields = ("atime", "mtime", "ctime", "crtime")[:4 if crc else 3]
            for at in range(0, len(paths), 200):
                xfs_set_times(target, paths[at:at + 200], when, fields=fields)
        if offset:
            with image.open("ab") as fh:
                if fh.tell() < offset + size_mb * MIB:
                    fh.truncate(offset + size_mb * MIB)
            embed(image, offset, target)
    return image


_XFS_V5_LITERAL = 512 - 176  # bytes a symlink target can take inside a 512-byte v3 inode


def _long_symlinks(src_dir: str | os.PathLike[str]) -> list[str]:
    root = Path(src_dir)
    return [path for path in tree_paths(root) if path != "/"
            and (root / path[1:]).is_symlink()
            and len(os.fsencode(os.readlink(root / path[1:]))) > _XFS_V5_LITERAL]


def xfs_symlink_header(image: str | os.PathLike[str], path: str) -> None:
    """Give a symlink whose target lives in a block of its own the v5 block header
    (``XSLM``, offset, byte count, CRC, filesystem UUID, owner inode, block address) that
    mkfs.xfs 6.1's protofile code leaves out (xfs_repair calls such a block corrupt); the
    kernel writes it."""
    info = xfs_inode(image, path)
    bad_crc = "Metadata CRC error detected|Allowing write of corrupted data"
    out = xfs_db(image, f"path {path}", "dblock 0", "daddr", write=False, tolerate=bad_crc)
    daddr = int(re.search(r"current daddr is (\d+)", out).group(1))  # type: ignore[union-attr]
    uuid = xfs_db(image, "sb 0", "print uuid", write=False).split("=")[1].strip()
    with open(image, "r+b") as fh:
        fh.seek(daddr * SECTOR)
        block = fh.read(4096)
        if block[:4] == b"XSLM":
            return
        fh.seek(daddr * SECTOR)
        fh.write(bytes(56) + block[:info["size"]])
    xfs_db(image, f"path {path}", "dblock 0", "type symlink", "write -d magic 0x58534c4d",
           "write -d offset 0", f"write -d bytes {info['size']}", f"write -d uuid {uuid}",
           f"write -d owner {info['inode']}", f"write -d bno {daddr}", tolerate=bad_crc)


def _xfs_bigtime(image: str | os.PathLike[str]) -> bool:
    out = xfs_db(image, "sb 0", "print features_incompat", write=False)
    match = re.search(r"features_incompat = (0x[0-9a-f]+|\d+)", out)
    if match is None:
        raise ImagingError(f"no features_incompat in {out!r}")
    return bool(int(match.group(1), 0) & 0x8)  # XFS_SB_FEAT_INCOMPAT_BIGTIME


def _xfs_time_writes(field: str, seconds: int, nanoseconds: int, bigtime: bool) -> list[str]:
    name = "v3.crtime" if field == "crtime" else f"core.{field}"
    if bigtime:
        return [f"write {name} #{(seconds + XFS_EPOCH_OFFSET) * 10**9 + nanoseconds:016x}"]
    return [f"write {name} #{seconds & 0xFFFFFFFF:08x}{nanoseconds:08x}"]


def xfs_set_times(image: str | os.PathLike[str], paths: Iterable[str], seconds: int,
                  nanoseconds: int = 0, fields: Iterable[str] = ("atime", "mtime", "ctime",
                                                                   "crtime"),
                  offset: int = 0) -> None:
    """Set timestamps (default: all four) of each path, in one xfs_db run."""
    fields = tuple(fields)
    with _Extracted(image, offset, write=True) as target:
        bigtime = _xfs_bigtime(target)
        commands = []
        for path in paths:
            commands.append(f"path {path}" if path != "/" else "inode " + _xfs_root(target))
            for field in fields:
                commands += _xfs_time_writes(field, seconds, nanoseconds, bigtime)
        if commands:
            xfs_db(target, *commands)


def _xfs_root(image: str | os.PathLike[str]) -> str:
    out = xfs_db(image, "sb 0", "print rootino", write=False)
    return out.split("=")[1].strip()


def xfs_inode(image: str | os.PathLike[str], path: str, offset: int = 0) -> dict[str, int]:
    """A few fields of the inode at ``path`` (a symlink itself, not followed): ``inode``,
    ``mode`` (with type bits), ``uid``, ``gid``, ``size``, ``nlink``, ``format``,
    ``naextents``."""
    fields = {"mode": "core.mode", "uid": "core.uid", "gid": "core.gid",
              "size": "core.size", "nlink": "core.nlinkv2", "format": "core.format",
              "naextents": "core.naextents"}
    out = xfs_db(image, f"path {path}", "inode", "print " + " ".join(fields.values()),
                 offset=offset, write=False)
    values = dict(re.findall(r"^(\S+) = (\S+)", out, re.MULTILINE))
    number = re.search(r"current inode number is (\d+)", out)
    if number is None:
        raise ImagingError(f"xfs_db: no inode number for {path} in\n{out}")
    info = {"inode": int(number.group(1))}
    for key, name in fields.items():
        if name not in values:
            raise ImagingError(f"xfs_db: no {name} for {path} in\n{out}")
        info[key] = int(values[name].split()[0], 8 if key == "mode" else 0)
    return info


def xfs_set(image: str | os.PathLike[str], path: str, offset: int = 0, **fields: int) -> None:
    """Change inode fields of ``path`` (``mode`` with type bits, ``uid``, ``gid``, ``nlink``);
    no timestamp moves."""
    names = {"mode": "core.mode", "uid": "core.uid", "gid": "core.gid", "nlink": "core.nlinkv2"}
    commands = [f"path {path}"]
    for key, value in fields.items():
        commands.append(f"write {names[key]} {f'0{value:o}' if key == 'mode' else value}")
    xfs_db(image, *commands, offset=offset)


def xfs_overwrite_in_place(image: str | os.PathLike[str], path: str, data: bytes,
                           offset: int = 0) -> None:
    """Replace a file's content with ``data`` of the same size, touching no metadata: the bytes
    go straight into the data blocks ``bmap`` lists (a timestomping attacker's result)."""
    info = xfs_inode(image, path, offset)
    if len(data) != info["size"]:
        raise ValueError(f"{path}: {len(data)} bytes given, the file holds {info['size']}")
    out = xfs_db(image, f"path {path}", "bmap", offset=offset, write=False)
    extents = [tuple(int(x) for x in m) for m in
               re.findall(r"data offset (\d+) startblock (\d+) \(\d+/\d+\) count (\d+)", out)]
    if not extents:
        raise ImagingError(f"{path}: no data extents in\n{out}")
    sb = xfs_db(image, "sb 0", "print blocksize", offset=offset, write=False)
    block = int(sb.split("=")[1])
    with open(image, "r+b") as fh:
        for logical, start, count in extents:
            chunk = data[logical * block:(logical + count) * block]
            if not chunk:
                continue
            daddr = xfs_db(image, f"convert fsblock {start} byte", offset=offset, write=False)
            fh.seek(offset + int(daddr.split()[0], 0))
            fh.write(chunk)


_XATTR_NAMESPACES = {"user.": "-u", "trusted.": "-r", "security.": "-s"}
_ACL_XFS_NAMES = {"system.posix_acl_access": ("-r", "SGI_ACL_FILE"),
                  "system.posix_acl_default": ("-r", "SGI_ACL_DEFAULT")}


def xfs_acl(text: str) -> bytes:
    """The on-disk XFS ACL (``be32 count``, then ``be32 tag, be32 id, be16 perm, be16 pad``;
    id ``0xffffffff`` except for named users and groups) for a ``getfacl -c -n`` style text."""
    entries = text.split(",")
    out = struct.pack(">I", len(entries))
    for entry in entries:
        tag, qualifier, perms = entry.split(":")
        perm = sum(bit for ch, bit in zip(perms, (4, 2, 1), strict=True) if ch != "-")
        code = _ACL_TAGS[(tag, bool(qualifier))]
        out += struct.pack(">IIHH", code, int(qualifier) if qualifier else _ACL_UNDEFINED_ID,
                           perm, 0)
    return out


def _xfs_attr_index(image: str | os.PathLike[str], path: str, flag: str, name: str,
                    offset: int) -> int | None:
    """Index of attribute ``name`` of namespace ``flag`` in the short-form attribute fork."""
    out = xfs_db(image, f"path {path}", "print", offset=offset, write=False)
    fields = dict(re.findall(r"^a\.sfattr\.list\[(\d+\]\.\w+) = (.*)$", out, re.MULTILINE))
    index = 0
    while f"{index}].name" in fields:
        namespace = ("-r" if fields[f"{index}].root"] == "1" else
                     "-s" if fields[f"{index}].secure"] == "1" else "-u")
        if fields[f"{index}].name"] == f'"{name}"' and namespace == flag:
            return index
        index += 1
    return None


def _xfs_ctime(image: str | os.PathLike[str], path: str, offset: int) -> tuple[int, int]:
    out = xfs_db(image, f"path {path}", "print core.ctime.sec core.ctime.nsec", offset=offset,
                 write=False)
    values = dict(re.findall(r"^(\S+) = (.*)$", out, re.MULTILINE))
    when = datetime.strptime(" ".join(values["core.ctime.sec"].split()),
                             "%a %b %d %H:%M:%S %Y").replace(tzinfo=UTC)
    return int(when.timestamp()), int(values["core.ctime.nsec"])


def _xfs_attr_names(name: str) -> tuple[str, str]:
    """xfs_db's namespace flag and short name for a Linux xattr name."""
    if name in _ACL_XFS_NAMES:
        return _ACL_XFS_NAMES[name]
    prefix = next(p for p in _XATTR_NAMESPACES if name.startswith(p))
    return _XATTR_NAMESPACES[prefix], name[len(prefix):]


def xfs_set_xattr(image: str | os.PathLike[str], path: str, name: str, value: bytes,
                  offset: int = 0) -> None:
    """Set one extended attribute by its Linux name (``security.capability``, ``user.x``,
    ``system.posix_acl_access`` given as :func:`xfs_acl` bytes) in the inode's short-form
    attribute fork. xfs_db moves the ctime like the kernel; it is put back, so nothing but the
    attribute changes (as debugfs ``ea_set`` does on ext4). An existing value is replaced."""
    flag, short = _xfs_attr_names(name)
    ctime = _xfs_ctime(image, path, offset)
    if _xfs_attr_index(image, path, flag, short, offset) is not None:
        xfs_db(image, f"path {path}", f"attr_remove {flag} {short}", offset=offset)
    xfs_db(image, f"path {path}", f"attr_set {flag} -v {len(value)} {short}", offset=offset)
    index = _xfs_attr_index(image, path, flag, short, offset)
    if index is None:
        raise ImagingError(f"{path}: attribute {short} not in the short-form fork")
    if value:
        xfs_db(image, f"path {path}", f"write a.sfattr.list[{index}].value #{value.hex()}",
               offset=offset)
    xfs_set_times(image, [path], *ctime, fields=("ctime",), offset=offset)


def xfs_remove_xattr(image: str | os.PathLike[str], path: str, name: str,
                     offset: int = 0) -> None:
    """Remove one extended attribute by its Linux name (the ctime is kept, as above)."""
    flag, short = _xfs_attr_names(name)
    ctime = _xfs_ctime(image, path, offset)
    xfs_db(image, f"path {path}", f"attr_remove {flag} {short}", offset=offset)
    xfs_set_times(image, [path], *ctime, fields=("ctime",), offset=offset)


def _xfs_dir_entry(image: str | os.PathLike[str], path: str, offset: int) -> tuple[str, int]:
    """The short-form entry of ``path`` in its parent: (field prefix, index)."""
    parent, name = path.rsplit("/", 1)
    out = xfs_db(image, f"path {parent or '/'}", "print", offset=offset, write=False)
    for fork, index, found in re.findall(r'^(u3?)\.sfdir3\.list\[(\d+)\]\.name = "(.*)"$', out,
                                         re.MULTILINE):
        if found == name:
            return f"{fork}.sfdir3", int(index)
    raise ImagingError(f"{path}: no short-form directory entry in\n{out}")


def xfs_rename_in_place(image: str | os.PathLike[str], path: str, new_name: str,
                        offset: int = 0) -> None:
    """Rename a directory entry to a name of the same length (the parent must be a
    short-form directory); the inode is untouched."""
    old = path.rsplit("/", 1)[1]
    if len(old) != len(new_name):
        raise ValueError("xfs_db can only rename to a name of the same length")
    prefix, index = _xfs_dir_entry(image, path, offset)
    parent = path.rsplit("/", 1)[0] or "/"
    xfs_db(image, f"path {parent}", f'write {prefix}.list[{index}].name "{new_name}"',
           offset=offset)


def xfs_hard_link(image: str | os.PathLike[str], existing: str, placeholder: str,
                  offset: int = 0) -> None:
    """Turn ``placeholder`` (an empty regular file, as :func:`xfs_protofile` writes for
    hard links) into a second name of ``existing``: its directory entry is pointed at the
    existing inode, whose link count goes up, and the placeholder's inode is freed in the
    inode btrees (it owns no blocks), so xfs_repair finds the result clean. Both parents
    must be short-form directories with 4-byte inode numbers."""
    with _Extracted(image, offset, write=True) as target:
        first = xfs_inode(target, existing)
        spare = xfs_inode(target, placeholder)
        if spare["size"] or spare["mode"] & 0o170000 != 0o100000:
            raise ImagingError(f"{placeholder} is not an empty placeholder file")
        prefix, index = _xfs_dir_entry(target, placeholder, 0)
        parent = placeholder.rsplit("/", 1)[0] or "/"
        xfs_db(target, f"path {parent}",
               f"write {prefix}.list[{index}].inumber.i4 {first['inode']}",
               f"inode {first['inode']}", f"write core.nlinkv2 {first['nlink'] + 1}",
               f"inode {spare['inode']}", "write core.mode 0", "write core.nlinkv2 0")
        _xfs_free_inode(target, spare["inode"])


def _xfs_free_inode(image: Path, inode: int) -> None:
    """Mark ``inode`` free in its AG's inode btree and free-inode btree, and count it in the
    AGI and the superblock."""
    ag = int(xfs_db(image, f"convert ino {inode} agno", write=False).split()[0], 0)
    agino = int(xfs_db(image, f"convert ino {inode} agino", write=False).split()[0], 0)
    agi = xfs_db(image, f"agi {ag}", "print", write=False)
    values = dict(re.findall(r"^(\S+) = (\S+)", agi, re.MULTILINE))
    roots = ("root", "free_root") if values.get("free_level", "0") != "0" else ("root",)
    if any(values[r.replace("root", "level")] != "1" for r in roots):
        raise ImagingError("inode btrees deeper than one level are not handled")
    ifree = int(xfs_db(image, "sb 0", "print ifree", write=False).split("=")[1])
    commands = [f"agi {ag}", f"write freecount {int(values['freecount']) + 1}",
                "sb 0", f"write ifree {ifree + 1}"]
    for root in roots:
        recs = xfs_db(image, f"agi {ag}", f"addr {root}", "print recs", write=False)
        header = re.search(r"^recs\[\d+\] = \[(.*)\]", recs, re.MULTILINE)
        if header is None:
            raise ImagingError(f"no records in\n{recs}")
        names = header.group(1).split(",")
        found = False
        for number, raw in re.findall(r"^(\d+):\[(.*)\]", recs, re.MULTILINE):
            rec = dict(zip(names, raw.split(","), strict=True))
            bit = agino - int(rec["startino"])
            if 0 <= bit < 64:
                commands += [f"agi {ag}", f"addr {root}",
                             f"write recs[{number}].freecount {int(rec['freecount']) + 1}",
                             f"write recs[{number}].free "
                             f"#{int(rec['free'], 16) | 1 << bit:016x}"]
                found = True
        if not found:
            raise ImagingError(f"no {root} btree record holds inode {inode}")
    xfs_db(image, *commands)


def xfs_retarget_symlink(image: str | os.PathLike[str], path: str, target: str,
                         offset: int = 0) -> None:
    """Point a short (in-inode) symlink at ``target`` in place: data and size change, the
    inode and its timestamps do not."""
    out = xfs_db(image, f"path {path}", "print", offset=offset, write=False)
    fork = "u3" if re.search(r"^u3\.symlink = ", out, re.MULTILINE) else "u"
    xfs_db(image, f"path {path}", f"write core.size {len(target.encode())}",
           f'write {fork}.symlink "{target}"', offset=offset)
