"""Build and change real ext4 images for tests, without mounting anything.

Everything here shells out to e2fsprogs (``mkfs.ext4 -d``, ``debugfs``, ``e2fsck``) and writes
image bytes directly; nothing needs root, loop devices or a mount. Images are built on the fly
in a test's ``tmp_path`` (a 32 MiB ext4 image takes ~20 ms), never committed.

Typical use (:func:`~tests.imaging.trees.linux_tree`, :func:`~tests.imaging.trees.tree_paths`
and :data:`~tests.imaging.tools.BASE_TIME` come from their own modules)::

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

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tests.imaging.tools import BASE_TIME, MIB, ImagingError, run
from tests.imaging.trees import linux_tree, tree_paths
from tests.imaging.xattrs import acl_xattr

_DEBUGFS_BANNER = re.compile(r"^debugfs \d+\.\d+")


def _target(image: str | os.PathLike[str], offset: int) -> str:
    """How e2fsprogs names a filesystem that starts ``offset`` bytes into ``image``."""
    return f"{os.fspath(image)}?offset={offset}" if offset else os.fspath(image)


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
