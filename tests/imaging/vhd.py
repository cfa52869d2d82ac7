"""VHD (Virtual Hard Disk) containers written byte by byte: a fixed VHD (the raw disk plus a
footer, :func:`append_vhd_footer`) and a minimal dynamic VHD (:func:`dynamic_vhd`)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from tests.imaging.tools import MIB, SECTOR

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
