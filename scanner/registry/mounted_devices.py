"""Drive letters from ``SYSTEM\\MountedDevices`` (pure: values in, a letter plan out).

Windows records the drive letter of each volume it has mounted as a ``REG_BINARY`` value of
the top-level key ``MountedDevices`` of the SYSTEM hive, named ``\\DosDevices\\X:``. Its
data names the partition:

* 12 bytes: an MBR disk signature (LE u32) and the partition's start in bytes (LE u64);
* ``DMIO:ID:`` and 16 bytes: a GPT partition's unique GUID (mixed-endian, as
  ``uuid.UUID(bytes_le=...)``);
* anything else (a UTF-16 device path such as ``\\??\\USBSTOR#Disk&Ven_...`` or
  ``_??_USBSTOR#...`` for removable media, an optical drive's ``\\??\\IDE#CdRom...``) names
  no partition of a disk: that letter cannot be mapped.

Values named ``\\??\\Volume{...}`` (volume GUID paths) and any other name are ignored.

:func:`drive_letters` matches each letter with the volume (of any of the machine's disks)
whose :class:`~scanner.disk.partition_ids.PartitionId` is the same. The volume holding
Windows is ``C:`` whatever the hive says (a disagreement is noted). A letter is left
unmapped, with a reason, when its data names no partition, when its partition is on none of
the disks or on several (a cloned disk), when that volume is not NTFS or could not be read,
when it is the Windows volume under another letter, or when the hive lists the letter twice.
When the letter's volume should be there but cannot be read (``LetterPlan.missing``: a disk
not given, a filesystem that does not open, an unreadable value), what lies under it is
unknown this scan (its state is kept), not gone.

Hostile data: only the 26 letter values are parsed, each value's data is bounded
(:data:`MAX_DATA_BYTES`), device paths are shown escaped and cut short.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scanner.disk.partition_ids import PartitionId
from scanner.errors import HiveError
from scanner.registry.hive import Hive

__all__ = ["LetterTarget", "MountedDevices", "LetterPlan", "parse_mounted_devices",
           "drive_letters", "read_mounted_devices", "unread_plan", "MAX_DATA_BYTES", "KEY"]

KEY = "MountedDevices"
MAX_DATA_BYTES = 4096  # a device path is a few hundred bytes; a partition id 12 or 24
_LETTER_NAME = re.compile(r"\\DosDevices\\([A-Za-z]):\Z", re.IGNORECASE | re.ASCII)
_DMIO = b"DMIO:ID:"
_MBR = struct.Struct("<IQ")
_SHOWN = 80  # characters of a device path quoted in a reason
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class LetterTarget:
    """What the hive says lies behind a drive letter: a partition id, or why none
    (``unknown``: the value could not be read or is listed twice, so the letter may well
    name a partition)."""

    letter: str  # "D:"
    target: PartitionId | None
    reason: str | None = None
    unknown: bool = False


@dataclass(slots=True)
class MountedDevices:
    """The drive letters of ``MountedDevices`` by letter (``"D:"``), plus notes on values
    that could not be taken (a letter listed twice)."""

    letters: dict[str, LetterTarget] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class LetterPlan:
    """Drive letter (``"C:"``) -> volume label of each letter that can be scanned; the
    letters that cannot, with why (``unmapped``); one note per oddity, each naming its
    letter (for the coverage report).

    ``missing``: the unmapped letters whose volume should be there but cannot be read this
    time (its partition is on none of the disks given, or on several, its filesystem cannot
    be read, its value cannot be read or is listed twice): what lies under them is unknown
    and keeps its state. The other unmapped letters (removable media, a non-NTFS volume)
    are never scanned.

    ``complete``: False when ``MountedDevices`` itself could not be read (:func:`unread_plan`):
    then any letter but C: may exist, and what lies under it keeps its state."""

    letters: dict[str, str] = field(default_factory=dict)
    unmapped: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    complete: bool = True

    def why_not(self, letter: str) -> tuple[str, bool]:
        """Why ``letter`` (not in :attr:`letters`) is not scanned, and whether what lies
        under it keeps its state (True) or was never scanned (False)."""
        if letter in self.unmapped:
            return f"drive {letter} not scanned: {self.unmapped[letter]}", letter in self.missing
        if not self.complete:
            return (f"drive {letter} not scanned: the drive letters could not be read "
                    "(SYSTEM\\MountedDevices)"), True
        return f"the machine has no drive {letter} (SYSTEM\\MountedDevices names none)", False


def unread_plan(system: str, why: str) -> LetterPlan:
    """The plan when ``MountedDevices`` cannot be read (``why``): only the Windows volume,
    as C:, and every other letter unknown."""
    return LetterPlan(letters={"C:": system}, complete=False,
                      notes=[f"drive letters not read ({why}): only C: is scanned; paths on "
                             "other drives keep their state"])


def _shown(data: bytes) -> str:
    """A device path's data as a short, printable text (for a reason)."""
    text = data.decode("utf-16-le", "replace").rstrip("\x00")
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _target(letter: str, data: bytes) -> LetterTarget:
    """The partition one letter's data names, or why it names none."""
    if len(data) > MAX_DATA_BYTES:
        return LetterTarget(letter, None, f"{len(data)} bytes of data, over the bound of "
                                          f"{MAX_DATA_BYTES}")
    if data.startswith(_DMIO):
        if len(data) != len(_DMIO) + 16:
            return LetterTarget(letter, None, f"malformed DMIO:ID: value ({len(data)} bytes, "
                                              f"not {len(_DMIO) + 16})")
        return LetterTarget(letter, PartitionId(guid=uuid.UUID(bytes_le=data[len(_DMIO):])))
    if len(data) == _MBR.size:
        signature, offset = _MBR.unpack(data)
        return LetterTarget(letter, PartitionId(signature=signature, offset=offset))
    if len(data) >= 4 and len(data) % 2 == 0 and data[1] == 0:
        return LetterTarget(letter, None, f"a device, not a partition of a disk "
                                          f"({_shown(data)})")
    return LetterTarget(letter, None, f"{len(data)} bytes of an unknown form")


def parse_mounted_devices(values: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
                          unreadable: Mapping[str, str] | None = None) -> MountedDevices:
    """The drive letters named by ``MountedDevices`` values (name -> raw data; a list of
    pairs may repeat a name, as a hostile hive can). ``unreadable``: value name -> why its
    data could not be read (that letter is unmapped with this reason)."""
    pairs = values.items() if isinstance(values, Mapping) else values
    out = MountedDevices()
    seen: set[str] = set()
    twice: set[str] = set()
    entries = [(name, data) for name, data in pairs] + [
        (name, None) for name in (unreadable or {})]
    for name, data in entries:
        match = _LETTER_NAME.match(name)
        if match is None:
            continue
        letter = match.group(1).upper() + ":"
        if letter in seen:
            twice.add(letter)
            continue
        seen.add(letter)
        if data is None:
            why = (unreadable or {}).get(name, "cannot be read")
            out.letters[letter] = LetterTarget(letter, None, f"its value cannot be read: {why}",
                                               unknown=True)
        else:
            out.letters[letter] = _target(letter, bytes(data))
    for letter in sorted(twice):
        out.letters[letter] = LetterTarget(letter, None, "MountedDevices lists it twice",
                                           unknown=True)
    return out


def drive_letters(values: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
                  volumes: Mapping[str, PartitionId], *, system: str,
                  filesystems: Mapping[str, str | None],
                  unreadable: Mapping[str, str] | None = None) -> LetterPlan:
    """Map each drive letter of ``MountedDevices`` to a volume.

    ``volumes``: volume label -> its partition id, for every partition of every disk of the
    machine that has one. ``system``: the label of the volume holding Windows (always C:).
    ``filesystems``: volume label -> its filesystem type (``"ntfs"``), None when it could
    not be opened. ``unreadable``: value name -> why its data could not be read.
    """
    parsed = parse_mounted_devices(values, unreadable)
    owners: dict[PartitionId, list[str]] = {}
    for label, pid in volumes.items():
        owners.setdefault(pid, []).append(label)
    plan = LetterPlan(letters={"C:": system}, notes=list(parsed.notes))

    def unmapped(letter: str, why: str, missing: bool) -> None:
        plan.unmapped[letter] = why
        if missing:
            plan.missing.add(letter)
        plan.notes.append(f"drive {letter} not scanned: {why}")

    for letter, target in sorted(parsed.letters.items()):
        if target.target is None:
            if letter == "C:":
                plan.notes.append(f"MountedDevices gives C: no partition ({target.reason}); "
                                  f"{system}, which holds Windows, is C:")
            else:
                unmapped(letter, target.reason or "no partition", target.unknown)
            continue
        labels = sorted(owners.get(target.target, []))
        described = target.target.describe()
        if letter == "C:":
            if labels != [system]:
                where = ("on none of the disks" if not labels
                         else f"on {', '.join(labels)}")
                plan.notes.append(f"MountedDevices gives C: {described}, {where}; {system}, "
                                  "which holds Windows, is C:")
            continue
        if not labels:
            unmapped(letter, f"{described} is on none of the disks scanned", True)
        elif len(labels) > 1:
            unmapped(letter, f"{described} is held by several volumes ({', '.join(labels)}): "
                             "a cloned disk?", True)
        elif labels[0] == system:
            unmapped(letter, f"{described} is the Windows volume, scanned as C:", False)
        elif filesystems.get(labels[0]) != "ntfs":
            fs = filesystems.get(labels[0])
            unmapped(letter, f"{labels[0]} ({described}) " + (
                f"holds {fs}, not NTFS" if fs else "has no readable filesystem"), fs is None)
        else:
            plan.letters[letter] = labels[0]
    by_volume: dict[str, list[str]] = {}
    for letter, label in plan.letters.items():
        by_volume.setdefault(label, []).append(letter)
    for label, letters in sorted(by_volume.items()):
        if len(letters) > 1:
            plan.notes.append(f"{label} has several drive letters ({', '.join(sorted(letters))})"
                              ": its files are scanned under each")
    plan.letters = dict(sorted(plan.letters.items()))
    return plan


def read_mounted_devices(hive: Hive) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The values of ``MountedDevices`` in a SYSTEM hive: (name, data) pairs in stored order,
    and value name -> why its data cannot be read.

    Raises:
        HiveError: the key or its value list cannot be read, or the key is missing (every
            Windows SYSTEM hive has it: without it no letter is known, which is not the
            same as a machine without other drives).
    """
    key = hive.find(KEY)
    if key is None:
        raise HiveError(f"no {KEY} key")
    values: list[tuple[str, bytes]] = []
    errors: dict[str, str] = {}
    for value in hive.iter_values(key):
        if value.error is not None:
            errors[value.name] = value.error
        else:
            values.append((value.name, value.data))
    return values, errors

