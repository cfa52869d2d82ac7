"""The local provider: a directory of disk images. An image file is a machine with one disk
(machine name = file stem); a sub-directory is a machine with several disks (machine name =
directory name), the image files in it, in name order (the first is disk 0).

It is a real provider, not a test double: the image file is the machine's disk and its
content at snapshot time is the snapshot. A snapshot is the file's identity (inode, size,
mtime); reading checks that identity, so an image replaced mid-cycle is never scanned as
the snapshot it is not (the next cycle picks it up).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanner.cloud.provider import DiskInfo, MachineInfo, Provider, SnapshotInfo
from scanner.errors import ConfigError, SnapshotGone, SourceNotFound
from scanner.sources.base import BlockSource
from scanner.sources.locators import open_locator

IMAGE_SUFFIXES = (".img", ".raw", ".vhd", ".disk")


def _fingerprint(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _images(directory: Path) -> list[Path]:
    """The image files of a machine's sub-directory, by name (its disks in order)."""
    return sorted(p for p in directory.iterdir() if _is_image(p))


class LocalProvider:
    """Machines are the image files (one disk each) and the sub-directories of image files
    (one disk per file) of one directory."""

    def __init__(self, images: str | os.PathLike[str]) -> None:
        self.directory = Path(images)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LocalProvider:
        """The provider of a local account (``{"images": DIR}``)."""
        images = config.get("images")
        if not isinstance(images, str) or not images:
            raise ConfigError("a local account needs an image directory (--images DIR)")
        return cls(images)

    def discover(self) -> list[MachineInfo]:
        """Every regular image file and every sub-directory holding image files, sorted by
        name (a sub-directory without image files is no machine)."""
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory}: image directory not found")
        machines = []
        for path in sorted(self.directory.iterdir()):
            if path.is_dir():
                disks = tuple(DiskInfo(str(image.resolve()), image.name, image.stat().st_size)
                              for image in _images(path))
                if disks:
                    machines.append(MachineInfo(str(path.resolve()), path.name, disks,
                                                state="images", qualifier=f"{path.name}/"))
            elif _is_image(path):
                disk = DiskInfo(str(path.resolve()), "image", path.stat().st_size)
                machines.append(MachineInfo(str(path.resolve()), path.stem, (disk,),
                                            state="image", qualifier=path.name))
        return machines

    def create_snapshots(self, machine: MachineInfo, tags: dict[str, str]
                         ) -> dict[str, SnapshotInfo]:
        """Record every image's identity now (ready at once), by disk resource id; the same
        call again records the images as they are then (nothing is made)."""
        out = {}
        for disk in machine.disks:
            path = Path(disk.resource_id)
            try:
                fingerprint = _fingerprint(path)
            except FileNotFoundError as exc:
                raise SourceNotFound(f"{path}: image disappeared") from exc
            out[disk.resource_id] = SnapshotInfo(
                f"{path}@{fingerprint[2]}", "ready",
                {"kind": "local", "path": str(path), "fingerprint": fingerprint})
        return out

    def refresh(self, snapshot: SnapshotInfo) -> SnapshotInfo:
        """Local snapshots are ready from the start."""
        return snapshot

    def open_source(self, locator: dict[str, Any]) -> BlockSource:
        """Open the image, refusing it when it is no longer the snapshotted content."""
        source = open_locator(locator)
        try:
            self.check(locator)
        except BaseException:
            source.close()
            raise
        return source

    def check(self, locator: dict[str, Any]) -> None:
        """Raise :class:`SnapshotGone` when the image changed since the snapshot."""
        path = Path(locator["path"])
        try:
            current = _fingerprint(path)
        except FileNotFoundError as exc:
            raise SnapshotGone(f"{path}: image disappeared after its snapshot") from exc
        if current != list(locator["fingerprint"]):
            raise SnapshotGone(f"{path}: image changed after its snapshot was taken; "
                               "the next cycle scans the new content")

    def delete_snapshot(self, snapshot: SnapshotInfo) -> None:
        """Nothing to delete: the snapshot is a record, not a copy."""

    def sweep(self, older_than: datetime, scans: Collection[str],
              deleted: Callable[[str], None]) -> list[str]:
        """Nothing is ever left behind."""
        return []


if TYPE_CHECKING:  # mypy checks here that the local provider implements the whole protocol
    def _is_a_provider(provider: LocalProvider) -> Provider:
        return provider
