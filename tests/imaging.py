"""Build and change real disk images for tests, without mounting anything.

Everything here shells out to e2fsprogs (``mkfs.ext4 -d``, ``debugfs``, ``e2fsck``) and writes
image bytes directly; nothing needs root, loop devices or a mount. Images are built on the fly
in a test's ``tmp_path`` (a 32 MiB ext4 image takes ~20 ms), never committed.

Typical use::

    root = linux_tree(tmp_path / "src")
    image = build_ext4(root, tmp_path / "disk.img")
    pin_times(image, tree_paths(root), BASE_TIME)      # deterministic timestamps
    debugfs(image, "set_current_time @1800000000", "sif /usr/bin/login mode 0100600")
    overwrite_in_place(image, "/usr/bin/login", b"...")  # content change, metadata untouched
    assert e2fsck_ok(image)

Facts worth knowing (e2fsprogs 1.47.0):

- ``mkfs.ext4 -d`` keeps modes, owners, symlinks, hard links, xattrs and mtime/atime of the
  source tree, but the inode ctime is the *host* file's ctime (seconds) and crtime is the mkfs
  time: use :func:`pin_times` to make a base image deterministic.
- ``debugfs`` reports most errors on stderr and still exits 0: :func:`debugfs` treats any
  stderr line other than its version banner as a failure.
- ``sif`` (set_inode_field) changes exactly the field named, never ctime. ``ln`` adds a
  directory entry without touching the link count and ``unlink`` removes one without
  decrementing it. New inodes (``write``, ``symlink``, ``mkdir``) get the ``set_current_time``
  time for all four timestamps, and ``write`` copies the host file's mode (owner 0:0).
- ``ea_set -f FILE`` converts a ``system.posix_acl_*`` value given in the VFS (v2) encoding to
  the ext4 on-disk (v1) encoding, like the kernel does.
- Images at an offset (a partition of a disk image) are addressed as ``image?offset=N`` by the
  e2fsprogs tools; every helper here takes ``offset``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Timestamps given to every inode of a base image by ``linux_image`` (seconds since the epoch).
BASE_TIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC

_DEBUGFS_BANNER = re.compile(r"^debugfs \d+\.\d+")


class ImagingError(RuntimeError):
    """A tool failed; the message carries its command line and output."""


def run(*cmd: str | os.PathLike[str]) -> str:
    """Run a command, return its stdout; raise :class:`ImagingError` with stderr on failure."""
    args = [os.fspath(c) for c in cmd]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImagingError(f"{' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stderr}{proc.stdout}")
    return proc.stdout


def _target(image: str | os.PathLike[str], offset: int) -> str:
    """How e2fsprogs names a filesystem that starts ``offset`` bytes into ``image``."""
    return f"{os.fspath(image)}?offset={offset}" if offset else os.fspath(image)


def _copy_extents(fin: Any, fout: Any, offset: int = 0) -> int:
    """Copy the data extents of ``fin`` into ``fout`` at ``offset`` (holes are skipped);
    returns the source size."""
    size = os.fstat(fin.fileno()).st_size
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            break
        end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
        fin.seek(start)
        fout.seek(offset + start)
        remaining = end - start
        while remaining:
            chunk = fin.read(min(remaining, 1 << 20))
            fout.write(chunk)
            remaining -= len(chunk)
        pos = end
    return size


def copy_image(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy an image keeping it sparse: only the data extents are copied (SEEK_DATA /
    SEEK_HOLE), so a mostly empty 32 MiB image copies in about a millisecond."""
    dst = Path(dst)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.truncate(_copy_extents(fin, fout))
    return dst


# -- ext4 -------------------------------------------------------------------------------------

def build_ext4(src_dir: str | os.PathLike[str], image: str | os.PathLike[str],
               size_mb: int = 32, offset: int = 0) -> Path:
    """Create an ext4 filesystem of ``size_mb`` MiB holding a copy of ``src_dir``.

    The image file is created (or grown, never shrunk) to hold ``offset + size_mb`` MiB, so a
    filesystem can be written into a partition of an existing disk image. Root of the new
    filesystem is owned by 0:0; inodes are 256 bytes (room for in-inode xattrs and crtime).
    """
    image = Path(image)
    needed = offset + size_mb * 1024 * 1024
    with image.open("ab") as fh:
        if fh.tell() < needed:
            fh.truncate(needed)
    extended = "root_owner=0:0" + (f",offset={offset}" if offset else "")
    run("mkfs.ext4", "-q", "-F", "-d", src_dir, "-E", extended, "-I", "256", image,
        f"{size_mb * 1024}k")
    return image


def debugfs(image: str | os.PathLike[str], *commands: str, offset: int = 0,
            write: bool = True) -> str:
    """Run debugfs commands (one script, one process) on an image; return stdout.

    Raises :class:`ImagingError` when debugfs exits non-zero *or* prints anything on stderr
    besides its banner (it reports "File not found", "invalid field specifier" and the like on
    stderr and still exits 0).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as fh:
        fh.write("\n".join(commands) + "\n")
        script = fh.name
    try:
        args = ["debugfs", *(["-w"] if write else []), "-f", script, _target(image, offset)]
        proc = subprocess.run(args, capture_output=True, text=True)
    finally:
        os.unlink(script)
    errors = [line for line in proc.stderr.splitlines()
              if line.strip() and not _DEBUGFS_BANNER.match(line)]
    if proc.returncode != 0 or errors:
        raise ImagingError(f"debugfs failed on {image} (exit {proc.returncode}):\n"
                           + "\n".join(errors) + "\nscript:\n" + "\n".join(commands))
    return proc.stdout


def e2fsck_ok(image: str | os.PathLike[str], offset: int = 0) -> bool:
    """True when ``e2fsck -fn`` finds the filesystem clean.

    Raises :class:`ImagingError` with e2fsck's report otherwise, so ``assert e2fsck_ok(img)``
    fails with the reason rather than a bare False.
    """
    proc = subprocess.run(["e2fsck", "-fn", _target(image, offset)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise ImagingError(f"e2fsck -fn {image}: exit {proc.returncode}\n"
                           f"{proc.stdout}{proc.stderr}")
    return True


def block_size(image: str | os.PathLike[str], offset: int = 0) -> int:
    """The filesystem's block size, from its superblock (``debugfs stats``)."""
    out = debugfs(image, "stats", offset=offset, write=False)
    match = re.search(r"^Block size:\s+(\d+)", out, re.MULTILINE)
    if match is None:
        raise ImagingError(f"no block size in debugfs stats of {image}")
    return int(match.group(1))


def inode_info(image: str | os.PathLike[str], path: str, offset: int = 0) -> dict[str, int]:
    """A few fields of ``debugfs stat PATH`` (the path itself, a symlink is not followed):
    ``inode``, ``mode`` (with type bits), ``uid``, ``gid``, ``size``, ``links``, and the four
    timestamps in seconds (``atime``, ``mtime``, ``ctime``, ``crtime``)."""
    out = debugfs(image, f'stat "{path}"', offset=offset, write=False)
    info: dict[str, int] = {}
    patterns = {
        "inode": r"^Inode:\s+(\d+)", "mode": r"Mode:\s+(\d+)", "uid": r"User:\s+(\d+)",
        "gid": r"Group:\s+(\d+)", "size": r"Size:\s+(\d+)", "links": r"^Links:\s+(\d+)",
        **{t: rf"^\s*{t}:\s+0x([0-9a-f]+)" for t in ("atime", "mtime", "ctime", "crtime")},
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, out, re.MULTILINE)
        if match is None:
            raise ImagingError(f"debugfs stat {path}: no {key} in\n{out}")
        base = 16 if key.endswith("time") else 8 if key == "mode" else 10
        info[key] = int(match.group(1), base)
    return info


def data_blocks(image: str | os.PathLike[str], path: str, count: int,
                offset: int = 0) -> list[int]:
    """Physical block numbers of logical blocks ``0 .. count-1`` of a file (``bmap``)."""
    out = debugfs(image, *(f'bmap "{path}" {n}' for n in range(count)), offset=offset,
                  write=False)
    blocks = [int(line) for line in out.splitlines() if line.strip().isdigit()]
    if len(blocks) != count or 0 in blocks:
        raise ImagingError(f"{path}: expected {count} mapped blocks, bmap said {out!r}")
    return blocks


def overwrite_in_place(image: str | os.PathLike[str], path: str, data: bytes,
                       offset: int = 0) -> None:
    """Replace a file's content with ``data`` of the same size, touching no metadata.

    The bytes are written straight into the file's data blocks in the image, so size, mode,
    owners, inode, extents and all four timestamps stay as they were: what a timestomping
    attacker (``touch -r``) leaves behind, minus the ctime the kernel would have moved.
    """
    info = inode_info(image, path, offset)
    if len(data) != info["size"]:
        raise ValueError(f"{path}: {len(data)} bytes given, the file holds {info['size']}")
    bs = block_size(image, offset)
    count = -(-len(data) // bs)
    blocks = data_blocks(image, path, count, offset)
    with open(image, "r+b") as fh:
        for n, block in enumerate(blocks):
            fh.seek(offset + block * bs)
            fh.write(data[n * bs:(n + 1) * bs])


def pin_times(image: str | os.PathLike[str], paths: Iterable[str], when: int,
              offset: int = 0) -> None:
    """Set atime, mtime, ctime and crtime (nanoseconds 0) of each path to ``when`` seconds."""
    commands = [f'sif "{p}" {field} @{when}' for p in paths
                for field in ("atime", "mtime", "ctime", "crtime")]
    if commands:
        debugfs(image, *commands, offset=offset)


def pin_owners(image: str | os.PathLike[str], paths: Iterable[str], uid: int = 0, gid: int = 0,
               offset: int = 0) -> None:
    """Give each path to ``uid:gid`` (``mkfs -d`` copies the source files' owners, which are
    the invoking user's unless the tests run as root)."""
    commands = [f'sif "{p}" {field} {value}' for p in paths
                for field, value in (("uid", uid), ("gid", gid))]
    if commands:
        debugfs(image, *commands, offset=offset)


def set_xattr(image: str | os.PathLike[str], path: str, name: str, value: bytes,
              offset: int = 0) -> None:
    """Set one extended attribute (``ea_set -f``); no timestamp changes. ``system.posix_acl_*``
    values are given in the VFS encoding (see :func:`acl_xattr`); debugfs stores them in the
    ext4 form."""
    with tempfile.NamedTemporaryFile("wb", suffix=".xattr", delete=False) as fh:
        fh.write(value)
        value_file = fh.name
    try:
        debugfs(image, f'ea_set -f {value_file} "{path}" {name}', offset=offset)
    finally:
        os.unlink(value_file)


# -- xattr values -----------------------------------------------------------------------------

_ACL_TAGS = {("user", False): 0x01, ("user", True): 0x02, ("group", False): 0x04,
             ("group", True): 0x08, ("mask", False): 0x10, ("other", False): 0x20}
_ACL_UNDEFINED_ID = 0xFFFFFFFF


def acl_xattr(text: str) -> bytes:
    """The VFS (v2) ``system.posix_acl_access`` value for a ``getfacl -c -n`` style short text
    such as ``user::rw-,user:1000:r--,group::r--,mask::r--,other::r--`` (entries must already
    be in canonical order, as setfacl stores them)."""
    out = struct.pack("<I", 2)
    for entry in text.split(","):
        tag, qualifier, perms = entry.split(":")
        perm = sum(bit for ch, bit in zip(perms, (4, 2, 1), strict=True) if ch != "-")
        code = _ACL_TAGS[(tag, bool(qualifier))]
        out += struct.pack("<HHI", code, perm, int(qualifier) if qualifier else _ACL_UNDEFINED_ID)
    return out


def capability_xattr(permitted: Iterable[int], effective: bool = True) -> bytes:
    """A revision-2 ``security.capability`` value (what ``setcap CAPS=p[e]`` writes) for the
    capability numbers in ``permitted`` (e.g. 13 = cap_net_raw, 10 = cap_net_bind_service)."""
    mask = 0
    for cap in permitted:
        mask |= 1 << cap
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack("<IIIII", magic, mask & 0xFFFFFFFF, 0, mask >> 32, 0)


# -- source trees -----------------------------------------------------------------------------

def _write(root: Path, rel: str, data: bytes, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def linux_tree(root: str | os.PathLike[str]) -> Path:
    """Write a small merged-/usr Linux-like tree under ``root`` and return it.

    Layout (modes as on a real system; file content is ``b"<path>\\n"`` unless noted)::

        bin -> usr/bin, sbin -> usr/sbin, lib -> usr/lib
        etc/a.conf  etc/ld.so.conf  etc/sub/b.conf  etc/crontab  etc/passwd
        etc/init.d/ssh (0755)  etc/cron.daily/logrotate (0755)
        usr/bin/{login,ls,ping,tool,dash} (0755)  usr/bin/passwd (04755)
        usr/bin/sh -> dash
        usr/bin/gzip, usr/bin/gunzip: one inode, two names (0755)
        usr/sbin/{sshd,useradd} (0755)  usr/lib/libc.so.6
        boot/vmlinuz-6.1 (0600, 3000 bytes: spans several 1 KiB blocks)  boot/grub/grub.cfg
        var/log/syslog  home/u/notes                   (not monitored by default)
        srv/app/run.sh  srv/app/lib/deep.py  srv/app/cache/c.bin  (for custom entities)

    No ``etc/fstab``: the image is its own root. Owners are the caller's (see
    :func:`pin_owners`).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "etc/a.conf": 0o644, "etc/ld.so.conf": 0o644, "etc/sub/b.conf": 0o644,
        "etc/crontab": 0o644, "etc/passwd": 0o644,
        "etc/init.d/ssh": 0o755, "etc/cron.daily/logrotate": 0o755,
        "usr/bin/login": 0o755, "usr/bin/ls": 0o755, "usr/bin/ping": 0o755,
        "usr/bin/tool": 0o755, "usr/bin/dash": 0o755, "usr/bin/passwd": 0o4755,
        "usr/bin/gzip": 0o755,
        "usr/sbin/sshd": 0o755, "usr/sbin/useradd": 0o755, "usr/lib/libc.so.6": 0o644,
        "boot/grub/grub.cfg": 0o644,
        "var/log/syslog": 0o640, "home/u/notes": 0o644,
        "srv/app/run.sh": 0o755, "srv/app/lib/deep.py": 0o644, "srv/app/cache/c.bin": 0o644,
    }
    for rel, mode in files.items():
        _write(root, rel, f"/{rel}\n".encode(), mode)
    _write(root, "boot/vmlinuz-6.1", bytes(range(256)) * 11 + b"\x00" * 184, 0o600)
    os.link(root / "usr/bin/gzip", root / "usr/bin/gunzip")
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("usr/bin/sh", "dash")):
        os.symlink(target, root / link)
    return root


def tree_paths(root: str | os.PathLike[str]) -> Iterator[str]:
    """Every path of a source tree as an absolute path inside the image (``/`` first)."""
    root = Path(root)
    yield "/"
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            yield "/" + (Path(dirpath) / name).relative_to(root).as_posix()


def linux_image(workdir: str | os.PathLike[str], name: str = "base.img") -> Path:
    """Build the :func:`linux_tree` image in ``workdir``: everything owned by 0:0, every
    timestamp pinned to :data:`BASE_TIME`, ``/usr/bin/tool`` carrying the POSIX ACL
    :data:`BASE_TOOL_ACL`. The result is the same whoever runs it, whenever."""
    workdir = Path(workdir)
    root = linux_tree(workdir / "src")
    image = build_ext4(root, workdir / name)
    set_xattr(image, "/usr/bin/tool", "system.posix_acl_access", acl_xattr(BASE_TOOL_ACL))
    paths = list(tree_paths(root))
    pin_owners(image, paths)
    pin_times(image, paths, BASE_TIME)
    return image


BASE_TOOL_ACL = "user::rwx,user:1000:r-x,group::r-x,mask::r-x,other::r-x"


# -- partitioned disks, other filesystems, VHD ------------------------------------------------
#
# Facts (sfdisk 2.38, mtools 4.0.32, exfatprogs 1.2.0, mkntfs 2022.10.3,
# mkfs.xfs 6.1.0; checked when these helpers were written):
#
# - ``e2fsprogs`` tools address a filesystem inside a disk image as ``disk?offset=N``, so ext4
#   partitions are built, changed (debugfs) and checked (e2fsck) in place; the other mkfs tools
#   build a separate image that :func:`embed` copies into the partition's byte range.
# - mtools writes FAT times in the *local* time of the mcopy process; :func:`build_vfat` runs it
#   with ``TZ=UTC`` so a host mtime comes back as the same UTC instant when read with TZ=UTC.
# - exfatprogs has no tool to put files in an exFAT image without mounting: :func:`build_exfat`
#   writes the directory entry sets, allocation bitmap bits and data clusters itself (contiguous
#   clusters, ``NoFatChain``), and ``fsck.exfat -n`` accepts the result.
# - mkfs.xfs 6.1 refuses filesystems under 300 MiB; a sparse 300 MiB partition costs nothing.

MIB = 1024 * 1024
SECTOR = 512


def _run_env(*cmd: str | os.PathLike[str], env: dict[str, str] | None = None,
             stdin: str | None = None) -> str:
    """:func:`run` with extra environment variables and optional standard input."""
    args = [os.fspath(c) for c in cmd]
    proc = subprocess.run(args, capture_output=True, text=True, input=stdin,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise ImagingError(f"{' '.join(args)} exited {proc.returncode}:\n"
                           f"{proc.stderr}{proc.stdout}")
    return proc.stdout


def _partition(image: Path, script: str) -> dict[str, Any]:
    """Write a partition table with ``sfdisk`` and return ``sfdisk -J``'s view of it.

    sfdisk fsyncs the image (about 250 ms on a VM disk) and sgdisk also sleeps a second, so
    the table is written to a sparse scratch copy on tmpfs (/dev/shm) and its written extents
    (the tables only) are copied into the image.
    """
    size = image.stat().st_size
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        scratch = Path(tmp) / "table.img"
        with scratch.open("wb") as fh:
            fh.truncate(size)
        _run_env("sfdisk", "--no-reread", "--no-tell-kernel", "-q", scratch, stdin=script)
        table: dict[str, Any] = json.loads(run("sfdisk", "-J", scratch))["partitiontable"]
        embed(image, 0, scratch)
    return table


def gpt_disk(image: str | os.PathLike[str], sizes_mb: list[int],
             types: list[str] | None = None, names: list[str] | None = None) -> list[int]:
    """Create a GPT disk image with partitions of ``sizes_mb`` MiB, in order, the first at
    1 MiB, each 1 MiB aligned (``types``: sfdisk type aliases such as ``linux``, ``uefi``,
    ``swap``, or type GUIDs, default ``linux``; ``names``: GPT partition names, which TSK gives
    as the description); return their byte offsets. The file is sparse: 1 MiB before the
    partitions and 1 MiB after them for the GPT headers; the disk GUID is fixed."""
    image = Path(image)
    types = types or ["linux"] * len(sizes_mb)
    with image.open("wb") as fh:
        fh.truncate((2 + sum(sizes_mb)) * MIB)
    lines = ["label: gpt", "label-id: 5EED0000-0000-4000-8000-00000000D15C"]
    start = 2048
    for number, (size, kind) in enumerate(zip(sizes_mb, types, strict=True), start=1):
        name = f', name="{names[number - 1]}"' if names else ""
        lines.append(f"start={start}, size={size}MiB, type={kind}{name}")
        start += size * MIB // SECTOR
    table = _partition(image, "\n".join(lines) + "\n")
    sector = int(table.get("sectorsize", SECTOR))
    return [int(p["start"]) * sector for p in table["partitions"]]


def mbr_disk(image: str | os.PathLike[str], size_mb: int, script: str) -> dict[int, int]:
    """Create an MBR disk image of ``size_mb`` MiB partitioned by an ``sfdisk`` script; return
    the byte offset of each partition by its number (logical partitions are 5, 6, ...)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    table = _partition(image, "label: dos\n" + script)
    sector = int(table.get("sectorsize", SECTOR))
    return {int(re.search(r"(\d+)$", p["node"]).group(1)): int(p["start"]) * sector  # type: ignore[union-attr]
            for p in table["partitions"]}


def embed(disk: str | os.PathLike[str], offset: int, fs_image: str | os.PathLike[str]) -> None:
    """Copy a separately built filesystem image into a disk image at ``offset`` (like ``dd
    conv=notrunc seek=...``), data extents only so a sparse source stays cheap."""
    with open(fs_image, "rb") as fin, open(disk, "r+b") as fout:
        _copy_extents(fin, fout, offset)


def write_at(image: str | os.PathLike[str], offset: int, data: bytes) -> bytes:
    """Overwrite ``len(data)`` bytes of an image at ``offset``; return the bytes replaced."""
    with open(image, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(len(data))
        fh.seek(offset)
        fh.write(data)
    return old


def build_ext4_volume(src_dir: str | os.PathLike[str], image: str | os.PathLike[str], *,
                      size_mb: int, offset: int = 0, uuid: str | None = None,
                      when: int = BASE_TIME) -> Path:
    """An ext4 filesystem holding ``src_dir`` (in a partition at ``offset`` of an existing disk
    image, or a new bare image), with a chosen UUID (``mkfs.ext4 -U``), every path owned by 0:0
    and every timestamp pinned to ``when``: the same result whoever builds it, whenever."""
    image = Path(image)
    if not image.exists():
        with image.open("wb") as fh:
            fh.truncate(offset + size_mb * MIB)
    extended = "root_owner=0:0" + (f",offset={offset}" if offset else "")
    run("mkfs.ext4", "-q", "-F", "-d", src_dir, "-E", extended, "-I", "256",
        *(["-U", uuid] if uuid else []), image, f"{size_mb * 1024}k")
    paths = list(tree_paths(src_dir))
    pin_owners(image, paths, offset=offset)
    pin_times(image, paths, when, offset=offset)
    return image


def build_vfat(src_dir: str | os.PathLike[str] | None, image: str | os.PathLike[str], *,
               size_mb: int = 16, volume_id: str = "ABCD-1234", fat_bits: int = 16,
               label: str | None = None) -> Path:
    """A FAT image (``mkfs.vfat -F fat_bits``) with serial ``volume_id`` (as ``blkid`` and fstab
    write it, ``XXXX-XXXX``) holding a copy of ``src_dir`` with its mtimes (``mcopy -s -m``,
    run with TZ=UTC so the stored local times are the UTC ones)."""
    image = Path(image)
    if image.exists():
        image.unlink()
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkfs.vfat", "-F", str(fat_bits), "-i", volume_id.replace("-", ""),
        *(["-n", label] if label else []), image)
    if src_dir is not None:
        entries = sorted(Path(src_dir).iterdir())
        if entries:
            _run_env("mcopy", "-s", "-p", "-m", "-i", image, *entries, "::/",
                     env={"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"})
    return image


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


def build_xfs(image: str | os.PathLike[str], *, size_mb: int = 300,
              uuid: str | None = None) -> Path:
    """An empty XFS image (sparse; mkfs.xfs 6.1 wants 300 MiB at least)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkfs.xfs", "-q", "-f", *(["-m", f"uuid={uuid}"] if uuid else []), image)
    return image


# exFAT, written by hand -------------------------------------------------------------------------

def _exfat_time(when: int) -> int:
    """An exFAT (DOS-style, 2 s resolution) timestamp of ``when`` seconds, UTC."""
    t = datetime.fromtimestamp(when, UTC)
    return ((t.year - 1980) << 25 | t.month << 21 | t.day << 16 | t.hour << 11 | t.minute << 5
            | t.second // 2)


def _exfat_checksum(data: bytes, skip: tuple[int, ...] = ()) -> int:
    value = 0
    for i, byte in enumerate(data):
        if i not in skip:
            value = (((value << 15) | (value >> 1)) + byte) & 0xFFFF
    return value


def _exfat_entry_set(name: str, *, directory: bool, first_cluster: int, length: int,
                     when: int) -> bytes:
    """File + Stream Extension + File Name entries for one file or directory."""
    utf16 = name.encode("utf-16-le")
    chars = len(utf16) // 2
    if chars > 255:
        raise ValueError(f"exFAT name too long: {name!r}")
    name_entries = -(-chars // 15)
    stamp = _exfat_time(when)
    # File directory entry (0x85): attributes, the three times (UTC offsets flagged valid, +0)
    file_entry = struct.pack("<BBHHHIIIBBBBB7x", 0x85, 1 + name_entries, 0,
                             0x10 if directory else 0x20, 0, stamp, stamp, stamp, 0, 0,
                             0x80, 0x80, 0x80)
    name_hash = _exfat_checksum(name.upper().encode("utf-16-le"))  # ASCII up-casing suffices
    flags = 0x03 if length else 0x00  # AllocationPossible | NoFatChain
    stream = struct.pack("<BBBBHHQ4xIQ", 0xC0, flags, 0, chars, name_hash, 0, length,
                         first_cluster if length else 0, length)
    names = b""
    for i in range(name_entries):
        part = utf16[i * 30:(i + 1) * 30].ljust(30, b"\0")
        names += struct.pack("<BB", 0xC1, 0) + part
    entries = bytearray(file_entry + stream + names)
    struct.pack_into("<H", entries, 2, _exfat_checksum(bytes(entries), skip=(2, 3)))
    return bytes(entries)


def build_exfat(image: str | os.PathLike[str], tree: dict[str, object], *, size_mb: int = 16,
                label: str = "EXF", when: int = BASE_TIME) -> Path:
    """An exFAT image (``mkfs.exfat``) holding ``tree`` (name -> bytes for a file, or a nested
    dict for a directory) with every timestamp ``when``; nothing is mounted: entry sets,
    allocation bitmap bits and contiguous data clusters are written directly."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkfs.exfat", "-L", label, image)
    with image.open("r+b") as disk:
        boot = disk.read(512)
        fat_offset, fat_length, heap, clusters, root = struct.unpack_from("<IIIII", boot, 0x50)
        sector = 1 << boot[0x6C]
        csize = sector << boot[0x6D]

        def cluster_at(n: int) -> int:
            return heap * sector + (n - 2) * csize

        disk.seek(cluster_at(root))
        root_dir = disk.read(csize)
        bitmap_cluster = bitmap_length = None
        free_slot = None
        for at in range(0, csize, 32):
            kind = root_dir[at]
            if kind == 0x81:
                bitmap_cluster, bitmap_length = struct.unpack_from("<IQ", root_dir, at + 20)
            if kind == 0x00:
                free_slot = at
                break
        assert bitmap_cluster is not None and free_slot is not None
        disk.seek(cluster_at(bitmap_cluster))
        bitmap = bytearray(disk.read(bitmap_length))
        next_free = next(i for i in range(clusters) if not bitmap[i // 8] >> (i % 8) & 1) + 2

        def allocate(data: bytes) -> int:
            nonlocal next_free
            count = -(-len(data) // csize)
            if not count:
                return 0
            first = next_free
            for n in range(first, first + count):
                bitmap[(n - 2) // 8] |= 1 << ((n - 2) % 8)
            next_free += count
            disk.seek(cluster_at(first))
            disk.write(data)
            return first

        def write_dir(entries: dict[str, object]) -> bytes:
            out = b""
            for name, value in entries.items():
                if isinstance(value, dict):
                    body = write_dir(value).ljust(csize, b"\0")
                    out += _exfat_entry_set(name, directory=True, first_cluster=allocate(body),
                                            length=len(body), when=when)
                else:
                    assert isinstance(value, bytes)
                    out += _exfat_entry_set(name, directory=False,
                                            first_cluster=allocate(value), length=len(value),
                                            when=when)
            return out

        listing = write_dir(tree)
        if free_slot + len(listing) > csize:
            raise ValueError("exFAT root listing larger than one cluster")
        disk.seek(cluster_at(root) + free_slot)
        disk.write(listing)
        disk.seek(cluster_at(bitmap_cluster))
        disk.write(bitmap)
    return image


# VHD ----------------------------------------------------------------------------------------

VHD_FIXED, VHD_DYNAMIC = 2, 3


def vhd_footer(disk_size: int, disk_type: int = VHD_FIXED) -> bytes:
    """A 512-byte VHD footer (big-endian fields, ones'-complement checksum) for a disk of
    ``disk_size`` bytes; ``disk_type`` 2 = fixed, 3 = dynamic."""
    sectors = disk_size // SECTOR
    cylinders, heads, per_track = min(sectors // (16 * 63), 65535), 16, 63  # geometry: CHS-ish
    footer = bytearray(struct.pack(
        ">8sIIQI4sI4sQQHBBII16sB",
        b"conectix", 2, 0x00010000,
        0xFFFFFFFFFFFFFFFF if disk_type == VHD_FIXED else SECTOR,  # data offset
        0, b"snap", 0x00010000, b"Wi2k", disk_size, disk_size, cylinders, heads, per_track,
        disk_type, 0, bytes(range(16)), 0))
    footer = footer.ljust(512, b"\0")
    struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
    return bytes(footer)


def append_vhd_footer(image: str | os.PathLike[str], disk_type: int = VHD_FIXED) -> Path:
    """Turn a raw image into a fixed VHD (the raw bytes plus a footer), in place."""
    image = Path(image)
    size = image.stat().st_size
    with image.open("ab") as fh:
        fh.write(vhd_footer(size, disk_type))
    return image


def dynamic_vhd(image: str | os.PathLike[str], disk_size: int) -> Path:
    """A minimal dynamic VHD of an all-zero disk: footer copy, ``cxsparse`` header, an empty
    block allocation table, footer."""
    image = Path(image)
    footer = vhd_footer(disk_size, VHD_DYNAMIC)
    block = 2 * MIB
    entries = -(-disk_size // block)
    bat_offset = 512 + 1024
    header = bytearray(struct.pack(">8sQQIII", b"cxsparse", 0xFFFFFFFFFFFFFFFF, bat_offset,
                                   0x00010000, entries, block).ljust(1024, b"\0"))
    struct.pack_into(">I", header, 36, ~sum(header) & 0xFFFFFFFF)
    bat = (b"\xff" * 4 * entries).ljust(-(-4 * entries // 512) * 512, b"\xff")
    image.write_bytes(footer + bytes(header) + bat + footer)
    return image


def build_swap(image: str | os.PathLike[str], *, size_mb: int = 8,
               uuid: str | None = None) -> Path:
    """A Linux swap area (``mkswap``; its ``SWAPSPACE2`` signature ends the first 4 KiB)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkswap", *(["-U", uuid] if uuid else []), image)
    return image


# A Linux machine whose /boot is a partition of its own ------------------------------------------

ROOT_UUID = "7a0c1c5e-0d1f-4c2b-9a3e-5b6c7d8e9f01"
BOOT_UUID = "0b0e0b0e-1111-4222-8333-444455556666"
VMLINUZ = b"\x7fKERNEL" + bytes(range(256)) * 12 + b"\xee" * 121  # 3200 bytes, 4 blocks of 1 KiB
GRUB_CFG = b"set timeout=5\nmenuentry 'Debian' { linux /vmlinuz root=UUID=" + \
    ROOT_UUID.encode() + b" }\n"


def root_tree(root: str | os.PathLike[str], fstab: str, *,
              mountpoints: Iterable[str] = ("boot",)) -> Path:
    """:func:`linux_tree` with ``etc/fstab`` = ``fstab`` and each of ``mountpoints`` an empty
    directory (what a root filesystem holds under its mount points)."""
    root = linux_tree(root)
    for mountpoint in mountpoints:
        target = root / mountpoint
        if target.exists():
            for dirpath, dirnames, filenames in os.walk(target, topdown=False):
                for name in filenames:
                    os.unlink(os.path.join(dirpath, name))
                for name in dirnames:
                    os.rmdir(os.path.join(dirpath, name))
        target.mkdir(parents=True, exist_ok=True)
    _write(root, "etc/fstab", fstab.encode())
    return root


def boot_tree(root: str | os.PathLike[str]) -> Path:
    """The content of a separate /boot filesystem: ``vmlinuz`` (0600) and ``grub/grub.cfg``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write(root, "vmlinuz", VMLINUZ, 0o600)
    _write(root, "grub/grub.cfg", GRUB_CFG)
    return root


def boot_fstab(boot_spec: str = f"UUID={BOOT_UUID}") -> str:
    """An /etc/fstab mounting the root by UUID and /boot by ``boot_spec``, plus lines the
    scanner must ignore (swap, tmpfs, proc)."""
    return (f"# /etc/fstab: static file system information.\n"
            f"UUID={ROOT_UUID} /     ext4 errors=remount-ro 0 1\n"
            f"{boot_spec} /boot ext4 defaults 0 2\n"
            f"/swapfile none swap sw 0 0\n"
            f"tmpfs /tmp tmpfs defaults 0 0\n"
            f"proc /proc proc defaults 0 0\n")


ROOT_MB, BOOT_MB = 24, 16


def linux_gpt_disk(workdir: str | os.PathLike[str],
                   name: str = "disk.img") -> tuple[Path, int, int]:
    """A GPT disk: p1 the ext4 root (:func:`root_tree`, fstab from :func:`boot_fstab`), p2 an
    ext4 /boot (:func:`boot_tree`, UUID :data:`BOOT_UUID`); everything 0:0 at :data:`BASE_TIME`.
    Returns the image and the byte offsets of p1 and p2. The source trees are written once per
    workdir; each call builds a new image from them (same content, new GPT GUIDs)."""
    workdir = Path(workdir)
    image = workdir / name
    root_src, boot_src = workdir / "root-src", workdir / "boot-src"
    if not root_src.exists():
        root_tree(root_src, boot_fstab())
        boot_tree(boot_src)
    root_off, boot_off = gpt_disk(image, [ROOT_MB, BOOT_MB], names=["root", "boot"])
    build_ext4_volume(root_src, image, size_mb=ROOT_MB, offset=root_off, uuid=ROOT_UUID)
    build_ext4_volume(boot_src, image, size_mb=BOOT_MB, offset=boot_off, uuid=BOOT_UUID)
    return image, root_off, boot_off


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


def _copy_range(src: str | os.PathLike[str], dst: str | os.PathLike[str], src_offset: int,
                length: int, dst_offset: int) -> None:
    """Copy ``length`` bytes at ``src_offset`` of ``src`` to ``dst_offset`` of ``dst``,
    skipping holes (data extents only; ``dst`` must exist)."""
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        end = src_offset + length
        pos = src_offset
        while pos < end:
            try:
                start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            if start >= end:
                break
            stop = min(os.lseek(fin.fileno(), start, os.SEEK_HOLE), end)
            fin.seek(start)
            fout.seek(dst_offset + start - src_offset)
            remaining = stop - start
            while remaining:
                chunk = fin.read(min(remaining, 1 << 20))
                fout.write(chunk)
                remaining -= len(chunk)
            pos = stop


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


# LVM2, written directly (pvcreate refuses plain files) ------------------------------------------
#
# LVM2 on-disk format (lib/format_text/layout.h; little-endian): a 512-byte label in sector 1
# (``LABELONE``, sector number, CRC of bytes 20..511, offset 32, ``LVM2 001``) holding the PV
# header (32-character UUID, device size, zero-terminated (offset, size) lists of data areas and
# metadata areas); a metadata area at 4 KiB with a 512-byte header (CRC, magic
# ``" LVM2 x[5A%r0N*>"``, version 1, start, size, then (offset, size, CRC, flags) of the text)
# followed by the volume group text. CRCs are LVM2's calc_crc: zlib's CRC-32 started from
# ~0xF597A6CF and not inverted at the end. libvslvm (pyvslvm) reads what :func:`lvm_pv` writes.

LVM_MDA_MAGIC = b" LVM2 x[5A%r0N*>"


def _lvm_crc(data: bytes) -> int:
    import zlib

    return zlib.crc32(data, ~0xF597A6CF & 0xFFFFFFFF) ^ 0xFFFFFFFF


def _lvm_id(seed: str) -> tuple[str, str]:
    """A deterministic LVM identifier (32 characters) and its dashed form."""
    import hashlib

    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    digest = hashlib.sha256(seed.encode()).digest()
    raw = "".join(alphabet[b % len(alphabet)] for b in digest)
    parts, at = [], 0
    for width in (6, 4, 4, 4, 4, 4, 6):
        parts.append(raw[at:at + width])
        at += width
    return raw, "-".join(parts)


def lvm_segment_linear(pv: str, first_extent: int) -> str:
    """The text of a linear segment (``striped`` with one stripe) starting at a PV extent."""
    return f'type = "striped"\nstripe_count = 1\n\nstripes = [\n"{pv}", {first_extent}\n]'


def lvm_segment_striped(stripes: list[tuple[str, int]], stripe_size_kib: int = 64) -> str:
    """The text of a segment striped over ``stripes`` ((pv, first extent) each), as LVM2
    writes it (one ``"pvN", E,`` line per stripe)."""
    lines = ",\n".join(f'"{pv}", {extent}' for pv, extent in stripes)
    return (f'type = "striped"\nstripe_count = {len(stripes)}\n'
            f'stripe_size = {stripe_size_kib * 2}\n\nstripes = [\n{lines}\n]')


def lvm_metadata(vg: str, pvs: list[dict[str, Any]], lvs: list[dict[str, Any]], *,
                 extent_mb: int = 4, seqno: int = 1) -> bytes:
    """Volume group metadata text as LVM2 2.03 writes it.

    ``pvs``: dicts with ``name`` ("pv0"), ``uuid`` (dashed), ``dev_size`` and ``pe_start``
    (bytes), ``pe_count``. ``lvs``: dicts with ``name``, ``segments`` (a list of
    ``(start_extent, extent_count, segment text)``, see :func:`lvm_segment_linear`), optional
    ``visible`` (default True) and ``uuid``."""
    vg_id = _lvm_id(f"vg:{vg}")[1]
    pv_text = ""
    for pv in pvs:
        pv_text += (f'\n{pv["name"]} {{\nid = "{pv["uuid"]}"\ndevice = "/dev/{pv["name"]}"\n\n'
                    f'status = ["ALLOCATABLE"]\nflags = []\ndev_size = {pv["dev_size"] // 512}\n'
                    f'pe_start = {pv["pe_start"] // 512}\npe_count = {pv["pe_count"]}\n}}\n')
    lv_text = ""
    for lv in lvs:
        status = '["READ", "WRITE", "VISIBLE"]' if lv.get("visible", True) else '["READ"]'
        segments = ""
        for number, (start, count, text) in enumerate(lv["segments"], start=1):
            segments += (f"\nsegment{number} {{\nstart_extent = {start}\n"
                         f"extent_count = {count}\n\n{text}\n}}\n")
        lv_id = lv.get("uuid") or _lvm_id(f"lv:{vg}/{lv['name']}")[1]
        lv_text += (f'\n{lv["name"]} {{\nid = "{lv_id}"\nstatus = {status}\nflags = []\n'
                    f'creation_time = {BASE_TIME}\ncreation_host = "builder"\n'
                    f'segment_count = {len(lv["segments"])}\n{segments}}}\n')
    text = (f'{vg} {{\nid = "{vg_id}"\nseqno = {seqno}\nformat = "lvm2"\n'
            f'status = ["RESIZEABLE", "READ", "WRITE"]\nflags = []\n'
            f'extent_size = {extent_mb * 2048}\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n'
            f'\nphysical_volumes {{\n{pv_text}}}\n\nlogical_volumes {{\n{lv_text}}}\n\n}}\n'
            f'# Generated by LVM2 version 2.03.16(2) (2022-05-18): Tue Nov 14 22:13:20 2023\n\n'
            f'contents = "Text Format Volume Group"\nversion = 1\n\n'
            f'description = "Written by snapfim tests"\n\n'
            f'creation_host = "builder"\t# Linux builder 6.1.0 #1 SMP x86_64\n'
            f'creation_time = {BASE_TIME}\t# Tue Nov 14 22:13:20 2023\n\n')
    return text.encode() + b"\0"


def lvm_pv_header(pv_uuid_raw: str, device_size: int, pe_start: int, text: bytes | None, *,
                  mda_start: int = 4096) -> tuple[bytes, bytes]:
    """The label sector (sector 1) and the metadata area header + text (at ``mda_start``) of
    a PV whose data area starts at ``pe_start`` and whose only metadata area lies between
    ``mda_start`` and ``pe_start`` (no metadata area when ``text`` is None: what
    ``pvcreate --metadatacopies 0`` makes)."""
    mda_size = pe_start - mda_start
    mdas = struct.pack("<QQ", mda_start, mda_size) if text is not None else b""
    pv_header = (pv_uuid_raw.encode() + struct.pack("<Q", device_size)
                 + struct.pack("<QQQQ", pe_start, 0, 0, 0) + mdas + struct.pack("<QQ", 0, 0))
    label = bytearray(512)
    label[0:8] = b"LABELONE"
    struct.pack_into("<QII", label, 8, 1, 0, 32)
    label[24:32] = b"LVM2 001"
    label[32:32 + len(pv_header)] = pv_header
    struct.pack_into("<I", label, 16, _lvm_crc(bytes(label[20:])))
    if text is None:
        return bytes(label), b""
    mda = bytearray(512)
    mda[4:20] = LVM_MDA_MAGIC
    struct.pack_into("<IQQ", mda, 20, 1, mda_start, mda_size)
    struct.pack_into("<QQII", mda, 40, 512, len(text), _lvm_crc(text), 0)
    struct.pack_into("<I", mda, 0, _lvm_crc(bytes(mda[4:])))
    return bytes(label), bytes(mda) + text


def lvm_vg(image: str | os.PathLike[str], vg: str, pvs: list[tuple[int, int]],
           lvs: list[dict[str, Any]], *, extent_mb: int = 4, pe_start: int = MIB,
           seqno: int = 1, metadata: Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Write the LVM2 physical volumes ``pvs`` ((offset, size) each, named ``pv0``, ``pv1``,
    ... in the metadata) of volume group ``vg`` with the logical volumes ``lvs`` (see
    :func:`lvm_metadata`) into ``image``. The PVs whose indexes ``metadata`` lists (default:
    all) carry a copy of the metadata; the others none.

    Returns per PV: ``pv_uuid`` (dashed), ``data_offset`` (absolute byte offset of extent 0),
    ``extent_size`` (bytes) and ``extents`` (the PV's extent count)."""
    extent = extent_mb * MIB
    with_metadata = set(range(len(pvs)) if metadata is None else metadata)
    ids = [_lvm_id(f"pv:{vg}:pv{i}:{offset}") for i, (offset, _size) in enumerate(pvs)]
    entries = [{"name": f"pv{i}", "uuid": ids[i][1], "dev_size": size, "pe_start": pe_start,
                "pe_count": (size - pe_start) // extent} for i, (_off, size) in enumerate(pvs)]
    text = lvm_metadata(vg, entries, lvs, extent_mb=extent_mb, seqno=seqno)
    out = []
    for i, (offset, size) in enumerate(pvs):
        label, mda = lvm_pv_header(ids[i][0], size, pe_start,
                                   text if i in with_metadata else None)
        write_at(image, offset + 512, label)
        if mda:
            write_at(image, offset + 4096, mda)
        out.append({"pv_uuid": ids[i][1], "data_offset": offset + pe_start,
                    "extent_size": extent, "extents": entries[i]["pe_count"]})
    return out


def lvm_pv_text(image: str | os.PathLike[str], offset: int, size: int,
                text: Callable[[str], bytes], *, pe_start: int = MIB) -> dict[str, Any]:
    """Write a PV at ``offset`` whose metadata area holds ``text(pv_uuid)`` as it is (any
    bytes: hostile metadata), between 4 KiB and ``pe_start``. Returns ``pv_uuid`` (dashed),
    ``data_offset`` and ``metadata`` (the text written)."""
    raw, dashed = _lvm_id(f"pv:raw:{offset}")
    body = text(dashed)
    if 4096 + 512 + len(body) > pe_start:
        raise ValueError(f"{len(body)} bytes of metadata do not fit below pe_start")
    label, mda = lvm_pv_header(raw, size, pe_start, body)
    write_at(image, offset + 512, label)
    write_at(image, offset + 4096, mda)
    return {"pv_uuid": dashed, "data_offset": offset + pe_start, "metadata": body}


def lvm_pv(image: str | os.PathLike[str], offset: int, size: int, vg: str,
           lvs: list[dict[str, Any]], *, extent_mb: int = 4, pe_start: int = MIB,
           seqno: int = 1) -> dict[str, Any]:
    """Write a one-PV volume group (the PV is ``pv0``) at ``offset`` of ``image``; see
    :func:`lvm_vg`."""
    return lvm_vg(image, vg, [(offset, size)], lvs, extent_mb=extent_mb, pe_start=pe_start,
                  seqno=seqno)[0]


def xfs_retarget_symlink(image: str | os.PathLike[str], path: str, target: str,
                         offset: int = 0) -> None:
    """Point a short (in-inode) symlink at ``target`` in place: data and size change, the
    inode and its timestamps do not."""
    out = xfs_db(image, f"path {path}", "print", offset=offset, write=False)
    fork = "u3" if re.search(r"^u3\.symlink = ", out, re.MULTILINE) else "u"
    xfs_db(image, f"path {path}", f"write core.size {len(target.encode())}",
           f'write {fork}.symlink "{target}"', offset=offset)


def lvm_linear(name: str, runs: list[tuple[int, int]] | list[tuple[int, int, int]], *,
               visible: bool = True) -> dict[str, Any]:
    """A linear LV for :func:`lvm_pv`: ``runs`` of (first PV extent, extent count), in LV
    order, one segment each; or (PV index, first extent, count) for :func:`lvm_vg`."""
    segments, start = [], 0
    for run in runs:
        index, first, count = run if len(run) == 3 else (0, *run)
        segments.append((start, count, lvm_segment_linear(f"pv{index}", first)))
        start += count
    return {"name": name, "segments": segments, "visible": visible}


def lvm_fill(image: str | os.PathLike[str], pv: dict[str, Any] | list[dict[str, Any]],
             runs: list[tuple[int, int]] | list[tuple[int, int, int]],
             content: str | os.PathLike[str]) -> None:
    """Write the bytes of ``content`` (a filesystem image) into an LV laid out as ``runs``
    (see :func:`lvm_linear`) on the PV :func:`lvm_pv` described (holes stay holes). With
    the list of PVs :func:`lvm_vg` returns, runs are (PV index, first extent, count)."""
    pvs = pv if isinstance(pv, list) else [pv]
    lv_offset = 0
    size = os.path.getsize(content)
    for run in runs:
        index, first, count = run if len(run) == 3 else (0, *run)
        extent = pvs[index]["extent_size"]
        length = min(count * extent, size - lv_offset)
        if length <= 0:
            break
        _copy_range(content, image, lv_offset, length,
                    pvs[index]["data_offset"] + first * extent)
        lv_offset += count * extent
