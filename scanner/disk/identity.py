"""Filesystem UUIDs and labels read from superblocks, so /etc/fstab entries can be matched."""

from __future__ import annotations

import uuid

from scanner.disk.nodes import FsIdentity
from scanner.errors import SourceReadError
from scanner.sources.base import BlockSource

_EXT_MAGIC = b"\x53\xef"


def _text(raw: bytes) -> str | None:
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return text or None


def read_identity(source: BlockSource, fs_type: str) -> FsIdentity:
    """UUID and label of the filesystem at the start of ``source`` (best effort, never raises)."""
    try:
        if fs_type.startswith("ext"):
            sb = source.read_at(1024, 1024)
            if sb[0x38:0x3A] == _EXT_MAGIC:
                return FsIdentity(str(uuid.UUID(bytes=sb[0x68:0x78])), _text(sb[0x78:0x88]))
        elif fs_type in ("fat12", "fat16", "fat32"):
            boot = source.read_at(0, 512)
            at = 0x43 if fs_type == "fat32" else 0x27
            serial = int.from_bytes(boot[at : at + 4], "little")
            label = _text(boot[at + 4 : at + 15])
            return FsIdentity(f"{serial >> 16:04X}-{serial & 0xFFFF:04X}", label)
        elif fs_type == "exfat":
            boot = source.read_at(0, 512)
            serial = int.from_bytes(boot[0x64:0x68], "little")
            return FsIdentity(f"{serial >> 16:04X}-{serial & 0xFFFF:04X}", None)
        elif fs_type == "btrfs":
            sb = source.read_at(0x10000, 0x22B)
            return FsIdentity(str(uuid.UUID(bytes=sb[0x20:0x30])), _text(sb[0x12B:0x22B]))
        elif fs_type == "xfs":
            sb = source.read_at(0, 512)
            return FsIdentity(str(uuid.UUID(bytes=sb[0x20:0x30])), _text(sb[0x6C:0x78]))
        elif fs_type == "ntfs":
            boot = source.read_at(0, 512)
            serial = int.from_bytes(boot[0x48:0x50], "little")
            return FsIdentity(f"{serial:016X}", None)
    except (SourceReadError, ValueError):
        pass
    return FsIdentity()
