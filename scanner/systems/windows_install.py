"""A Windows installation: find it on an NTFS volume and name the paths of its system
volume. The hives it holds are read by
:mod:`scanner.systems.windows_registry`; the system as a whole (detection, drive letters,
walking the Windows file entities on each drive) is :mod:`scanner.systems.windows`.

The system volume is the NTFS volume holding ``<windows dir>\\System32\\config`` (the
Windows directory is found by that content, whatever its name). It is the ``C:`` drive:
paths are named ``C:\\Windows\\explorer.exe`` with the on-disk spelling, and policy paths
with ``%windir%``-style variables or ``C:`` are matched on it case-insensitively. Other
drive letters come from ``SYSTEM\\MountedDevices`` (:mod:`scanner.systems.windows_letters`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.disk.nodes import FileKind, Filesystem, Node
from scanner.errors import DiskError, SourceReadError
from scanner.winpaths import to_windows

SYSTEM_DRIVE = "C:"


@dataclass(frozen=True, slots=True)
class WindowsInstall:
    """The Windows directory found on a volume (posix path, on-disk spelling: ``/Windows``)."""

    windows_dir: str


def _child_dir(fs: Filesystem, directory: Node, name: str) -> Node | None:
    folded = name.casefold()
    return next((c for c in fs.children(directory)
                 if c.kind is FileKind.DIRECTORY and c.name.casefold() == folded), None)


def find_install(fs: Filesystem) -> WindowsInstall | None:
    """The Windows installation on an NTFS volume: a top-level directory holding
    ``System32\\config`` (``Windows`` first). None when there is none or it cannot be read."""
    if fs.fs_type != "ntfs":
        return None
    try:
        root = fs.root()
        dirs = [c for c in fs.children(root) if c.kind is FileKind.DIRECTORY]
        dirs.sort(key=lambda c: (c.name.casefold() != "windows", c.name.casefold()))
        for top in dirs:
            system32 = _child_dir(fs, top, "System32")
            if system32 is not None and _child_dir(fs, system32, "config") is not None:
                return WindowsInstall("/" + top.name)
    except (DiskError, SourceReadError):
        return None
    return None


def windows_name(posix_path: str) -> str:
    """A path the walker found on the system volume, as Windows names it."""
    return to_windows(posix_path, SYSTEM_DRIVE)
