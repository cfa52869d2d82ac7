"""A Linux swap area (``mkswap``), for disks whose partitions are not all filesystems."""

from __future__ import annotations

import os
from pathlib import Path

from tests.imaging.tools import MIB, run


def build_swap(image: str | os.PathLike[str], *, size_mb: int = 8,
               uuid: str | None = None) -> Path:
    """A Linux swap area (``mkswap``; its ``SWAPSPACE2`` signature ends the first 4 KiB)."""
    image = Path(image)
    with image.open("wb") as fh:
        fh.truncate(size_mb * MIB)
    run("mkswap", *(["-U", uuid] if uuid else []), image)
    return image
