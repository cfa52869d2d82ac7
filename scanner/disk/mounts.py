"""Which volume is mounted where: /etc/fstab of the root filesystem, matched by UUID or label.

Pure: parsing and planning take text and identities, and return a plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scanner.disk.nodes import FsIdentity
from scanner.paths import normalize

# Filesystem types that never live on this disk's volumes.
_NOT_ON_DISK = {"swap", "tmpfs", "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2",
                "nfs", "nfs4", "cifs", "smb3", "fuse", "fuse.sshfs", "securityfs", "debugfs",
                "efivarfs", "hugetlbfs", "mqueue", "binfmt_misc", "autofs", "overlay", "none"}


@dataclass(frozen=True, slots=True)
class FstabEntry:
    """One line of /etc/fstab that names a block device."""

    spec: str
    mountpoint: str
    fstype: str


@dataclass(frozen=True, slots=True)
class MountPlan:
    """Mount points matched to volumes, and those whose device is not found on the disks."""

    mounts: dict[str, str]    # mountpoint -> volume label
    missing: dict[str, str]   # mountpoint -> reason
    # mountpoint -> every volume its device matched, when several did (the first is mounted)
    ambiguous: dict[str, tuple[str, ...]] = field(default_factory=dict)


def parse_fstab(text: str) -> list[FstabEntry]:
    """Entries of an fstab that could be a volume of this disk (no swap, pseudo or network fs)."""
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        fields = line.split()
        if len(fields) < 3:
            continue
        spec, mountpoint, fstype = fields[0], _unescape(fields[1]), fields[2]
        if fstype in _NOT_ON_DISK or not mountpoint.startswith("/"):
            continue
        if "bind" in (fields[3].split(",") if len(fields) > 3 else []):
            continue
        entries.append(FstabEntry(spec, normalize(mountpoint), fstype))
    return entries


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def _spec_key(spec: str) -> tuple[str, str] | None:
    for prefix, kind in (("UUID=", "uuid"), ("LABEL=", "label"),
                         ("/dev/disk/by-uuid/", "uuid"), ("/dev/disk/by-label/", "label")):
        if spec.startswith(prefix):
            return kind, spec[len(prefix):].strip('"')
    lvm = lvm_name(spec)
    if lvm is not None:
        return "lvm", f"lvm:{lvm[0]}/{lvm[1]}"
    return None


def lvm_name(spec: str) -> tuple[str, str] | None:
    """(volume group, logical volume) of ``/dev/mapper/VG-LV`` (dashes inside names are
    doubled) or ``/dev/VG/LV``; None for other device names."""
    if spec.startswith("/dev/mapper/"):
        name = spec[len("/dev/mapper/"):]
        parts = re.split(r"(?<!-)-(?!-)", name)
        if len(parts) == 2 and all(parts):
            return parts[0].replace("--", "-"), parts[1].replace("--", "-")
        return None
    match = re.fullmatch(r"/dev/([^/]+)/([^/]+)", spec)
    if match and match.group(1) not in ("disk", "mapper", "md", "block"):
        return match.group(1), match.group(2)
    return None


def plan_mounts(entries: list[FstabEntry], identities: dict[str, FsIdentity],
                root_volume: str, where: str = "this disk") -> MountPlan:
    """Match fstab entries (other than ``/``) to volumes by filesystem UUID, label or LV name.

    ``identities`` holds the volumes of every disk of the machine; when several match (a
    cloned disk), the first (in disk order) is mounted and all are listed in ``ambiguous``.
    ``where`` names the disks in the reason of a missing device ("this disk", "the disks
    scanned")."""
    mounts: dict[str, str] = {}
    missing: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        if entry.mountpoint == "/":
            continue
        key = _spec_key(entry.spec)
        if key is None:
            missing[entry.mountpoint] = f"{entry.spec}: device names cannot be matched offline"
            continue
        kind, value = key
        match = [label for label, ident in identities.items() if label != root_volume and (
            (kind == "uuid" and ident.uuid and ident.uuid.lower() == value.lower())
            or (kind == "label" and ident.label == value)
            or (kind == "lvm" and label.endswith("/" + value)))]
        if match:
            mounts[entry.mountpoint] = match[0]
            if len(match) > 1:
                ambiguous[entry.mountpoint] = tuple(match)
        else:
            missing[entry.mountpoint] = f"{entry.spec} is not a readable volume of {where}"
    return MountPlan(mounts, missing, ambiguous)
