"""Operating systems found on a machine's volumes: Linux (:mod:`.linux`) and Windows
(:mod:`.windows`), behind the :class:`~scanner.systems.base.System` interface."""

from __future__ import annotations

from scanner.coverage import Coverage
from scanner.disk.discovery import OpenedVolume
from scanner.disk.partition_ids import MachineIds
from scanner.systems.base import System, has_dir, unsure_system_volume
from scanner.systems.linux import mount_linux


def detect_systems(opened: list[OpenedVolume], coverage: Coverage,
                   ids: MachineIds | None = None) -> list[System]:
    """The systems on the opened volumes, each mounted: Windows when a volume holds a Windows
    installation; Linux when none does, or when a volume has an ``/etc`` besides (both are
    then scanned). Linux comes first. ``ids``: the partition ids of the machine's volumes
    (Windows drive letters name partitions by them)."""
    windows = None
    if any(o.fs.fs_type == "ntfs" for o in opened):  # Windows' modules for NTFS disks only
        from scanner.systems.windows import find_windows

        windows = find_windows(opened, coverage)
    linux = windows is None or any(has_dir(o.fs, "etc") for o in opened)
    if windows is not None and (why := unsure_system_volume(coverage, windows[0].label)):
        # not C:, and nothing else is: every path keeps its state
        coverage.unreadable["/"] = f"the Windows installation is not taken as C: ({why})"
        coverage.notes.append(coverage.unreadable["/"])
        windows = None
        linux = any(has_dir(o.fs, "etc") for o in opened)
    systems: list[System] = []
    if linux:
        systems.append(mount_linux(opened, coverage))
    if windows is not None:
        from scanner.systems.windows import mount_windows

        systems.append(mount_windows(windows, opened, coverage, alone=not linux, ids=ids))
    return systems
