"""Small, realistic Windows disk images for tests, built on the fly (nothing committed, nothing
mounted): a mutable model of the system volume plus one build function.

    base = base_layout()                            # deterministic: fixed times, SIDs, serials
    image = build_windows_image(tmp_path / "a.img", base)
    changed = copy_layout(base)                     # deep copy: mutate freely
    changed.files["Windows/win.ini"] = replace(changed.files["Windows/win.ini"], data=b"x")
    changed.hives[SOFTWARE].key(RUN).value("Evil", REG_SZ, sz("C:\\evil.exe"))
    image2 = build_windows_image(tmp_path / "b.img", changed)

The disk (:func:`build_windows_image`):

* ``table="gpt"``: p1 "EFI system partition" (FAT12, 4 MiB, :attr:`WindowsLayout.esp_files`),
  p2 "Basic data partition" = the NTFS system volume (``C:``, :attr:`WindowsLayout.files`).
* ``table="mbr"``: p1 "System Reserved" NTFS (8 MiB, bootable, ``bootmgr`` + ``Boot/BCD``:
  :attr:`WindowsLayout.system_reserved_files`), p2 the NTFS system volume. Two NTFS volumes:
  the system volume must be found by its content, not its type.
* ``table="none"``: the NTFS system volume alone, no partition table.

The system volume is written by :mod:`tests.imaging.ntfs` (libntfs-3g, no mount); hives are
:class:`~tests.imaging.hives.HiveBuilder` objects serialized at build time. For a path
in :attr:`WindowsLayout.hives`, ``files[path]`` (if present) gives the hive file's metadata
(times, descriptor, attributes) and its ``data`` is ignored: the content is
``hive_bytes[path]`` when set (a dirty or truncated primary, see :func:`dirty_with_log`,
:func:`dirty_without_log`, :func:`truncate_hive`), else ``hives[path].build()``.

Determinism: every time is fixed, GPT/MBR identifiers and partition GUIDs are fixed, the FAT is
made with ``mkfs.vfat --invariant``, the NTFS volumes with ``mkntfs -T`` and then given fixed
(distinct) serial numbers; the unused tails of MFT records and index blocks are zeroed (libntfs-3g
leaves wall-clock times there, see :func:`_scrub_ntfs_slack`). Two builds of one layout are
byte-identical (tested). A GPT build takes ~0.04 s; the disk is 38 MiB (sparse parts aside).
"""

from __future__ import annotations

import copy
import hashlib
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.registry.hive import (
    HBIN_START,
    REG_BINARY,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_MULTI_SZ,
    REG_NONE,
    REG_QWORD,
    REG_SZ,
)
from tests.imaging.hives import (
    HiveBuilder,
    LoggedHive,
    dword,
    multi_sz,
    qword,
    security_descriptor,
    sid_bytes,
    sz,
    to_filetime,
    write_transaction_log,
)
from tests.imaging.ntfs import (
    FILE_ATTRIBUTE_ARCHIVE,
    FILE_ATTRIBUTE_HIDDEN,
    FILE_ATTRIBUTE_READONLY,
    FILE_ATTRIBUTE_SYSTEM,
    Dir,
    Entry,
    File,
    Junction,
    build_ntfs_tree,
)
from tests.imaging.partitions import _partition
from tests.imaging.tools import MIB, SECTOR, _run_env, embed, run

__all__ = [
    "WindowsLayout", "base_layout", "build_windows_image", "copy_layout", "ntfs_tree",
    "hive_data", "dirty_with_log", "dirty_without_log", "truncate_hive", "fake_pe",
    "system_volume_offset", "partition_offsets",
    "SOFTWARE", "SYSTEM", "SECURITY", "SAM", "DEFAULT", "ALICE_NTUSER", "BOB_NTUSER",
    "MACHINE_HIVES", "USER_HIVES", "RUN", "RUN_ONCE", "WOW_RUN", "WINLOGON", "WINDOWS_KEY",
    "SIP_REMOVE_C689", "HIVELIST", "KNOWN_DLLS", "FIREWALL_POLICY", "SECRETS",
    "ALICE_SID", "BOB_SID", "MACHINE_SID",
    "T_OS", "T_DIR", "T_HIVE", "T_USER", "HIVE_TIME", "RUN_TIME",
    "SD_OS_FILE", "SD_ADMIN_FILE", "SD_HIVE", "SD_DIR", "SD_KEY_WINLOGON", "SD_KEY_SECURITY",
    "sd_user_file", "sd_user_dir", "ZONE_IDENTIFIER", "DOWNLOAD_ZONE", "WIN_INI", "SYSTEM_INI",
    "BOOT_INI", "HOSTS", "DESKTOP_INI",
    "ESP_SIZE_MB", "SYSTEM_RESERVED_SIZE_MB", "NTFS_SIZE_MB", "NTFS_SERIAL",
    "SYSTEM_RESERVED_SERIAL", "FAT_VOLUME_ID", "DISK_GUID", "MBR_DISK_ID",
]

# -- identities, times, descriptors -----------------------------------------------------------

MACHINE_SID = "S-1-5-21-3623811015-3361044348-30300820"
ALICE_SID = MACHINE_SID + "-1001"
BOB_SID = MACHINE_SID + "-1002"
_TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9


_INSTALL = _ns(datetime(2023, 3, 14, 9, 0, tzinfo=UTC))
# (crtime, mtime, ctime, atime) in ns since the Unix epoch, as tests.imaging.ntfs wants them.
# OS files keep the build's mtime (older than their creation on this disk), as on real Windows.
T_OS = (_INSTALL, _ns(datetime(2019, 12, 7, 9, 10, tzinfo=UTC)), _INSTALL,
        _ns(datetime(2024, 1, 15, 8, 0, tzinfo=UTC)))
T_DIR = (_INSTALL,) * 4
T_HIVE = (_INSTALL,) + (_ns(datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),) * 3
T_USER = (_ns(datetime(2023, 6, 1, 10, 0, tzinfo=UTC)),) + \
    (_ns(datetime(2024, 2, 1, 17, 30, tzinfo=UTC)),) * 3
HIVE_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # default key last-write time
RUN_TIME = datetime(2024, 4, 20, 16, 45, tzinfo=UTC)  # the Run keys' last-write time

_ALLOW, _OICI, _FA, _READ_EXEC = 0, 0x03, 0x1F01FF, 0x1200A9
# O:SYG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1200a9;;;BU)
SD_OS_FILE = security_descriptor(
    "S-1-5-18", "S-1-5-18",
    [(_ALLOW, 0, _FA, "S-1-5-18"), (_ALLOW, 0, _FA, "S-1-5-32-544"),
     (_ALLOW, 0, _READ_EXEC, "S-1-5-32-545")], control=0x1400)
# O:BAG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1200a9;;;BU)
SD_ADMIN_FILE = security_descriptor(
    "S-1-5-32-544", "S-1-5-18",
    [(_ALLOW, 0, _FA, "S-1-5-18"), (_ALLOW, 0, _FA, "S-1-5-32-544"),
     (_ALLOW, 0, _READ_EXEC, "S-1-5-32-545")], control=0x1400)
# O:BAG:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)
SD_HIVE = security_descriptor(
    "S-1-5-32-544", "S-1-5-18",
    [(_ALLOW, 0, _FA, "S-1-5-18"), (_ALLOW, 0, _FA, "S-1-5-32-544")], control=0x1400)
# O:SYG:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)
SD_DIR = security_descriptor(
    "S-1-5-18", "S-1-5-18",
    [(_ALLOW, _OICI, _FA, "S-1-5-18"), (_ALLOW, _OICI, _FA, "S-1-5-32-544"),
     (_ALLOW, _OICI, _READ_EXEC, "S-1-5-32-545")], control=0x1400)
# O:BAG:SYD:PAI(A;CI;KA;;;SY)(A;CI;KA;;;BA)(A;CI;KR;;;BU)  (HKLM\SOFTWARE\...\Winlogon)
SD_KEY_WINLOGON = security_descriptor(
    "S-1-5-32-544", "S-1-5-18",
    [(_ALLOW, 0x02, 0xF003F, "S-1-5-18"), (_ALLOW, 0x02, 0xF003F, "S-1-5-32-544"),
     (_ALLOW, 0x02, 0x20019, "S-1-5-32-545")], control=0x1400)
# O:BAG:SYD:P(A;CI;KA;;;SY)(A;CI;RCWD;;;BA)  (every key of SECURITY and SAM)
SD_KEY_SECURITY = security_descriptor(
    "S-1-5-32-544", "S-1-5-18",
    [(_ALLOW, 0x02, 0xF003F, "S-1-5-18"), (_ALLOW, 0x02, 0x60000, "S-1-5-32-544")],
    control=0x1000)


def sd_user_file(sid: str) -> bytes:
    """O:<sid>G:SYD:PAI(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;<sid>): a user's own file."""
    return security_descriptor(
        sid, "S-1-5-18",
        [(_ALLOW, 0, _FA, "S-1-5-18"), (_ALLOW, 0, _FA, "S-1-5-32-544"), (_ALLOW, 0, _FA, sid)],
        control=0x1400)


def sd_user_dir(sid: str) -> bytes:
    """O:<sid>G:SYD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;<sid>): a profile dir."""
    return security_descriptor(
        sid, "S-1-5-18",
        [(_ALLOW, _OICI, _FA, "S-1-5-18"), (_ALLOW, _OICI, _FA, "S-1-5-32-544"),
         (_ALLOW, _OICI, _FA, sid)], control=0x1400)


# -- paths, keys ------------------------------------------------------------------------------

_CONFIG = "Windows/System32/config"
SYSTEM = f"{_CONFIG}/SYSTEM"
SOFTWARE = f"{_CONFIG}/SOFTWARE"
SECURITY = f"{_CONFIG}/SECURITY"
SAM = f"{_CONFIG}/SAM"
DEFAULT = f"{_CONFIG}/DEFAULT"
ALICE_NTUSER = "Users/alice/NTUSER.DAT"
BOB_NTUSER = "Users/bob/NTUSER.DAT"
MACHINE_HIVES = (SYSTEM, SOFTWARE, SECURITY, SAM, DEFAULT)
USER_HIVES = (ALICE_NTUSER, BOB_NTUSER)

RUN = "Microsoft\\Windows\\CurrentVersion\\Run"  # SOFTWARE; in NTUSER.DAT under Software\
RUN_ONCE = "Microsoft\\Windows\\CurrentVersion\\RunOnce"
WOW_RUN = "WOW6432Node\\" + RUN
WINDOWS_KEY = "Microsoft\\Windows NT\\CurrentVersion\\Windows"
WINLOGON = "Microsoft\\Windows NT\\CurrentVersion\\Winlogon"
SIP_REMOVE_C689 = ("Microsoft\\Cryptography\\OID\\EncodingType 0\\CryptSIPDllRemoveSignedDataMsg"
                   "\\{C689AAB8-8E78-11D0-8C47-00C04FC295EE}")
HIVELIST = "ControlSet001\\Control\\hivelist"  # SYSTEM
KNOWN_DLLS = "ControlSet001\\Control\\Session Manager\\KnownDLLs"
FIREWALL_POLICY = "ControlSet001\\Services\\SharedAccess\\Parameters\\FirewallPolicy"
SECRETS = "Policy\\Secrets"  # SECURITY

ZONE_IDENTIFIER = b"[ZoneTransfer]\r\nZoneId=3\r\n"

# -- disk geometry and identifiers --------------------------------------------------------------

ESP_SIZE_MB = 4
SYSTEM_RESERVED_SIZE_MB = 8
NTFS_SIZE_MB = 32
NTFS_SERIAL = 0x5EED_C0DE_0000_0002           # the system volume (C:)
SYSTEM_RESERVED_SERIAL = 0x5EED_C0DE_0000_0001
FAT_VOLUME_ID = 0x5EEDE5F0                    # ESP serial "5EED-E5F0"
DISK_GUID = "5EED0000-0000-4000-8000-00000000D15C"
_ESP_GUID = "5EED0001-0000-4000-8000-0000000E5F00"
_DATA_GUID = "5EED0002-0000-4000-8000-00000000C0DE"
_GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
_GPT_BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
MBR_DISK_ID = 0x5EED0001
_FIRST = 2048  # first partition sector (1 MiB)


# -- the model --------------------------------------------------------------------------------

@dataclass
class WindowsLayout:
    """What a Windows disk holds; mutate a :func:`copy_layout` copy, then build it.

    ``files``: tests.imaging.ntfs entries of the system volume by path relative to its root
    (``"Windows/explorer.exe"``; ``""`` is the root directory). ``hives``: hive builders by
    the path of the hive file; ``files[path]`` carries the hive file's metadata (its ``data``
    is ignored). ``hive_bytes``: raw bytes written instead of ``hives[path].build()``.
    ``esp_files`` / ``system_reserved_files``: content of the first partition (GPT ESP as
    FAT, MBR "System Reserved" as NTFS), bytes by relative path.
    """

    files: dict[str, Entry] = field(default_factory=dict)
    hives: dict[str, HiveBuilder] = field(default_factory=dict)
    hive_bytes: dict[str, bytes] = field(default_factory=dict)
    esp_files: dict[str, bytes] = field(default_factory=dict)
    system_reserved_files: dict[str, bytes] = field(default_factory=dict)
    label: str = "Windows"
    serial: int = NTFS_SERIAL

    def copy(self) -> WindowsLayout:
        """A deep copy (see :func:`copy_layout`)."""
        return copy_layout(self)


def copy_layout(layout: WindowsLayout) -> WindowsLayout:
    """A deep copy: entries, hive builders (their whole key trees) and raw bytes, so a test
    can mutate the copy without touching the original."""
    return copy.deepcopy(layout)


def hive_data(layout: WindowsLayout, path: str) -> bytes:
    """The bytes written for the hive file ``path``: ``hive_bytes[path]`` if set, else the
    builder's :meth:`~tests.imaging.hives.HiveBuilder.build`."""
    raw = layout.hive_bytes.get(path)
    return raw if raw is not None else layout.hives[path].build()


def ntfs_tree(layout: WindowsLayout) -> dict[str, Entry]:
    """The exact tree written to the system volume: ``files`` with each hive path's entry
    holding the hive bytes (a hive without a ``files`` entry becomes a plain ``File``)."""
    tree = dict(layout.files)
    for path in layout.hives:
        template = tree.get(path, File())
        if not isinstance(template, File):
            raise ValueError(f"{path}: a hive file must be a File entry, not {template!r}")
        tree[path] = replace(template, data=hive_data(layout, path))
    return tree


# -- dirty and broken hives --------------------------------------------------------------------

def _set_log(layout: WindowsLayout, path: str, data: bytes) -> None:
    """Give the log file ``path`` (``<hive>.LOG1``/``.LOG2``) new content, keeping its entry's
    metadata (same MFT record); a missing one gets the hive file's times and descriptor,
    hidden+system+archive, as in :func:`base_layout`."""
    entry = layout.files.get(path)
    if isinstance(entry, File):
        layout.files[path] = replace(entry, data=data)
        return
    hive_file = layout.files.get(path.rsplit(".", 1)[0])
    layout.files[path] = File(
        data, times=hive_file.times if isinstance(hive_file, File) else T_HIVE,
        security=hive_file.security if isinstance(hive_file, File) else SD_HIVE,
        dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM | FILE_ATTRIBUTE_ARCHIVE)


def dirty_with_log(layout: WindowsLayout, path: str, change: Callable[[HiveBuilder], object],
                   *, entries: int = 1, dual: bool = False) -> LoggedHive:
    """Make the hive ``path`` dirty, with its pending change in a transaction log.

    ``change`` mutates ``layout.hives[path]``; afterwards the builder describes the hive *as
    replayed* (what a scanner should report), while the file holds the old primary marked
    dirty and ``<path>.LOG1`` carries ``entries`` HvLE entries with the new pages
    (:func:`~tests.imaging.hives.write_transaction_log`). ``.LOG2`` gets a stale log
    from an earlier flush (a valid header, sequence number too old to replay), or with
    ``dual=True`` the second half of the entries (stale when there is one entry). The log
    files' other metadata is kept, so no MFT record moves. Returns the primary and logs
    written (``log2`` as :func:`write_transaction_log` made it)."""
    builder = layout.hives[path]
    if path in layout.hive_bytes or builder.dirty:
        raise ValueError(f"{path}: already dirty or replaced; start from a clean hive")
    old = builder.build()
    change(builder)
    new = builder.build()
    logged = write_transaction_log(old, new, entries=entries, dual=dual)
    stale = write_transaction_log(old, new, entries=1, dual=True).log2
    assert stale is not None
    layout.hive_bytes[path] = logged.primary
    _set_log(layout, path + ".LOG1", logged.log1)
    _set_log(layout, path + ".LOG2", logged.log2 if logged.log2 is not None else stale)
    return logged


def dirty_without_log(layout: WindowsLayout, path: str, *, remove_logs: bool = False) -> None:
    """Make the hive ``path`` dirty (primary sequence number = secondary + 1) with no log to
    replay: ``.LOG1``/``.LOG2`` become empty files (their entries, hence every MFT record
    number, stay), or are deleted with ``remove_logs=True`` (which renumbers the MFT records
    of the entries created after them: see :func:`build_windows_image`). The content is the
    builder's, read as is."""
    layout.hives[path].dirty = True
    layout.hive_bytes.pop(path, None)
    for log in (path + ".LOG1", path + ".LOG2"):
        if remove_logs:
            layout.files.pop(log, None)
        elif log in layout.files:
            _set_log(layout, log, b"")


def truncate_hive(layout: WindowsLayout, path: str, size: int | None = None) -> int:
    """Cut the hive file ``path`` to ``size`` bytes (default: the base block and half of the
    hbins, so the base block claims more hbins than the file holds); returns the size."""
    data = hive_data(layout, path)
    if size is None:
        size = HBIN_START + (len(data) - HBIN_START) // 2
    if not 0 <= size < len(data):
        raise ValueError(f"{path}: size {size} does not truncate {len(data)} bytes")
    layout.hive_bytes[path] = data[:size]
    return size


# -- content ----------------------------------------------------------------------------------

def fake_pe(name: str, size: int) -> bytes:
    """Deterministic executable-looking bytes: an MZ header with the DOS stub message, then
    SHA-256 counter-mode bytes seeded by ``name``, cut to ``size``."""
    head = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
            + b"\xb8" + bytes(43) + struct.pack("<I", 0x80)
            + b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
            + b"This program cannot be run in DOS mode.\r\r\n$")
    out = bytearray(head)
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


WIN_INI = b"; for 16-bit app support\r\n[fonts]\r\n[extensions]\r\n[mci extensions]\r\n" \
    b"[files]\r\n[Mail]\r\nMAPI=1\r\n"
SYSTEM_INI = b"; for 16-bit app support\r\n[386Enh]\r\nwoafont=dosapp.fon\r\n" \
    b"EGA80WOA.FON=EGA80WOA.FON\r\nEGA40WOA.FON=EGA40WOA.FON\r\nCGA80WOA.FON=CGA80WOA.FON\r\n" \
    b"CGA40WOA.FON=CGA40WOA.FON\r\n\r\n[drivers]\r\nwave=mmdrv.dll\r\ntimer=timer.drv\r\n" \
    b"\r\n[mci]\r\n"
BOOT_INI = b"[boot loader]\r\ntimeout=30\r\n" \
    b"default=multi(0)disk(0)rdisk(0)partition(2)\\WINDOWS\r\n[operating systems]\r\n" \
    b"multi(0)disk(0)rdisk(0)partition(2)\\WINDOWS=\"Microsoft Windows\" /fastdetect\r\n"
HOSTS = b"# Copyright (c) 1993-2009 Microsoft Corp.\r\n#\r\n# localhost name resolution is " \
    b"handled within DNS itself.\r\n#\t127.0.0.1       localhost\r\n#\t::1             " \
    b"localhost\r\n"
DESKTOP_INI = "\ufeff\r\n[.ShellClassInfo]\r\nLocalizedResourceName=@%SystemRoot%\\system32\\" \
    "shell32.dll,-21769\r\nIconResource=%SystemRoot%\\system32\\imageres.dll,-183\r\n" \
    .encode("utf-16-le")
DOWNLOAD_ZONE = b"[ZoneTransfer]\r\nZoneId=3\r\nReferrerUrl=https://example.com/\r\n" \
    b"HostUrl=https://example.com/tool.exe\r\n"


# -- hives ------------------------------------------------------------------------------------

def _hive(name: str, security: bytes | None = None) -> HiveBuilder:
    if security is None:
        return HiveBuilder("ROOT", timestamp=HIVE_TIME, hive_name=name)
    return HiveBuilder("ROOT", timestamp=HIVE_TIME, hive_name=name, default_security=security)


def _system_hive() -> HiveBuilder:
    b = _hive("SYSTEM")
    select = b.key("Select")
    for name, value in (("Current", 1), ("Default", 1), ("Failed", 0), ("LastKnownGood", 2)):
        select.value(name, REG_DWORD, dword(value))
    volume = "\\Device\\HarddiskVolume2"
    hivelist = b.key(HIVELIST)
    hivelist.value("\\REGISTRY\\MACHINE\\HARDWARE", REG_SZ, sz(""))
    for name in ("SYSTEM", "SOFTWARE", "SECURITY", "SAM"):
        hivelist.value(f"\\REGISTRY\\MACHINE\\{name}", REG_SZ,
                       sz(f"{volume}\\Windows\\System32\\config\\{name}"))
    hivelist.value("\\REGISTRY\\USER\\.DEFAULT", REG_SZ,
                   sz(f"{volume}\\Windows\\System32\\config\\DEFAULT"))
    for sid, user in ((ALICE_SID, "alice"), (BOB_SID, "bob")):
        hivelist.value(f"\\REGISTRY\\USER\\{sid}", REG_SZ,
                       sz(f"{volume}\\Users\\{user}\\NTUSER.DAT"))
    b.key("ControlSet001\\Control\\Session Manager").value(
        "BootExecute", REG_MULTI_SZ, multi_sz(["autocheck autochk *"]))
    known = b.key(KNOWN_DLLS)
    for name in ("advapi32", "gdi32", "kernel32", "ole32", "user32"):
        known.value(name, REG_SZ, sz(f"{name}.dll"))
    known.value("DllDirectory", REG_EXPAND_SZ, sz("%SystemRoot%\\system32"))
    b.key("ControlSet001\\Control\\ComputerName\\ComputerName").value(
        "ComputerName", REG_SZ, sz("WIN-SNAPFIM01"))
    for profile in ("DomainProfile", "PublicProfile", "StandardProfile"):
        b.key(f"{FIREWALL_POLICY}\\{profile}").value("EnableFirewall", REG_DWORD, dword(1))
    b.key(f"{FIREWALL_POLICY}\\PublicProfile").value("DisableNotifications", REG_DWORD,
                                                      dword(0))
    b.key(f"{FIREWALL_POLICY}\\FirewallRules").value(
        "CoreNet-DHCP-In", REG_SZ,
        sz("v2.10|Action=Allow|Active=TRUE|Dir=In|Protocol=17|LPort=68|RPort=67|"
           "App=%SystemRoot%\\system32\\svchost.exe|Svc=dhcp|Name=@FirewallAPI.dll,-25301|"))
    b.key("ControlSet001\\Services\\Tcpip\\Parameters").value("Hostname", REG_SZ,
                                                              sz("WIN-SNAPFIM01"))
    # The last-known-good set differs: a reader that ignores Select\Current sees it.
    for profile in ("DomainProfile", "PublicProfile", "StandardProfile"):
        b.key("ControlSet002\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\"
              + profile).value("EnableFirewall", REG_DWORD, dword(0))
    b.key("ControlSet002\\Control\\ComputerName\\ComputerName").value(
        "ComputerName", REG_SZ, sz("OLD-NAME"))
    return b


def _software_hive() -> HiveBuilder:
    b = _hive("SOFTWARE")
    cv = b.key("Microsoft\\Windows\\CurrentVersion")
    cv.value("ProgramFilesDir", REG_SZ, sz("C:\\Program Files"))
    cv.value("CommonFilesDir", REG_SZ, sz("C:\\Program Files\\Common Files"))
    run = b.key(RUN, last_write=RUN_TIME)
    run.value("SecurityHealth", REG_EXPAND_SZ, sz("%windir%\\system32\\SecurityHealthSystray.exe"))
    run.value("MSC", REG_SZ,
              sz("\"C:\\Program Files\\Microsoft Security Client\\msseces.exe\" -hide -runkey"))
    b.key(RUN_ONCE)
    b.key("Microsoft\\Windows\\CurrentVersion\\Explorer\\Shell Folders").value(
        "Common AppData", REG_SZ, sz("C:\\ProgramData"))
    b.key("Microsoft\\Windows\\CurrentVersion\\Explorer\\User Shell Folders").value(
        "Common AppData", REG_EXPAND_SZ, sz("%ProgramData%"))
    nt = b.key("Microsoft\\Windows NT\\CurrentVersion")
    nt.value("SystemRoot", REG_SZ, sz("C:\\Windows"))
    nt.value("ProductName", REG_SZ, sz("Windows 10 Pro"))
    nt.value("EditionID", REG_SZ, sz("Professional"))
    nt.value("CurrentBuild", REG_SZ, sz("19045"))
    nt.value("CurrentMajorVersionNumber", REG_DWORD, dword(10))
    nt.value("InstallDate", REG_DWORD, dword(_INSTALL // 10**9))
    nt.value("InstallTime", REG_QWORD,
             qword(to_filetime(datetime(2023, 3, 14, 9, 0, tzinfo=UTC))))
    windows = b.key(WINDOWS_KEY)
    windows.value("AppInit_DLLs", REG_SZ, sz(""))
    windows.value("LoadAppInit_DLLs", REG_DWORD, dword(0))
    windows.value("RequireSignedAppInit_DLLs", REG_DWORD, dword(1))
    winlogon = b.key(WINLOGON, security=SD_KEY_WINLOGON)
    winlogon.value("Shell", REG_SZ, sz("explorer.exe"))
    winlogon.value("Userinit", REG_SZ, sz("C:\\Windows\\system32\\userinit.exe,"))
    winlogon.value("AutoRestartShell", REG_DWORD, dword(1))
    boot = b.key("Microsoft\\Windows NT\\CurrentVersion\\IniFileMapping\\SYSTEM.ini\\boot")
    boot.value("Shell", REG_SZ, sz("SYS:Microsoft\\Windows NT\\CurrentVersion\\Winlogon"))
    boot.value("SCRNSAVE.EXE", REG_SZ, sz("USR:Control Panel\\Desktop"))
    profiles = b.key("Microsoft\\Windows NT\\CurrentVersion\\ProfileList")
    profiles.value("ProfilesDirectory", REG_EXPAND_SZ, sz("%SystemDrive%\\Users"))
    profiles.value("Default", REG_EXPAND_SZ, sz("%SystemDrive%\\Users\\Default"))
    profiles.value("Public", REG_EXPAND_SZ, sz("%SystemDrive%\\Users\\Public"))
    system_profile = profiles.key("S-1-5-18")
    system_profile.value("ProfileImagePath", REG_EXPAND_SZ,
                         sz("%systemroot%\\system32\\config\\systemprofile"))
    system_profile.value("Flags", REG_DWORD, dword(12))
    for sid, user in ((ALICE_SID, "alice"), (BOB_SID, "bob")):
        profile = profiles.key(sid)
        profile.value("ProfileImagePath", REG_EXPAND_SZ, sz(f"C:\\Users\\{user}"))
        profile.value("Flags", REG_DWORD, dword(0))
        profile.value("State", REG_DWORD, dword(0))
        profile.value("Sid", REG_BINARY, sid_bytes(sid))
    oid = "Microsoft\\Cryptography\\OID\\EncodingType 0\\"
    guid = "\\{C689AAB8-8E78-11D0-8C47-00C04FC295EE}"
    for prefix in ("", "WOW6432Node\\"):
        sip = b.key(prefix + SIP_REMOVE_C689)
        sip.value("Dll", REG_SZ, sz("WINTRUST.DLL"))
        sip.value("FuncName", REG_SZ, sz("CryptSIPRemoveSignedDataMsg"))
    get = b.key(oid + "CryptSIPDllGetSignedDataMsg" + guid)
    get.value("Dll", REG_SZ, sz("WINTRUST.DLL"))
    get.value("FuncName", REG_SZ, sz("CryptSIPGetSignedDataMsg"))
    b.key("Microsoft\\Cryptography\\OID\\EncodingType 1")
    b.key(WOW_RUN, last_write=RUN_TIME).value(
        "OldUpdater", REG_SZ, sz("\"C:\\Program Files (x86)\\Updater\\upd.exe\" /silent"))
    notepad = b.key("Microsoft\\Notepad")
    notepad.value("fWrap", REG_DWORD, dword(0))
    notepad.value("iPointSize", REG_DWORD, dword(110))
    notepad.value("lfFaceName", REG_SZ, sz("Consolas"))
    return b


def _security_hive() -> HiveBuilder:
    b = _hive("SECURITY", SD_KEY_SECURITY)
    b.key("Policy\\PolAdtEv").value("", REG_NONE, bytes(range(0, 96, 4)))
    for secret in ("DPAPI_SYSTEM", "NL$KM"):
        for current in ("CurrVal", "OldVal"):
            blob = hashlib.sha256(f"{secret}\\{current}".encode()).digest() * 2
            b.key(f"{SECRETS}\\{secret}\\{current}").value("", REG_NONE, blob)
    b.key("RXACT").value("", REG_NONE, bytes(12))
    b.key("Cache")
    return b


def _sam_hive() -> HiveBuilder:
    b = _hive("SAM", SD_KEY_SECURITY)
    users = b.key("SAM\\Domains\\Account\\Users")
    users.key("000001F4").value("F", REG_BINARY, bytes(72) + struct.pack("<I", 0x1F4) + bytes(4))
    for name, rid in (("Administrator", 0x1F4), ("alice", 0x3E9), ("bob", 0x3EA)):
        users.key(f"Names\\{name}").value("", rid, b"")  # the value type is the RID
    b.key("SAM\\Domains\\Builtin")
    return b


def _default_hive() -> HiveBuilder:
    b = _hive("DEFAULT")
    b.key("Control Panel\\Desktop").value("ScreenSaveActive", REG_SZ, sz("1"))
    b.key("Software\\" + RUN)
    return b


def _user_hive(user: str, run_name: str, run_cmd: str) -> HiveBuilder:
    b = _hive("NTUSER.DAT")
    b.key("Software\\" + RUN, last_write=RUN_TIME).value(run_name, REG_SZ, sz(run_cmd))
    env = b.key("Environment")
    env.value("TEMP", REG_EXPAND_SZ, sz("%USERPROFILE%\\AppData\\Local\\Temp"))
    env.value("TMP", REG_EXPAND_SZ, sz("%USERPROFILE%\\AppData\\Local\\Temp"))
    b.key("Control Panel\\Desktop").value("Wallpaper", REG_SZ,
                                          sz(f"C:\\Users\\{user}\\Pictures\\bg.jpg"))
    return b


def _bcd_hive() -> bytes:
    b = HiveBuilder("NewStoreRoot", timestamp=HIVE_TIME, hive_name="BCD")
    desc = b.key("Description")
    desc.value("KeyName", REG_SZ, sz("BCD00000000"))
    desc.value("System", REG_DWORD, dword(1))
    desc.value("TreatAsSystem", REG_DWORD, dword(1))
    bootmgr = "Objects\\{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
    b.key(bootmgr + "\\Description").value("Type", REG_DWORD, dword(0x10100002))
    b.key(bootmgr + "\\Elements\\12000004").value("Element", REG_SZ, sz("Windows Boot Manager"))
    return b.build()


# -- the base layout --------------------------------------------------------------------------

def base_layout() -> WindowsLayout:
    """A small Windows 10 system volume, always the same: the monitored files of the
    recommended policy (boot.ini, Windows\\{explorer,regedit}.exe, {win,system}.ini,
    System32\\userinit.exe, msseces.exe), the five machine hives, alice's and bob's profiles
    with NTUSER.DAT, every hive with empty ``.LOG1``/``.LOG2`` files, a few unmonitored files,
    an ADS, a hard link, a junction; every entry with explicit times, descriptor and
    attributes except ``Windows/Temp/x.tmp`` and the junction (libntfs-3g defaults)."""
    def os_file(data: bytes, security: bytes = SD_OS_FILE, **extra: Any) -> File:
        return File(data, times=T_OS, security=security, dos_attributes=FILE_ATTRIBUTE_ARCHIVE,
                    **extra)

    files: dict[str, Entry] = {
        "boot.ini": File(BOOT_INI, times=T_OS, security=SD_ADMIN_FILE,
                         dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM
                         | FILE_ATTRIBUTE_ARCHIVE),
        "Windows/explorer.exe": os_file(fake_pe("explorer.exe", 12288)),
        "Windows/regedit.exe": os_file(fake_pe("regedit.exe", 400)),
        "Windows/win.ini": os_file(WIN_INI),
        "Windows/system.ini": os_file(SYSTEM_INI),
        "Windows/System32/userinit.exe": os_file(
            fake_pe("userinit.exe", 3072),
            links=("Windows/WinSxS/amd64_microsoft-windows-userinit_31bf3856ad364e35_"
                   "10.0.19041.1_none_c2a8f3e4b5d6e7f8/userinit.exe",)),
        "Windows/System32/drivers/etc/hosts": os_file(HOSTS),
        "Program Files/Microsoft Security Client/msseces.exe": os_file(
            fake_pe("msseces.exe", 2048), SD_ADMIN_FILE,
            streams={"Zone.Identifier": ZONE_IDENTIFIER}),
        "Windows/Temp/x.tmp": File(b"scratch\r\n", times=T_USER),  # libntfs-3g defaults
        "Documents and Settings": Junction("C:\\Users", times=T_DIR),
    }
    hidden_system = FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM | FILE_ATTRIBUTE_ARCHIVE
    for path in MACHINE_HIVES:
        files[path] = File(times=T_HIVE, security=SD_HIVE, dos_attributes=FILE_ATTRIBUTE_ARCHIVE)
        for log in (".LOG1", ".LOG2"):  # empty: nothing to replay while the hive is clean
            files[path + log] = File(times=T_HIVE, security=SD_HIVE, dos_attributes=hidden_system)
    for user, sid in (("alice", ALICE_SID), ("bob", BOB_SID)):
        files[f"Users/{user}"] = Dir(times=T_USER, security=sd_user_dir(sid))
        files[f"Users/{user}/NTUSER.DAT"] = File(
            times=T_USER, security=sd_user_file(sid),
            dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_ARCHIVE)
        for log in (".LOG1", ".LOG2"):
            files[f"Users/{user}/NTUSER.DAT{log}"] = File(
                times=T_USER, security=sd_user_file(sid), dos_attributes=hidden_system)
    alice = sd_user_file(ALICE_SID)
    files["Users/alice/Desktop/notes.txt"] = File(b"buy milk\r\n", times=T_USER, security=alice,
                                                  dos_attributes=FILE_ATTRIBUTE_ARCHIVE)
    files["Users/alice/Desktop/desktop.ini"] = File(
        DESKTOP_INI, times=T_USER, security=alice,
        dos_attributes=hidden_system)
    files["Users/alice/Downloads/tool.exe"] = File(
        fake_pe("tool.exe", 1024), streams={"Zone.Identifier": DOWNLOAD_ZONE}, times=T_USER,
        security=alice, dos_attributes=FILE_ATTRIBUTE_ARCHIVE)
    # every directory explicit: known times and descriptor (profile trees owned by the user)
    links = [link for e in files.values() if isinstance(e, File) for link in e.links]
    for path in [*files, *links]:
        parts = path.split("/")
        for n in range(len(parts) - 1, -1, -1):
            parent = "/".join(parts[:n])
            if parent in files or parent in links:
                continue
            owner = parts[1] if parts[0] == "Users" and n >= 2 else ""
            owner_sid = {"alice": ALICE_SID, "bob": BOB_SID}.get(owner)
            files[parent] = Dir(times=T_USER if owner_sid else T_DIR,
                                security=sd_user_dir(owner_sid) if owner_sid else SD_DIR)
    hives = {
        SYSTEM: _system_hive(), SOFTWARE: _software_hive(), SECURITY: _security_hive(),
        SAM: _sam_hive(), DEFAULT: _default_hive(),
        ALICE_NTUSER: _user_hive(
            "alice", "OneDrive",
            "\"C:\\Users\\alice\\AppData\\Local\\Microsoft\\OneDrive\\OneDrive.exe\" /background"),
        BOB_NTUSER: _user_hive("bob", "Discord",
                               "C:\\Users\\bob\\AppData\\Local\\Discord\\Update.exe "
                               "--processStart Discord.exe"),
    }
    bcd = _bcd_hive()
    bootmgfw = fake_pe("bootmgfw.efi", 4096)
    return WindowsLayout(
        files=dict(sorted(files.items())), hives=hives,
        esp_files={"EFI/Boot/bootx64.efi": bootmgfw, "EFI/Microsoft/Boot/bootmgfw.efi": bootmgfw,
                   "EFI/Microsoft/Boot/BCD": bcd},
        system_reserved_files={"bootmgr": fake_pe("bootmgr", 4096), "Boot/BCD": bcd})


# -- building ---------------------------------------------------------------------------------

def partition_offsets(table: str) -> dict[str, int]:
    """Byte offsets of the partitions :func:`build_windows_image` makes for ``table``:
    ``{"esp": ..., "system": ...}`` (gpt), ``{"reserved": ..., "system": ...}`` (mbr),
    ``{"system": 0}`` (none)."""
    if table == "gpt":
        return {"esp": _FIRST * SECTOR, "system": _FIRST * SECTOR + ESP_SIZE_MB * MIB}
    if table == "mbr":
        return {"reserved": _FIRST * SECTOR,
                "system": _FIRST * SECTOR + SYSTEM_RESERVED_SIZE_MB * MIB}
    if table == "none":
        return {"system": 0}
    raise ValueError(f"table must be gpt, mbr or none, not {table!r}")


def system_volume_offset(table: str) -> int:
    """Byte offset of the NTFS system volume in a :func:`build_windows_image` disk."""
    return partition_offsets(table)["system"]


def _scratch_dir() -> str | None:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _set_ntfs_serial(image: Path, offset: int, size: int, serial: int) -> None:
    """Set the volume serial in the boot sector and its backup (the volume's last sector)."""
    with image.open("r+b") as fh:
        for at in (offset, offset + size - SECTOR):
            fh.seek(at)
            boot = fh.read(SECTOR)
            if boot[3:11] != b"NTFS    ":
                raise ValueError(f"{image}: no NTFS boot sector at {at}")
            fh.seek(at + 0x48)
            fh.write(struct.pack("<Q", serial))


def _build_fat(disk: Path, offset: int, size_mb: int, files: Mapping[str, bytes]) -> None:
    """A FAT12 volume holding ``files`` (mtimes T_OS), embedded in ``disk`` at ``offset``."""
    when = T_OS[1] // 10**9
    with tempfile.TemporaryDirectory(dir=_scratch_dir()) as tmp:
        fat = Path(tmp) / "esp.img"
        with fat.open("wb") as fh:
            fh.truncate(size_mb * MIB)
        run("mkfs.vfat", "-F", "12", "--invariant", "-i", f"{FAT_VOLUME_ID:08X}", "-n", "SYSTEM",
            "-h", str(offset // SECTOR), fat)
        src = Path(tmp) / "src"
        for rel, data in files.items():
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for path in sorted(src.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            os.utime(path, (when, when))
        if files:
            _run_env("mcopy", "-s", "-p", "-m", "-i", fat, *sorted(src.iterdir()), "::/",
                     env={"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"})
        embed(disk, offset, fat)


def _zero_slack(buf: bytearray, start: int, end: int) -> None:
    """Zero ``buf[start:end]`` except the update-sequence words ending each 512-byte sector
    (records are stored with their fixups applied)."""
    for pos in range(start, end):
        if pos % SECTOR not in (SECTOR - 2, SECTOR - 1):
            buf[pos] = 0


def _scrub_ntfs_slack(disk: Path, offset: int) -> None:
    """Zero the unused tail of every MFT record and INDX block of the volume at ``offset``.

    libntfs-3g leaves stale bytes there: when a directory's resident index moves to an index
    block, the old entries (with the wall-clock times ``ntfs_create`` gave them, before
    tests.imaging.ntfs pins the times) stay after the record's end marker. No reader looks at
    them, but they make two builds differ."""
    import pytsk3  # test dependency; imported here so the module imports without it

    fs = pytsk3.FS_Info(pytsk3.Img_Info(os.fspath(disk)), offset=offset)
    cluster = fs.info.block_size

    def runs(inode: int, atype: int) -> list[tuple[int, int]]:
        return [(int(r.addr), int(r.len)) for a in fs.open_meta(inode=inode)
                if int(a.info.type) == atype for r in a if r.len]

    with disk.open("r+b") as fh:
        directories = []
        for addr, length in runs(0, 0x80):  # $MFT
            fh.seek(offset + addr * cluster)
            area = bytearray(fh.read(length * cluster))
            for rec in range(0, len(area), 1024):
                if area[rec:rec + 4] != b"FILE":
                    continue
                used, allocated = struct.unpack_from("<II", area, rec + 0x18)
                _zero_slack(area, rec + used, rec + min(allocated, 1024))
                number = struct.unpack_from("<I", area, rec + 0x2C)[0]
                if struct.unpack_from("<H", area, rec + 0x16)[0] & 0x3 == 0x3:  # directory in use
                    directories.append(number)
            fh.seek(offset + addr * cluster)
            fh.write(area)
        for number in directories:
            for addr, length in runs(number, 0xA0):  # $INDEX_ALLOCATION
                fh.seek(offset + addr * cluster)
                area = bytearray(fh.read(length * cluster))
                for block in range(0, len(area), 4096):
                    if area[block:block + 4] != b"INDX":
                        continue
                    used, allocated = struct.unpack_from("<II", area, block + 0x1C)
                    _zero_slack(area, block + 0x18 + used,
                                block + 0x18 + min(allocated, 4096 - 0x18))
                fh.seek(offset + addr * cluster)
                fh.write(area)


def _ntfs_volume(disk: Path, tree: Mapping[str, Entry], *, offset: int, size_mb: int,
                 label: str, serial: int) -> None:
    build_ntfs_tree(disk, tree, size_mb=size_mb, offset=offset, label=label)
    _scrub_ntfs_slack(disk, offset)
    _set_ntfs_serial(disk, offset, size_mb * MIB, serial)


def build_windows_image(path: Path, layout: WindowsLayout, *, table: str = "gpt",
                        ntfs_size_mb: int = NTFS_SIZE_MB) -> Path:
    """Write a Windows disk image for ``layout`` to ``path`` (overwritten) and return it.

    ``table``: ``"gpt"`` (ESP then system volume), ``"mbr"`` (System Reserved NTFS, bootable,
    then system volume) or ``"none"`` (the bare system volume); offsets from
    :func:`partition_offsets`. The system volume is ``ntfs_size_mb`` MiB, labelled
    ``layout.label``, with serial ``layout.serial``. Deterministic: same layout, same bytes.

    MFT record numbers (what pytsk3 gives as inode numbers) follow tests.imaging.ntfs's
    creation order, the sorted paths: changing content, metadata or hives keeps every
    number, while adding or removing an entry renumbers every entry sorted after it (e.g. all
    of ``Windows/*.exe``, ``*.ini`` and ``boot.ini`` for a new ``Windows/Temp/evil.exe``),
    which a real NTFS volume would not do.
    """
    path = Path(path)
    offsets = partition_offsets(table)
    tree = ntfs_tree(layout)
    system = offsets["system"]
    if path.exists():
        path.unlink()
    if table == "none":
        _ntfs_volume(path, tree, offset=0, size_mb=ntfs_size_mb, label=layout.label,
                     serial=layout.serial)
        return path
    size = system + ntfs_size_mb * MIB + (MIB if table == "gpt" else 0)
    with path.open("wb") as fh:
        fh.truncate(size)
    if table == "gpt":
        script = (f"label: gpt\nlabel-id: {DISK_GUID}\n"
                  f"start={_FIRST}, size={ESP_SIZE_MB}MiB, type={_GPT_ESP}, uuid={_ESP_GUID}, "
                  "name=\"EFI system partition\"\n"
                  f"start={system // SECTOR}, size={ntfs_size_mb}MiB, type={_GPT_BASIC_DATA}, "
                  f"uuid={_DATA_GUID}, name=\"Basic data partition\"\n")
        _partition(path, script)
        _build_fat(path, offsets["esp"], ESP_SIZE_MB, layout.esp_files)
    else:
        script = (f"label: dos\nlabel-id: 0x{MBR_DISK_ID:08x}\n"
                  f"start={_FIRST}, size={SYSTEM_RESERVED_SIZE_MB}MiB, type=7, bootable\n"
                  f"start={system // SECTOR}, size={ntfs_size_mb}MiB, type=7\n")
        _partition(path, script)
        reserved: dict[str, Entry] = {
            "": Dir(times=T_DIR, security=SD_DIR),
            **{rel: File(data, times=T_OS, security=SD_OS_FILE,
                         dos_attributes=FILE_ATTRIBUTE_HIDDEN | FILE_ATTRIBUTE_SYSTEM
                         | FILE_ATTRIBUTE_READONLY | FILE_ATTRIBUTE_ARCHIVE)
               for rel, data in layout.system_reserved_files.items()}}
        for rel in list(reserved):
            parent = rel.rpartition("/")[0]
            if parent and parent not in reserved:
                reserved[parent] = Dir(times=T_DIR, security=SD_DIR)
        _ntfs_volume(path, reserved, offset=offsets["reserved"], size_mb=SYSTEM_RESERVED_SIZE_MB,
                     label="System Reserved", serial=SYSTEM_RESERVED_SERIAL)
    _ntfs_volume(path, tree, offset=system, size_mb=ntfs_size_mb, label=layout.label,
                 serial=layout.serial)
    return path

