"""Detect and open the filesystem of a volume: pytsk3 first, then XFS, then named refusals.

Backends: pytsk3 (ext2/3/4, with xattrs and link targets read as bytes from the raw inodes,
:mod:`scanner.disk.ext_raw`; FAT, exFAT, NTFS) and libfsxfs (XFS, :mod:`scanner.disk.xfs_fs`);
the walker and collectors only see the :class:`~scanner.disk.nodes.Filesystem` protocol. XFS is
opened through a file object over the volume's block source, so it works wherever the bytes
come from.
"""

from __future__ import annotations

import pytsk3

from scanner.disk.ext_raw import ExtInodes, symlink_bytes_in_inode
from scanner.disk.identity import read_identity
from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.disk.tsk_fs import TskFilesystem
from scanner.disk.volumes import Volume
from scanner.disk.xfs_fs import XFS_MAGIC, XfsFilesystem
from scanner.errors import CorruptFilesystem, SourceReadError, UnsupportedFilesystem
from scanner.sources.base import BlockSource

# (offset, magic, name, encrypted)
_SIGNATURES: list[tuple[int, bytes, str, bool]] = [
    (0, b"XFSB", "xfs", False),
    (0x10040, b"_BHRfS_M", "btrfs", False),
    (0, b"LUKS\xba\xbe", "luks", True),
    (3, b"-FVE-FS-", "bitlocker", True),
    (512, b"LABELONE", "lvm2", False),
    (4086, b"SWAPSPACE2", "swap", False),
    (0, b"hsqs", "squashfs", False),
    (0x400, b"\x10\x20\xf5\xf2", "f2fs", False),
]


def sniff(source: BlockSource) -> tuple[str, bool] | None:
    """Name a volume's content by signature when pytsk3 cannot open it: (name, encrypted)."""
    for offset, magic, name, encrypted in _SIGNATURES:
        try:
            if source.read_at(offset, len(magic)) == magic:
                return name, encrypted
        except SourceReadError:
            continue
    return None


class ExtFilesystem(TskFilesystem):
    """ext2/3/4 through pytsk3; extended attributes and symlink targets read as bytes from the
    on-disk inodes (:mod:`scanner.disk.ext_raw`)."""

    def __init__(self, img: pytsk3.Img_Info, volume_source: BlockSource, offset: int) -> None:
        super().__init__(img, offset, read_identity(volume_source, "ext"))
        self._volume_source = volume_source
        self._raw: ExtInodes | None = None

    def _inodes(self) -> ExtInodes:
        if self._raw is None:
            self._raw = ExtInodes(self._volume_source)
        return self._raw

    def _ext_inodes(self) -> ExtInodes:
        """One raw inode reader for directory checks, attributes and symlinks."""
        return self._inodes()

    def xattrs(self, node: Node) -> dict[bytes, bytes]:
        """Extended attributes (incl. POSIX ACLs and ``security.capability``) by full name,
        as bytes. Raises :class:`CorruptFilesystem` (a bound exceeded, inconsistent
        structures) or :class:`SourceReadError`."""
        return self._inodes().xattrs(node.inode, self.limits.xattr_bytes, self._inode_bytes)

    def _link_bytes(self, node: Node) -> bytes:
        raw = self._inodes().inode(node.inode)
        fast = symlink_bytes_in_inode(raw, self._inodes().block_size // 512)
        if fast is not None:
            return fast
        return super()._link_bytes(node)

    def close(self) -> None:
        """Forget the raw inode reader too."""
        self._raw = None
        super().close()


def open_filesystem(img: pytsk3.Img_Info | None, volume: Volume, volume_source: BlockSource,
                    fs_type: str | None = None) -> Filesystem:
    """Open the filesystem on a volume.

    ``img`` is the pytsk3 image the volume lies in at ``volume.offset`` (``None`` when only
    ``fs_type`` "xfs" is expected, as in a hash worker that knows what it reopens).
    Raises :class:`UnsupportedFilesystem` (with the format's name, and whether it is
    encrypted) or :class:`CorruptFilesystem` (unreadable, or cut short by a truncated image).
    """
    if fs_type == "xfs" or img is None:
        return _open_xfs(volume_source)
    try:
        fs: TskFilesystem = TskFilesystem(img, volume.offset, read_identity(volume_source, "none"))
    except CorruptFilesystem as exc:
        if _is_xfs(volume_source):
            return _open_xfs(volume_source)
        sniffed = sniff(volume_source)
        if sniffed is not None:
            name, encrypted = sniffed
            what = "encrypted volume" if encrypted else "filesystem"
            if name == "swap":
                raise UnsupportedFilesystem("swap: swap space, nothing to scan", name) from exc
            if name == "lvm2":
                raise UnsupportedFilesystem("lvm2: LVM2 label not read here (a physical volume "
                                            "inside a logical volume, or not LVM2 text "
                                            "format)", name) from exc
            raise UnsupportedFilesystem(f"{name}: {what} not supported yet", name) from exc
        if _all_zero(volume_source):
            raise UnsupportedFilesystem("empty: all zeros, no filesystem", "empty") from exc
        raise CorruptFilesystem(f"no recognisable filesystem ({exc})") from exc
    if fs.fs_type.startswith("ext"):
        fs.close()
        fs = ExtFilesystem(img, volume_source, volume.offset)
    else:
        fs.identity = read_identity(volume_source, fs.fs_type)
    claimed = fs.block_count * fs.block_size
    if fs.fs_type.startswith("ext") and claimed > volume_source.size:
        raise CorruptFilesystem(f"{fs.fs_type} is truncated: it spans {claimed} bytes but only "
                                f"{volume_source.size} are present")
    root = fs.root()  # CorruptFilesystem when its record cannot be read
    if root.kind is not FileKind.DIRECTORY:  # e.g. an inode table moved onto zeros
        raise CorruptFilesystem(f"{fs.fs_type}: the root directory (inode {root.inode}) is not "
                                "a directory")
    return fs


def _is_xfs(source: BlockSource) -> bool:
    try:
        return source.read_at(0, 4) == XFS_MAGIC
    except SourceReadError:
        return False


def _open_xfs(source: BlockSource) -> XfsFilesystem:
    return XfsFilesystem(source)


def _all_zero(source: BlockSource) -> bool:
    try:
        return not any(source.read_at(0, 65536))
    except SourceReadError:
        return False
