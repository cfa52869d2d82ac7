"""Windows: the system volume (C:) among the machine's volumes, drive letters, the Windows
file entities and the registry.

Drive letters: today only the system volume is mapped (``C:``). :func:`assign_letters` gets
every opened volume of the machine (all disks) and is where the other NTFS volumes get their
letters from ``SYSTEM\\MountedDevices``; a letter that cannot be mapped is a coverage note.
"""

from __future__ import annotations

from scanner.collectors.windows_files import windows_entities
from scanner.coverage import Coverage
from scanner.disk.discovery import OpenedVolume
from scanner.disk.walker import Mount, Walker
from scanner.entities import RegistryEntity
from scanner.limits import Limits
from scanner.policy import PolicyEntity
from scanner.systems.base import OnFound, ScanProgress, Walk
from scanner.systems.windows_install import (
    SYSTEM_DRIVE,
    WindowsInstall,
    find_install,
    walk_files,
    windows_name,
)
from scanner.systems.windows_registry import collect_registry


class WindowsSystem:
    """A Windows machine: its installation, and its volumes by drive letter (``C:`` first)."""

    os_family = "windows"

    def __init__(self, install: WindowsInstall, drives: dict[str, OpenedVolume]) -> None:
        self.install = install
        self.drives = drives
        self._walker: Walker | None = None

    @property
    def system_volume(self) -> OpenedVolume:
        """The volume holding the installation (C:)."""
        return self.drives[SYSTEM_DRIVE]

    def walk(self, policy: list[PolicyEntity], on_found: OnFound, coverage: Coverage,
             limits: Limits, progress: ScanProgress) -> list[Walk]:
        """Walk the enabled Windows file entities on the system volume."""
        volume = self.system_volume
        walker = Walker([Mount("/", volume.fs, volume.label)], on_found, limits=limits)
        progress.phase("walking Windows", None)
        coverage.policies += walk_files(walker, self.install, policy, coverage)
        self._walker = walker
        return [Walk(walker.result, windows_name, windows_entities)]

    def collect_registry(self, policy: list[PolicyEntity], coverage: Coverage, limits: Limits,
                         progress: ScanProgress) -> dict[str, RegistryEntity]:
        """Read the hives the registry entities reach (after :meth:`walk`)."""
        walker = self._walker or Walker([Mount("/", self.system_volume.fs,
                                               self.system_volume.label)], limits=limits)
        progress.phase("registry", None)
        registry, names = collect_registry(walker, self.install, policy, coverage, limits)
        coverage.policies += names
        return registry


def find_windows(opened: list[OpenedVolume], coverage: Coverage
                 ) -> tuple[OpenedVolume, WindowsInstall] | None:
    """The Windows system volume (the first NTFS volume holding ``System32\\config``)."""
    found = [(o, install) for o in opened if (install := find_install(o.fs)) is not None]
    if not found and any(o.fs.fs_type == "ntfs" for o in opened):
        coverage.notes.append("no Windows installation (a directory holding System32\\config) "
                              "on the NTFS volumes: Windows file and registry entities do not "
                              "apply")
    if len(found) > 1:
        coverage.notes.append("several volumes hold a Windows installation; "
                              f"{found[0][0].label} is used as C:")
    return found[0] if found else None


def mount_windows(found: tuple[OpenedVolume, WindowsInstall], opened: list[OpenedVolume],
                  coverage: Coverage, alone: bool) -> WindowsSystem:
    """Give the volumes their drive letters; on a Windows-only machine, say why the volumes
    without a letter are not scanned."""
    system_volume, install = found
    drives = assign_letters(system_volume, install, opened, coverage)
    for letter, volume in drives.items():
        volume.report.mountpoint = volume.report.mountpoint or f"{letter}\\"
        volume.report.status, volume.report.reason = "scanned", None
    if alone:
        lettered = {id(v) for v in drives.values()}
        for other in opened:
            if id(other) not in lettered:
                other.report.reason = "not the Windows system volume"
    return WindowsSystem(install, drives)


def assign_letters(system_volume: OpenedVolume, install: WindowsInstall,
                   opened: list[OpenedVolume], coverage: Coverage) -> dict[str, OpenedVolume]:
    """Drive letter -> volume. The system volume is ``C:``; the other NTFS volumes of
    ``opened`` (every disk of the machine) are to be mapped from ``SYSTEM\\MountedDevices``
    of ``install`` here (not yet: they get no letter)."""
    return {SYSTEM_DRIVE: system_volume}
