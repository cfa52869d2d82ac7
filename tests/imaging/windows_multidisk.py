"""A Windows machine with two disks, built on the fly: the system disk of
:mod:`tests.imaging.windows` (C:) and a data disk whose NTFS volume is D:.

    machine = base_machine("gpt")                 # or "mbr": how the letters name partitions
    disks = build_machine(tmp_path / "m", machine)  # [system disk, data disk]
    changed = copy_machine(machine)
    changed.data_files["app/config.ini"] = replace(changed.data_files["app/config.ini"],
                                                   data=b"[db]\\r\\nhost=evil\\r\\n")

The SYSTEM hive's ``MountedDevices`` holds what Windows would write:

* ``table="gpt"``: ``\\DosDevices\\C:`` = ``DMIO:ID:`` + the system partition's unique GUID,
  ``\\DosDevices\\D:`` = ``DMIO:ID:`` + the data partition's; both disks GPT.
* ``table="mbr"``: both disks MBR; each letter is the disk signature + the partition's byte
  offset (12 bytes).
* always ``\\DosDevices\\E:`` = a USB stick's device path (UTF-16), which no disk of the
  machine holds, and two ``\\??\\Volume{...}`` values (ignored by the scanner).

The data disk has one NTFS partition (label ``Data``) at 1 MiB holding :attr:`WindowsMachine.
data_files`; its identifiers are fixed (:data:`DATA_PART_GUID`, :data:`DATA_MBR_SIGNATURE`).
Deterministic, like :func:`tests.imaging.windows.build_windows_image`.
"""

from __future__ import annotations

import copy
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from scanner.registry.hive import REG_BINARY
from tests.imaging.ntfs import FILE_ATTRIBUTE_ARCHIVE, Dir, Entry, File
from tests.imaging.partitions import _partition
from tests.imaging.tools import MIB, SECTOR
from tests.imaging.windows import (
    MBR_DISK_ID,
    SD_ADMIN_FILE,
    SD_DIR,
    SYSTEM,
    T_DIR,
    T_OS,
    WindowsLayout,
    _ntfs_volume,
    base_layout,
    build_windows_image,
    partition_offsets,
)

__all__ = [
    "WindowsMachine", "base_machine", "copy_machine", "build_machine", "build_data_disk",
    "mounted_devices", "set_mounted_devices", "guid_value", "mbr_value",
    "CONFIG_INI", "DATA_DISK_GUID", "DATA_PART_GUID", "SYSTEM_PART_GUID", "DATA_MBR_SIGNATURE",
    "DATA_OFFSET", "DATA_SIZE_MB", "DATA_SERIAL", "USB_DEVICE", "MOUNTED_DEVICES",
]

MOUNTED_DEVICES = "MountedDevices"
SYSTEM_PART_GUID = "5EED0002-0000-4000-8000-00000000C0DE"  # tests.imaging.windows' C: partition
DATA_DISK_GUID = "5EED00D0-0000-4000-8000-0000000000D0"
DATA_PART_GUID = "5EED00D1-0000-4000-8000-0000000000D1"
DATA_MBR_SIGNATURE = 0x5EED00D1
DATA_SERIAL = 0x5EED_C0DE_0000_00D1
DATA_SIZE_MB = 16
DATA_OFFSET = 2048 * SECTOR
_GPT_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
CONFIG_INI = b"[db]\r\nhost=db01.corp.example\r\nport=5432\r\n"
USB_DEVICE = ("\\??\\USBSTOR#Disk&Ven_SanDisk&Prod_Cruzer&Rev_1.00#4C530001230308114215&0#"
              "{53f56307-b6bf-11d0-94f2-00a0c91efb8b}")


def guid_value(guid: str) -> bytes:
    """``MountedDevices`` data of a GPT partition: ``DMIO:ID:`` + its GUID (mixed-endian)."""
    return b"DMIO:ID:" + uuid.UUID(guid).bytes_le


def mbr_value(signature: int, offset: int) -> bytes:
    """``MountedDevices`` data of an MBR partition: disk signature + byte offset."""
    return struct.pack("<IQ", signature, offset)


def mounted_devices(table: str) -> dict[str, bytes]:
    """The ``MountedDevices`` values of the machine for ``table`` (see the module doc)."""
    if table == "gpt":
        c, d = guid_value(SYSTEM_PART_GUID), guid_value(DATA_PART_GUID)
    elif table == "mbr":
        c = mbr_value(MBR_DISK_ID, partition_offsets("mbr")["system"])
        d = mbr_value(DATA_MBR_SIGNATURE, DATA_OFFSET)
    else:
        raise ValueError(f"table must be gpt or mbr, not {table!r}")
    return {
        "\\DosDevices\\C:": c,
        "\\DosDevices\\D:": d,
        "\\DosDevices\\E:": USB_DEVICE.encode("utf-16-le"),
        "\\??\\Volume{5eed0a00-0000-11ef-8000-000000000c0d}": c,
        "\\??\\Volume{5eed0a00-0000-11ef-8000-000000000d0d}": d,
    }


def set_mounted_devices(layout: WindowsLayout, values: dict[str, bytes]) -> None:
    """Replace the values of ``SYSTEM\\MountedDevices`` in ``layout`` by ``values``."""
    system = layout.hives[SYSTEM]
    system.delete_key(MOUNTED_DEVICES)  # a no-op when there is none
    key = system.key(MOUNTED_DEVICES)
    for name, data in values.items():
        key.value(name, REG_BINARY, data)


def _data_files() -> dict[str, Entry]:
    def data_file(data: bytes) -> File:
        return File(data, times=T_OS, security=SD_ADMIN_FILE,
                    dos_attributes=FILE_ATTRIBUTE_ARCHIVE)

    return {
        "": Dir(times=T_DIR, security=SD_DIR),
        "app": Dir(times=T_DIR, security=SD_DIR),
        "app/config.ini": data_file(CONFIG_INI),
        "app/bin": Dir(times=T_DIR, security=SD_DIR),
        "app/bin/app.exe": data_file(b"MZ" + bytes(510)),
        "backups": Dir(times=T_DIR, security=SD_DIR),
        "backups/db.bak": data_file(b"not monitored\r\n"),
    }


@dataclass
class WindowsMachine:
    """The two disks of a Windows machine: ``layout`` the system disk (C:), ``data_files``
    the NTFS data volume (D:; ntfsbuilder entries by path, ``""`` the root), ``table`` the
    partition table of both disks (``"gpt"`` or ``"mbr"``)."""

    layout: WindowsLayout
    data_files: dict[str, Entry] = field(default_factory=_data_files)
    table: str = "gpt"


def base_machine(table: str = "gpt") -> WindowsMachine:
    """The base two-disk machine for ``table``, its SYSTEM hive naming C:, D: and E:."""
    layout = base_layout()
    set_mounted_devices(layout, mounted_devices(table))
    return WindowsMachine(layout, table=table)


def copy_machine(machine: WindowsMachine) -> WindowsMachine:
    """A deep copy to mutate."""
    return copy.deepcopy(machine)


def build_data_disk(path: Path, files: dict[str, Entry], table: str = "gpt") -> Path:
    """The data disk: one NTFS partition (``Data``, :data:`DATA_SIZE_MB` MiB at 1 MiB)
    holding ``files``, in a GPT (:data:`DATA_PART_GUID`) or MBR
    (:data:`DATA_MBR_SIGNATURE`) table."""
    path = Path(path)
    if path.exists():
        path.unlink()
    with path.open("wb") as fh:
        fh.truncate(DATA_OFFSET + DATA_SIZE_MB * MIB + MIB)
    start = DATA_OFFSET // SECTOR
    if table == "gpt":
        script = (f"label: gpt\nlabel-id: {DATA_DISK_GUID}\n"
                  f"start={start}, size={DATA_SIZE_MB}MiB, type={_GPT_BASIC_DATA}, "
                  f"uuid={DATA_PART_GUID}, name=\"Basic data partition\"\n")
    elif table == "mbr":
        script = (f"label: dos\nlabel-id: 0x{DATA_MBR_SIGNATURE:08x}\n"
                  f"start={start}, size={DATA_SIZE_MB}MiB, type=7\n")
    else:
        raise ValueError(f"table must be gpt or mbr, not {table!r}")
    _partition(path, script)
    _ntfs_volume(path, files, offset=DATA_OFFSET, size_mb=DATA_SIZE_MB, label="Data",
                 serial=DATA_SERIAL)
    return path


def build_machine(directory: Path, machine: WindowsMachine) -> list[Path]:
    """Write both disks into ``directory`` (created): ``disk0.img`` (system), ``disk1.img``
    (data); returns their paths in that order."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [build_windows_image(directory / "disk0.img", machine.layout, table=machine.table),
            build_data_disk(directory / "disk1.img", machine.data_files, machine.table)]
