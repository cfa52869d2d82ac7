"""What every operating system of a scan provides: one small interface, and helpers.

After volume discovery (:mod:`scanner.disk.discovery`), each system detected on the opened
volumes (:func:`scanner.systems.detect_systems`) has mounted them its way (Linux: the root and
its /etc/fstab; Windows: drive letters), then :meth:`System.walk` finds the monitored paths
and says how each found path becomes entities, and :meth:`System.collect_registry` reads what
is no file (the Windows registry) while the hash workers run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from scanner.coverage import Coverage
from scanner.disk.nodes import FileKind, Filesystem
from scanner.disk.walker import Found, WalkResult
from scanner.entities import FileEntity, RegistryEntity
from scanner.errors import DiskError
from scanner.limits import Limits
from scanner.policy import PolicyEntity

Builder = Callable[[str, Found, tuple[str, ...]], tuple[list[FileEntity], dict[str, str]]]
OnFound = Callable[[str, Found], None]

if TYPE_CHECKING:  # no registry module for a Linux scan
    from scanner.registry.unchanged import UnchangedHives


class ScanProgress(Protocol):
    """Where a long scan reports progress (the CLI draws a bar; others ignore it)."""

    def phase(self, name: str, total: int | None) -> None:
        """A new phase starts; ``total`` in its own units, when known."""

    def advance(self, amount: int) -> None:
        """Progress within the current phase."""


@dataclass(slots=True)
class Walk:
    """What one walk found, how its paths are named, and the collector building entities."""

    result: WalkResult
    name_of: Callable[[str], str]
    build: Builder


class System(Protocol):
    """One operating system found on the machine's volumes, already mounted."""

    os_family: str  # "linux" | "windows"

    def walk(self, policy: list[PolicyEntity], on_found: OnFound, coverage: Coverage,
             limits: Limits, progress: ScanProgress) -> list[Walk]:
        """Walk the monitored paths of ``policy``; ``on_found`` sees each path as found.
        Appends the names of the policy entities walked to ``coverage.policies``."""
        ...

    def collect_registry(self, policy: list[PolicyEntity], coverage: Coverage, limits: Limits,
                         progress: ScanProgress, unchanged: UnchangedHives | None = None
                         ) -> dict[str, RegistryEntity]:
        """Entities that are no files (registry keys and values), by id; ``unchanged``
        decides which hives need not be walked (:mod:`scanner.registry.unchanged`)."""
        ...


def failed_disks(coverage: Coverage) -> list[str]:
    """The disks of the machine that could not be read at all."""
    return [d.name for d in coverage.disks if d.status == "failed"]


def unsure_system_volume(coverage: Coverage, label: str) -> str | None:
    """Why the one volume that looks like the system (``/`` or ``C:``) cannot be trusted as
    it, or None: when a disk could not be read, a candidate on another disk than the first
    may be a data disk or an old copy standing in for the system disk that is missing (its
    content would be compared with the real system's state)."""
    failed = failed_disks(coverage)
    if not failed or (coverage.disks and label in coverage.disks[0].volumes):
        return None
    return (f"{', '.join(failed)} could not be read and could hold the system; {label} "
            "is on another disk")


def has_dir(fs: Filesystem, name: str) -> bool:
    """Whether the root directory of ``fs`` holds a directory ``name`` (False if unreadable)."""
    try:
        return any(c.name == name and c.kind is FileKind.DIRECTORY for c in fs.children(fs.root()))
    except DiskError:
        return False
