"""The coverage report of a scan: what was found, scanned, skipped or unreadable, and why.

A scan reads every disk of one machine: :attr:`Coverage.disks` lists each disk (its name,
size, partition table, whether it could be read, and the labels of its volumes in
:attr:`Coverage.volumes`; a logical volume is listed with the disk of its first extent).
Reports stored before disks were listed have no ``disks`` key: their one disk is described
by ``source``, ``disk_size`` and ``partition_table``, which a scan still fills (the first
disk's table; the names joined and the sizes added when there are several).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_LISTED_ERRORS = 200


@dataclass(slots=True)
class VolumeReport:
    """One volume of the disk and what became of it."""

    volume: str
    offset: int
    length: int
    description: str
    filesystem: str | None = None
    status: str = "skipped"      # scanned | skipped | failed
    reason: str | None = None
    mountpoint: str | None = None
    uuid: str | None = None
    label: str | None = None


@dataclass(slots=True)
class DiskReport:
    """One disk of the machine and whether it could be read."""

    name: str                    # the image path or the name the caller gave
    size: int
    partition_table: str = "none"   # gpt | mbr | ... | none (a whole-disk filesystem)
    status: str = "read"         # read | failed
    reason: str | None = None
    volumes: list[str] = field(default_factory=list)  # labels (an LV: on its first extent's disk)


@dataclass(slots=True)
class HiveReport:
    """One registry hive file and what became of it."""

    hive: str                    # SOFTWARE, NTUSER.DAT (alice), ...
    file: str                    # C:\\Windows\\System32\\config\\SOFTWARE
    mount: str                   # HKLM\\SOFTWARE
    # clean | replayed | replay-incomplete | dirty-not-replayed | missing | failed
    status: str = "skipped"
    reason: str | None = None
    keys: int = 0
    values: int = 0


@dataclass(slots=True)
class Coverage:
    """Per-scan coverage: volumes, mounts, counts and unreadable paths."""

    source: str
    disk_size: int
    partition_table: str
    volumes: list[VolumeReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> reason
    entities: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    policies: list[str] = field(default_factory=list)
    hives: list[HiveReport] = field(default_factory=list)
    disks: list[DiskReport] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``partial`` when anything that should have been read was not, else ``succeeded``."""
        if self.unreadable or any(v.status == "failed" for v in self.volumes):
            return "partial"
        if any(d.status == "failed" for d in self.disks):
            return "partial"
        if any(h.status in ("failed", "dirty-not-replayed", "replay-incomplete")
               for h in self.hives):
            return "partial"
        return "succeeded"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, with the unreadable list capped (the count is kept)."""
        data = asdict(self)
        items = sorted(self.unreadable.items())
        data["unreadable"] = dict(items[:MAX_LISTED_ERRORS])
        data["unreadable_count"] = len(items)
        data["status"] = self.status
        return data


def human_size(n: int) -> str:
    """Bytes for people (``24.0 MiB``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
