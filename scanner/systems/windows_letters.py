"""Drive letters of a Windows machine: which volume of which disk is ``D:``, ``E:``...

The SYSTEM hive of the installation is read (replayed from its logs when dirty) for
``MountedDevices``; its letters are matched with the partition ids of the volumes of every
disk scanned (:class:`~scanner.disk.partition_ids.MachineIds`, read during discovery) by
:func:`scanner.registry.mounted_devices.drive_letters`. The volume holding Windows is always
``C:``. A SYSTEM hive that cannot be read leaves every other letter unknown
(:func:`~scanner.registry.mounted_devices.unread_plan`).
"""

from __future__ import annotations

from scanner.coverage import Coverage
from scanner.disk.discovery import OpenedVolume
from scanner.disk.partition_ids import MachineIds
from scanner.disk.walker import Mount, Walker
from scanner.errors import DiskError, HiveError, SourceReadError
from scanner.limits import Limits
from scanner.registry.hive import Hive
from scanner.registry.mounted_devices import (
    LetterPlan,
    drive_letters,
    read_mounted_devices,
    unread_plan,
)
from scanner.systems.windows_install import WindowsInstall
from scanner.systems.windows_registry import open_hive_file, system_hive_path


def volume_filesystems(opened: list[OpenedVolume], coverage: Coverage) -> dict[str, str | None]:
    """Volume label -> filesystem type for every volume of the machine: what it opened as,
    else what it was recognised as (an unsupported one), None when it failed or holds none."""
    out: dict[str, str | None] = {
        r.volume: None if r.status == "failed" else r.filesystem for r in coverage.volumes}
    out.update((o.label, o.fs.fs_type) for o in opened)
    return out


def plan_letters(system_volume: OpenedVolume, install: WindowsInstall,
                 opened: list[OpenedVolume], coverage: Coverage, ids: MachineIds,
                 limits: Limits) -> tuple[LetterPlan, Hive | None]:
    """The drive letters of the machine (see the module doc), and the SYSTEM hive they were
    read from (None when it could not be read), for the registry collector to reuse. The
    plan's notes and the partition tables' notes are for the caller to report."""
    walker = Walker([Mount("/", system_volume.fs, system_volume.label)], limits=limits)
    hive: Hive | None = None
    try:
        hive = open_hive_file(walker, system_hive_path(install), limits)
        if hive is None:
            raise HiveError("hive file not found")
        values, errors = read_mounted_devices(hive)
    except (DiskError, SourceReadError, HiveError) as exc:
        return unread_plan(system_volume.label, f"SYSTEM hive: {exc}"), hive
    plan = drive_letters(values, ids.by_label, system=system_volume.label,
                         filesystems=volume_filesystems(opened, coverage), unreadable=errors)
    if hive.status in ("dirty-not-replayed", "replay-incomplete"):
        plan.notes.append(f"drive letters read from a SYSTEM hive that is {hive.status} "
                          f"({hive.status_reason}): a letter given since its last flush is "
                          "not known")
    return plan, hive
