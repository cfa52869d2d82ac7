"""Local image files: raw disks or filesystems, and fixed VHDs (raw bytes + 512-byte footer)."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any

from scanner.errors import SourceError, SourceNotFound, SourceReadError
from scanner.sources.base import LocalFile

VHD_COOKIE = b"conectix"
VHD_FOOTER_SIZE = 512
VHD_TYPE_FIXED = 2

# Container formats we recognise but do not read, by magic at offset 0.
_CONTAINER_MAGIC = {
    b"QFI\xfb": "qcow2",
    b"KDMV": "VMDK (sparse)",
    b"vhdxfile": "VHDX",
    b"EVF\x09\x0d\x0a\xff\x00": "EWF/E01",
}


class LocalFileSource:
    """A disk image on the local filesystem, read with ``os.pread``.

    A fixed VHD is served without its footer, so the bytes are the disk's. Formats that need
    decoding (qcow2, VMDK, VHDX, EWF, dynamic VHD) are refused with a clear message.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise SourceNotFound(f"{self.path}: no such file") from exc
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open: {exc.strerror}") from exc
        try:
            self._file_size, self._size, self.format = self._probe()
        except BaseException:
            os.close(self._fd)
            raise

    def _probe(self) -> tuple[int, int, str]:
        """(file size, disk size, format) of the open file."""
        info = os.fstat(self._fd)
        if stat.S_ISDIR(info.st_mode):
            raise SourceError(f"{self.path}: is a directory, not a disk image")
        size = os.lseek(self._fd, 0, os.SEEK_END) if stat.S_ISBLK(info.st_mode) else info.st_size
        if size == 0:
            raise SourceError(f"{self.path}: empty file, not a disk image")
        head = os.pread(self._fd, 8, 0)
        for magic, name in _CONTAINER_MAGIC.items():
            if head.startswith(magic):
                raise SourceError(f"{self.path}: {name} images are not supported; "
                                  "convert to raw first (qemu-img convert -O raw)")
        if size >= VHD_FOOTER_SIZE:
            footer = os.pread(self._fd, VHD_FOOTER_SIZE, size - VHD_FOOTER_SIZE)
            if footer.startswith(VHD_COOKIE):
                (disk_type,) = struct.unpack_from(">I", footer, 60)
                if disk_type != VHD_TYPE_FIXED:
                    raise SourceError(f"{self.path}: dynamic/differencing VHD is not supported; "
                                      "convert to a fixed VHD or raw image")
                return size, size - VHD_FOOTER_SIZE, "vhd-fixed"
        return size, size, "raw"

    @property
    def size(self) -> int:
        """Disk size in bytes (a VHD footer excluded)."""
        return self._size

    @property
    def locator(self) -> dict[str, Any]:
        """``{"kind": "local", "path": ...}``."""
        return {"kind": "local", "path": str(self.path.resolve())}

    def read_at(self, offset: int, length: int) -> bytes:
        """Read from the image; short only at its end."""
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as exc:
            raise SourceReadError(f"{self.path}: read at {offset} failed: {exc.strerror}") from exc
        if len(data) != length:
            raise SourceReadError(f"{self.path}: short read at {offset} (image changed?)")
        return data

    def local_file(self) -> LocalFile | None:
        """The image file itself (a fixed VHD too: its disk bytes start at 0, the footer
        lies past ``size``); None once closed."""
        if self._fd < 0:
            return None
        return LocalFile(str(self.path), self._fd, 0, self._file_size)

    def disk_offset(self) -> int:
        """The image is a whole disk."""
        return 0

    def fileno(self) -> int:
        """The open file descriptor (for readers that can ``pread`` it directly)."""
        return self._fd

    def close(self) -> None:
        """Close the file descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_local(path: str | os.PathLike[str]) -> LocalFileSource:
    """Open a local image file as a block source."""
    return LocalFileSource(path)
