"""Windows: the system volume (C:) among the machine's volumes, drive letters, the Windows
file entities and the registry.

Drive letters: the system volume is ``C:``; the other NTFS volumes of the machine (on any of
its disks) get their letters from ``SYSTEM\\MountedDevices`` (:mod:`.windows_letters`), so a
policy path such as ``D:\\app\\config.ini`` is walked on the volume Windows calls ``D:``
and named so. A letter that cannot be mapped is a coverage note; policy paths on a letter
whose volume should be there but cannot be read are unreadable (they keep their state).
"""

from __future__ import annotations

from functools import partial

from scanner.collectors.windows_files import windows_entities
from scanner.coverage import Coverage
from scanner.disk.discovery import OpenedVolume
from scanner.disk.partition_ids import MachineIds
from scanner.disk.walker import Mount, Walker
from scanner.entities import RegistryEntity
from scanner.errors import PolicyError
from scanner.limits import Limits
from scanner.policy import EntityKind, PolicyEntity, active
from scanner.registry.hive import Hive
from scanner.registry.mounted_devices import LetterPlan
from scanner.registry.unchanged import UnchangedHives
from scanner.systems.base import OnFound, ScanProgress, Walk
from scanner.systems.windows_install import SYSTEM_DRIVE, WindowsInstall, find_install
from scanner.systems.windows_letters import plan_letters
from scanner.systems.windows_registry import collect_registry, system_hive_path
from scanner.winpaths import drive_of, fixed_prefix, system_variables, to_windows, walk_entity


class WindowsSystem:
    """A Windows machine: its installation, and its volumes by drive letter (``C:`` first).

    The letters other than ``C:`` come from ``SYSTEM\\MountedDevices``
    (:meth:`assign_letters`): read when the machine has NTFS volumes besides the system
    volume, or when a policy path names another drive."""

    os_family = "windows"

    def __init__(self, install: WindowsInstall, system_volume: OpenedVolume,
                 opened: list[OpenedVolume], ids: MachineIds) -> None:
        self.install = install
        self.drives: dict[str, OpenedVolume] = {SYSTEM_DRIVE: system_volume}
        self._opened = opened
        self._ids = ids
        self._plan: LetterPlan | None = None
        self._hives: dict[str, Hive] = {}  # read for the letters, reused for the registry
        self._walker: Walker | None = None

    @property
    def hives(self) -> dict[str, Hive]:
        """The hives read so far (letters, registry), by the posix path of their file."""
        return self._hives

    @property
    def system_volume(self) -> OpenedVolume:
        """The volume holding the installation (C:)."""
        return self.drives[SYSTEM_DRIVE]

    def assign_letters(self, coverage: Coverage) -> LetterPlan:
        """Read the drive letters (once) and give the NTFS volumes they name their letter;
        the notes of the letters and of the partition tables go to ``coverage``."""
        if self._plan is None:
            volume = self.system_volume
            plan, hive = plan_letters(volume, self.install, self._opened, coverage,
                                      self._ids, volume.fs.limits)
            self._plan = plan
            if hive is not None:
                self._hives[system_hive_path(self.install)] = hive
            coverage.notes.extend(self._ids.notes)
            coverage.notes.extend(plan.notes)
            by_label = {o.label: o for o in self._opened}
            for letter, label in plan.letters.items():
                if label in by_label:
                    self.drives.setdefault(letter, by_label[label])
        return self._plan

    def walk(self, policy: list[PolicyEntity], on_found: OnFound, coverage: Coverage,
             limits: Limits, progress: ScanProgress) -> list[Walk]:
        """Walk the enabled Windows file entities, each on the volume of its drive letter.

        A path on a letter whose volume should be there but cannot be read (a disk not
        scanned, a filesystem that does not open, unreadable drive letters) is unreadable:
        what was there keeps its state. A path on a letter the machine does not have, or
        that names no disk volume (removable media), is a note."""
        progress.phase("walking Windows", None)
        variables = system_variables(self.install.windows_dir, SYSTEM_DRIVE)
        walkers = {SYSTEM_DRIVE: Walker([Mount("/", self.system_volume.fs,
                                               self.system_volume.label)], on_found,
                                        limits=limits)}
        self._walker = walkers[SYSTEM_DRIVE]
        for entity in active(policy, EntityKind.WINDOWS_FILE):
            try:
                letter, path = drive_of(entity, variables)
            except PolicyError as exc:
                coverage.notes.append(f"{entity.name}: not scanned: {exc}")
                continue
            if letter not in self.drives:
                plan = self.assign_letters(coverage)
                if letter not in self.drives:
                    _not_walked(entity, letter, path, plan, coverage)
                    continue
            volume = self.drives[letter]
            walker = walkers.get(letter)
            if walker is None:
                walker = walkers[letter] = Walker([Mount("/", volume.fs, volume.label)],
                                                  on_found, limits=limits)
            translated = walk_entity(entity, variables, letter)
            if isinstance(translated, str):  # drive_of checked the letter: cannot happen
                raise AssertionError(translated)
            walker.walk_entity(translated)
            coverage.policies.append(entity.name)
        return [Walk(walker.result, partial(to_windows, drive=letter), windows_entities)
                for letter, walker in sorted(walkers.items())]

    def collect_registry(self, policy: list[PolicyEntity], coverage: Coverage, limits: Limits,
                         progress: ScanProgress, unchanged: UnchangedHives | None = None
                         ) -> dict[str, RegistryEntity]:
        """Read the hives the registry entities reach (after :meth:`walk`)."""
        walker = self._walker or Walker([Mount("/", self.system_volume.fs,
                                               self.system_volume.label)], limits=limits)
        progress.phase("registry", None)
        registry, names = collect_registry(walker, self.install, policy, coverage, limits,
                                           self._hives, unchanged)
        coverage.policies += names
        return registry


def _not_walked(entity: PolicyEntity, letter: str, path: str, plan: LetterPlan,
                coverage: Coverage) -> None:
    """Report a policy path on a drive that is not scanned: unreadable (its state kept, the
    entity counted as scanned) when the drive's volume should be there, else a note (none
    when the letter has a note of its own already)."""
    why, missing = plan.why_not(letter)
    if missing:  # unknown this time, not gone
        coverage.unreadable[fixed_prefix(path)] = why
        coverage.policies.append(entity.name)
    elif letter not in plan.unmapped:
        coverage.notes.append(f"{entity.name}: not scanned: {why}")


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
                  coverage: Coverage, alone: bool, ids: MachineIds | None = None
                  ) -> WindowsSystem:
    """Give the volumes their drive letters (``ids``: the partition ids of every disk's
    volumes, which ``MountedDevices`` names); on a Windows-only machine, say why the volumes
    without a letter are not scanned."""
    system_volume, install = found
    system = WindowsSystem(install, system_volume, opened, ids or MachineIds())
    if any(o is not system_volume and o.fs.fs_type == "ntfs" for o in opened):
        system.assign_letters(coverage)
    for letter, volume in system.drives.items():
        volume.report.mountpoint = volume.report.mountpoint or f"{letter}\\"
        volume.report.status, volume.report.reason = "scanned", None
    if alone:
        lettered = {id(v) for v in system.drives.values()}
        for other in opened:
            if id(other) not in lettered:
                other.report.reason = "not the Windows system volume"
    return system
