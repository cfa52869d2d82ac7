"""Windows services and installed software, from the hives of the installation: services
from ``SYSTEM\\<CurrentControlSet>\\Services`` (display name, start type, ``ImagePath``,
service account ``ObjectName``, type), software from the ``Uninstall`` keys of ``SOFTWARE``
(64-bit and ``WOW6432Node``) and of each user's ``NTUSER.DAT`` (per-user installs).

The machine hives the registry collection read are reused (not read again); a hive that
cannot be read, or that is dirty and could not be replayed in full, makes its source
unreadable (the previous services or software are kept, never "removed").
"""

from __future__ import annotations

import struct

from scanner.changetracking.model import (
    MAX_ITEMS_PER_SOURCE,
    SERVICE,
    SOFTWARE,
    Inventory,
    InventoryEntity,
    clip,
    item_id,
)
from scanner.disk.nodes import FileKind
from scanner.disk.walker import Mount, Walker
from scanner.errors import DiskError, HiveError, SourceReadError
from scanner.limits import Limits
from scanner.registry.controlset import resolve_current_control_set
from scanner.registry.hive import REG_DWORD, REG_EXPAND_SZ, REG_SZ, Hive, RegKey
from scanner.systems.windows import WindowsSystem
from scanner.systems.windows_install import windows_name
from scanner.systems.windows_registry import open_hive_file, system_hive_path

UNINSTALL = "Microsoft\\Windows\\CurrentVersion\\Uninstall"
WOW_UNINSTALL = "WOW6432Node\\" + UNINSTALL
USER_UNINSTALL = "Software\\" + UNINSTALL
START_TYPES = {0: "boot", 1: "system", 2: "automatic", 3: "manual", 4: "disabled"}
_TYPES = {1: "kernel-driver", 2: "filesystem-driver", 0x10: "own-process",
          0x20: "share-process", 0x50: "user-own-process", 0x60: "user-share-process"}
_UNTRUSTED = ("dirty-not-replayed", "replay-incomplete")
_ERRORS = (DiskError, SourceReadError, HiveError)


UNREADABLE = "<unreadable>"


def _values(hive: Hive, key: RegKey) -> dict[str, str | int]:
    """The string and DWORD values of a key, by lower-case name (text bounded); a value
    that cannot be read is :data:`UNREADABLE` (never left out: that would be a change)."""
    out: dict[str, str | int] = {}
    for value in hive.values(key):
        if value.error is not None:
            out[value.name.lower()] = UNREADABLE
            continue
        if value.type in (REG_SZ, REG_EXPAND_SZ):
            text = value.data.decode("utf-16-le", "surrogatepass").split("\0", 1)[0]
            out[value.name.lower()] = clip(text)
        elif value.type == REG_DWORD and len(value.data) == 4:
            out[value.name.lower()] = struct.unpack("<I", value.data)[0]
    return out


def collect_windows(system: WindowsSystem, inventory: Inventory, limits: Limits) -> None:
    """The services and installed software of a Windows installation, into ``inventory``."""
    volume = system.system_volume
    walker = Walker([Mount("/", volume.fs, volume.label)], limits=limits)
    config = f"{system.install.windows_dir}/System32/config"
    for source, path, reader in (
            ("windows-service", system_hive_path(system.install), _services),
            ("windows-uninstall", f"{config}/SOFTWARE", _uninstall)):
        seen = set(walker.result.unreadable)
        try:
            hive = _trusted(system.hives.get(path) or open_hive_file(walker, path, limits),
                            source, path, inventory)
            if hive is not None:
                reader(hive, inventory)
        except _ERRORS as exc:
            inventory.fail(source, f"hive {path}: {exc}", windows_name(path))
            continue
        _fail_if_unresolved(walker, seen, source, inventory)
    try:
        _users(walker, inventory, limits)
    except _ERRORS as exc:
        inventory.fail("windows-user-uninstall", f"user hives: {exc}", "C:\\Users")


def _fail_if_unresolved(walker: Walker, seen: set[str], source: str,
                        inventory: Inventory) -> bool:
    """A hive path the walker could not resolve (a damaged directory, a name two entries
    claim) makes ``source`` unreadable (kept), never absent; True when it did."""
    new = sorted(set(walker.result.unreadable) - seen)
    if new:
        inventory.fail(source, f"{new[0]} cannot be read ({walker.result.unreadable[new[0]]})",
                       windows_name(new[0]))
    return bool(new)


def _trusted(hive: Hive | None, source: str, path: str, inventory: Inventory) -> Hive | None:
    """``hive`` when it can be read as the source's whole truth; None when missing, or when
    dirty and not replayed in full (then the source is unreadable: its state is kept)."""
    if hive is None:
        return None
    inventory.sources.add(source)
    if hive.status in _UNTRUSTED:
        inventory.fail(source, f"hive {path} is {hive.status}", windows_name(path))
        return None
    return hive


def _services(hive: Hive, inventory: Inventory) -> None:
    services = hive.find(resolve_current_control_set(hive) + "\\Services")
    if services is None:
        return
    for key in hive.subkeys(services)[:MAX_ITEMS_PER_SOURCE]:
        values = _values(hive, key)
        if "type" not in values and "imagepath" not in values:
            continue  # a key of parameters, no service
        kind, start = values.get("type"), values.get("start")
        detail = {
            "display_name": values.get("displayname"),
            "start_type": START_TYPES.get(start, str(start)) if isinstance(start, int)
            else None,
            "image_path": values.get("imagepath"),
            "account": values.get("objectname"),
            "type": _TYPES.get(kind, f"0x{kind:x}") if isinstance(kind, int) else None,
        }
        _note_unreadable(values, item_id("windows-service", key.name), inventory)
        inventory.add(InventoryEntity(
            item_id("windows-service", key.name), SERVICE, key.name, "windows-service",
            detail={k: v for k, v in detail.items() if v is not None},
            policies=("windows-service",)))


def _note_unreadable(values: dict[str, str | int], ident: str, inventory: Inventory) -> None:
    """An item with a value that cannot be read (kept as :data:`UNREADABLE`) is named in the
    coverage: the scan is partial."""
    bad = sorted(k for k, v in values.items() if v == UNREADABLE)
    if bad:
        inventory.unread(ident, f"value {bad[0]} cannot be read")


def _uninstall(hive: Hive, inventory: Inventory) -> None:
    for path, arch in ((UNINSTALL, None), (WOW_UNINSTALL, "x86")):
        _entries(hive, path, arch, "windows-uninstall", "", inventory)


def _entries(hive: Hive, path: str, arch: str | None, source: str, owner: str,
             inventory: Inventory) -> None:
    parent = hive.find(path)
    if parent is None:
        return
    for key in hive.subkeys(parent)[:MAX_ITEMS_PER_SOURCE]:
        values = _values(hive, key)
        name = values.get("displayname")
        if not isinstance(name, str) or not name:
            continue  # updates and components without a name are not listed as software
        version = values.get("displayversion")
        detail = {k: values[v] for k, v in (("publisher", "publisher"),
                                            ("install_location", "installlocation"))
                  if isinstance(values.get(v), str) and values[v]}
        if owner:
            detail["user"] = owner
        ident = item_id(source, f"{owner}\\{key.name}" if owner else key.name, arch)
        _note_unreadable(values, ident, inventory)
        inventory.add(InventoryEntity(ident, SOFTWARE, name, source,
                                      version if isinstance(version, str) else None, arch,
                                      detail=detail, policies=(source,)))


def _users(walker: Walker, inventory: Inventory, limits: Limits) -> None:
    """Per-user installs: each profile's NTUSER.DAT, read one at a time."""
    users = walker.resolve("/Users", follow_last=True)
    if users is None or users[1].kind is not FileKind.DIRECTORY:
        return
    source = "windows-user-uninstall"
    profiles = sorted(c.name for c in users[2].fs.children(users[1])
                      if c.kind is FileKind.DIRECTORY)
    for user in profiles[:10_000]:
        path = f"{users[0]}/{user}/NTUSER.DAT"
        seen = set(walker.result.unreadable)
        within = item_id(source, user)
        try:
            hive = open_hive_file(walker, path, limits)
        except _ERRORS as exc:  # this user's installs are kept; the others are read
            inventory.sources.add(source)
            inventory.read_in_part(source, f"hive {path}: {exc}", windows_name(path), within)
            continue
        new = sorted(set(walker.result.unreadable) - seen)
        if new:  # not resolved (a damaged profile): unreadable, not "no hive"
            inventory.sources.add(source)
            inventory.read_in_part(source, f"{new[0]} cannot be read "
                                   f"({walker.result.unreadable[new[0]]})",
                                   windows_name(new[0]), within)
            continue
        if hive is None:
            continue
        inventory.sources.add(source)
        if hive.status in _UNTRUSTED:
            inventory.read_in_part(source, f"hive {path} is {hive.status}",
                                   windows_name(path), within)
        try:
            _entries(hive, USER_UNINSTALL, None, source, user, inventory)
        except HiveError as exc:  # a damaged key of this user's: the others are read
            inventory.read_in_part(source, f"hive {path}: {exc}", windows_name(path), within)
