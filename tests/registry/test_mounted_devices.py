"""SYSTEM\\MountedDevices: parsing the drive-letter values (GPT GUID, MBR signature + offset,
device paths, hostile data) and mapping letters to the volumes of the machine's disks."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.disk.partition_ids import PartitionId
from scanner.errors import HiveError
from scanner.registry.hive import REG_BINARY, Hive
from scanner.registry.mounted_devices import (
    MAX_DATA_BYTES,
    LetterPlan,
    LetterTarget,
    drive_letters,
    parse_mounted_devices,
    read_mounted_devices,
    unread_plan,
)
from tests.imaging.hives import HiveBuilder
from tests.imaging.windows_multidisk import USB_DEVICE, guid_value, mbr_value

SYS = "5eed0002-0000-4000-8000-00000000c0de"
DATA = "5eed00d1-0000-4000-8000-0000000000d1"
OTHER = "0badc0de-0000-4000-8000-000000000001"


def gpt(guid: str) -> PartitionId:
    return PartitionId(guid=uuid.UUID(guid))


def test_each_form_of_letter_data() -> None:
    parsed = parse_mounted_devices({
        "\\DosDevices\\C:": guid_value(SYS),
        "\\DosDevices\\d:": mbr_value(0x5EED00D1, 1 << 20),
        "\\DosDevices\\E:": USB_DEVICE.encode("utf-16-le"),
        "\\DosDevices\\F:": "_??_USBSTOR#Disk\x01".encode("utf-16-le"),
        "\\DosDevices\\G:": b"DMIO:ID:" + bytes(4),
        "\\DosDevices\\H:": bytes(7),
        "\\DosDevices\\I:": b"\\\x00" * (MAX_DATA_BYTES // 2 + 1),
        "\\??\\Volume{5eed0a00-0000-11ef-8000-000000000c0d}": guid_value(SYS),
        "#{a1b2c3d4-0000-0000-0000-000000000000}": b"x",
        "\\DosDevices\\CC:": guid_value(SYS),
        "\\DosDevices\\1:": guid_value(SYS),
        "\\DosDevices\\\u212a:": guid_value(SYS),  # KELVIN SIGN: a K only to Unicode folding
        "\\DosDevices\\\u017f:": guid_value(SYS),  # LONG S
    })
    assert parsed.letters == {
        "C:": LetterTarget("C:", gpt(SYS)),
        "D:": LetterTarget("D:", PartitionId(signature=0x5EED00D1, offset=1 << 20)),
        "E:": LetterTarget("E:", None, f"a device, not a partition of a disk "
                                       f"({USB_DEVICE[:80]}...)"),
        "F:": LetterTarget("F:", None, "a device, not a partition of a disk "
                                       "(_??_USBSTOR#Disk\\x01)"),
        "G:": LetterTarget("G:", None, "malformed DMIO:ID: value (12 bytes, not 24)"),
        "H:": LetterTarget("H:", None, "7 bytes of an unknown form"),
        "I:": LetterTarget("I:", None, f"{MAX_DATA_BYTES + 2} bytes of data, over the bound "
                                       f"of {MAX_DATA_BYTES}"),
    }


def test_a_letter_listed_twice_or_unreadable_is_unmapped() -> None:
    parsed = parse_mounted_devices(
        [("\\DosDevices\\D:", guid_value(DATA)), ("\\dosdevices\\d:", guid_value(OTHER)),
         ("\\DosDevices\\F:", guid_value(DATA))],
        unreadable={"\\DosDevices\\G:": "value data cell 0x1234 runs past the hive"})
    assert parsed.letters == {
        "D:": LetterTarget("D:", None, "MountedDevices lists it twice", unknown=True),
        "F:": LetterTarget("F:", gpt(DATA)),
        "G:": LetterTarget("G:", None, "its value cannot be read: value data cell 0x1234 "
                                       "runs past the hive", unknown=True),
    }


VOLUMES = {"disk0/p1": gpt("5eed0001-0000-4000-8000-0000000e5f00"), "disk0/p2": gpt(SYS),
           "disk1/p1": gpt(DATA)}
FILESYSTEMS = {"disk0/p1": "fat12", "disk0/p2": "ntfs", "disk1/p1": "ntfs"}


def plan(values: dict[str, bytes], volumes: dict[str, PartitionId] | None = None,
         filesystems: dict[str, str | None] | None = None) -> LetterPlan:
    return drive_letters(values, VOLUMES if volumes is None else volumes, system="disk0/p2",
                         filesystems=FILESYSTEMS if filesystems is None else filesystems)


def test_letters_map_to_the_volumes_with_the_same_partition_id() -> None:
    result = plan({"\\DosDevices\\C:": guid_value(SYS), "\\DosDevices\\D:": guid_value(DATA),
                   "\\DosDevices\\E:": USB_DEVICE.encode("utf-16-le")})
    assert result.letters == {"C:": "disk0/p2", "D:": "disk1/p1"}
    reason = f"a device, not a partition of a disk ({USB_DEVICE[:80]}...)"
    assert result.unmapped == {"E:": reason}
    assert result.missing == set()  # removable media: nothing to keep
    assert result.notes == [f"drive E: not scanned: {reason}"]


def test_mbr_letters_match_signature_and_offset() -> None:
    volumes = {"disk0/p2": PartitionId(signature=1, offset=9 << 20),
               "disk1/p1": PartitionId(signature=2, offset=1 << 20),
               "disk1/p2": PartitionId(signature=2, offset=5 << 20)}
    result = plan({"\\DosDevices\\C:": mbr_value(1, 9 << 20),
                   "\\DosDevices\\D:": mbr_value(2, 5 << 20),
                   "\\DosDevices\\F:": mbr_value(2, 3 << 20)},
                  volumes, {"disk0/p2": "ntfs", "disk1/p1": "ntfs", "disk1/p2": "ntfs"})
    assert result.letters == {"C:": "disk0/p2", "D:": "disk1/p2"}
    assert result.unmapped == {
        "F:": f"MBR disk 0x00000002 at byte {3 << 20} is on none of the disks scanned"}
    assert result.missing == {"F:"}


def test_letters_that_cannot_be_scanned_each_say_why() -> None:
    result = plan({"\\DosDevices\\F:": guid_value("5eed0001-0000-4000-8000-0000000e5f00"),
                   "\\DosDevices\\G:": guid_value(SYS),
                   "\\DosDevices\\H:": guid_value(OTHER),
                   "\\DosDevices\\D:": guid_value(DATA)},
                  filesystems={**FILESYSTEMS, "disk1/p1": None})
    assert result.letters == {"C:": "disk0/p2"}
    assert result.unmapped == {
        "D:": "disk1/p1 (GPT partition {5EED00D1-0000-4000-8000-0000000000D1}) has no "
              "readable filesystem",
        "F:": "disk0/p1 (GPT partition {5EED0001-0000-4000-8000-0000000E5F00}) holds fat12, "
              "not NTFS",
        "G:": "GPT partition {5EED0002-0000-4000-8000-00000000C0DE} is the Windows volume, "
              "scanned as C:",
        "H:": "GPT partition {0BADC0DE-0000-4000-8000-000000000001} is on none of the "
              "disks scanned"}
    assert result.notes == [f"drive {letter} not scanned: {why}"
                            for letter, why in sorted(result.unmapped.items())]
    assert result.missing == {"D:", "H:"}  # a volume that should be there, unread


def test_a_cloned_disk_makes_its_letter_ambiguous() -> None:
    volumes = {**VOLUMES, "disk2/p1": gpt(DATA)}
    result = plan({"\\DosDevices\\D:": guid_value(DATA)}, volumes,
                  {**FILESYSTEMS, "disk2/p1": "ntfs"})
    assert result.letters == {"C:": "disk0/p2"}
    assert result.unmapped == {
        "D:": "GPT partition {5EED00D1-0000-4000-8000-0000000000D1} is held by several "
              "volumes (disk1/p1, disk2/p1): a cloned disk?"}
    assert result.missing == {"D:"}


def test_c_is_always_the_windows_volume() -> None:
    result = plan({"\\DosDevices\\C:": guid_value(DATA)})
    assert result.letters == {"C:": "disk0/p2"}
    assert result.unmapped == {}
    assert result.notes == ["MountedDevices gives C: GPT partition "
                            "{5EED00D1-0000-4000-8000-0000000000D1}, on disk1/p1; disk0/p2, "
                            "which holds Windows, is C:"]
    assert plan({"\\DosDevices\\C:": USB_DEVICE.encode("utf-16-le")[:10]}).notes == [
        "MountedDevices gives C: no partition (a device, not a partition of a disk "
        "(\\??\\U)); disk0/p2, which holds Windows, is C:"]
    assert plan({}).letters == {"C:": "disk0/p2"} and plan({}).notes == []


def test_two_letters_on_one_volume_are_both_kept_and_noted() -> None:
    result = plan({"\\DosDevices\\D:": guid_value(DATA), "\\DosDevices\\K:": guid_value(DATA)})
    assert result.letters == {"C:": "disk0/p2", "D:": "disk1/p1", "K:": "disk1/p1"}
    assert result.notes == ["disk1/p1 has several drive letters (D:, K:): its files are "
                            "scanned under each"]


def test_read_mounted_devices_from_a_real_hive() -> None:
    builder = HiveBuilder("ROOT", hive_name="SYSTEM")
    key = builder.key("MountedDevices")
    key.value("\\DosDevices\\D:", REG_BINARY, guid_value(DATA))
    key.value("\\DosDevices\\X:", REG_BINARY, struct.pack("<IQ", 7, 512))
    key.value("\\??\\Volume{x}", REG_BINARY, b"DMIO:ID:" + bytes(16))
    values, errors = read_mounted_devices(Hive(builder.build()))
    assert sorted(values) == sorted([("\\DosDevices\\D:", guid_value(DATA)),
                                     ("\\DosDevices\\X:", struct.pack("<IQ", 7, 512)),
                                     ("\\??\\Volume{x}", b"DMIO:ID:" + bytes(16))])
    assert errors == {}
    with pytest.raises(HiveError, match="^no MountedDevices key$"):  # not "no other drive"
        read_mounted_devices(Hive(HiveBuilder("ROOT").build()))


def test_an_unreadable_or_doubled_letter_value_keeps_its_paths_state() -> None:
    result = drive_letters([("\\DosDevices\\D:", guid_value(DATA)),
                            ("\\DosDevices\\D:", guid_value(DATA))], VOLUMES,
                           system="disk0/p2", filesystems=FILESYSTEMS,
                           unreadable={"\\DosDevices\\G:": "big data segment missing"})
    assert result.letters == {"C:": "disk0/p2"}
    assert result.unmapped == {"D:": "MountedDevices lists it twice",
                               "G:": "its value cannot be read: big data segment missing"}
    assert result.missing == {"D:", "G:"}


def test_why_a_letter_is_not_scanned() -> None:
    result = plan({"\\DosDevices\\D:": guid_value(OTHER),
                   "\\DosDevices\\E:": USB_DEVICE.encode("utf-16-le")})
    assert result.why_not("D:") == (
        "drive D: not scanned: GPT partition {0BADC0DE-0000-4000-8000-000000000001} is on "
        "none of the disks scanned", True)
    assert result.why_not("E:") == (
        f"drive E: not scanned: a device, not a partition of a disk ({USB_DEVICE[:80]}...)",
        False)
    assert result.why_not("Z:") == (
        "the machine has no drive Z: (SYSTEM\\MountedDevices names none)", False)
    unread = unread_plan("disk0/p2", "hive truncated")
    assert (unread.letters, unread.complete) == ({"C:": "disk0/p2"}, False)
    assert unread.notes == ["drive letters not read (hive truncated): only C: is scanned; "
                            "paths on other drives keep their state"]
    assert unread.why_not("D:") == ("drive D: not scanned: the drive letters could not be "
                                    "read (SYSTEM\\MountedDevices)", True)


_NAMES = st.one_of(
    st.builds(lambda c: f"\\DosDevices\\{c}:",
              st.characters(min_codepoint=0, max_codepoint=0x2200)),
    st.text(max_size=40))


@given(st.lists(st.tuples(_NAMES, st.binary(max_size=64) | st.builds(
    lambda g: b"DMIO:ID:" + g, st.binary(min_size=14, max_size=18))), max_size=30))
def test_any_values_give_a_plan_and_never_raise(values: list[tuple[str, bytes]]) -> None:
    result = drive_letters(values, VOLUMES, system="disk0/p2", filesystems=FILESYSTEMS)
    assert result.letters["C:"] == "disk0/p2"
    assert all(len(k) == 2 and "A" <= k[0] <= "Z" and k[1] == ":" for k in
               [*result.letters, *result.unmapped])
    assert set(result.letters) & set(result.unmapped) == set()
    assert result.missing <= set(result.unmapped)
    assert all(label in VOLUMES for label in result.letters.values())
    assert all(len(note) < 400 for note in result.notes)
