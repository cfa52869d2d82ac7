"""What every image builder shares: running a tool (:func:`run`, :class:`ImagingError`),
copying and patching image bytes sparsely (:func:`copy_image`, :func:`embed`, :func:`write_at`),
sizes (:data:`MIB`, :data:`SECTOR`) and :data:`BASE_TIME`, the time of every inode of a base
image. Nothing needs root, loop devices or a mount; images are built in a test's ``tmp_path``,
never committed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

# Timestamps given to every inode of a base image by ``linux_image`` (seconds since the epoch).
BASE_TIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC


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
