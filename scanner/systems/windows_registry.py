"""The registry of a Windows installation: which hives to read, reading them (with their
transaction logs), and the registry entities of the policy they hold.

SYSTEM, SOFTWARE, SECURITY, SAM and DEFAULT under ``System32\\config`` are mounted at
``HKLM\\<name>`` (DEFAULT at ``HKU\\.DEFAULT``), each user's ``NTUSER.DAT`` under
``Users\\<user>`` at ``HKU\\<user>``; a dirty hive is replayed from its ``.LOG1``/``.LOG2``.
A hive that cannot be read marks its whole mount unreadable (its state is kept, never
"removed"); a dirty hive read without replay makes the scan partial, and what its primary
lacks is kept too (the logs may hold it), while additions and modifications are reported.
The same holds for a hive replayed only in part (a log refused, a damaged entry of the
flush, a gap between the logs: status ``replay-incomplete``) and for a replayed hive with
keys or values that cannot be read: a torn replay leaves it part old, part new.
"""

from __future__ import annotations

from collections.abc import Mapping

from scanner.collectors.registry import collect, hive_tag, reaches
from scanner.coverage import Coverage, HiveReport
from scanner.disk.nodes import FileKind
from scanner.disk.walker import Walker
from scanner.entities import RegistryEntity, RegistryKeyEntity
from scanner.errors import DiskError, HiveError, SourceReadError
from scanner.limits import Limits
from scanner.policy import EntityKind, PolicyEntity, active
from scanner.registry.hive import Hive
from scanner.registry.replay import open_hive
from scanner.registry.unchanged import UnchangedHives
from scanner.systems.windows_install import WindowsInstall, windows_name

MACHINE_HIVES = (("SYSTEM", "HKLM\\SYSTEM"), ("SOFTWARE", "HKLM\\SOFTWARE"),
                 ("SECURITY", "HKLM\\SECURITY"), ("SAM", "HKLM\\SAM"),
                 ("DEFAULT", "HKU\\.DEFAULT"))
MAX_HIVE_BYTES = 2 << 30  # Windows caps a hive at 2 GiB
UNCHANGED = "unchanged since the last scan: not walked, its stored state is kept"


def _read_file(walker: Walker, path: str, max_bytes: int = MAX_HIVE_BYTES) -> bytes | None:
    """Content of a file on the system volume (at most ``max_bytes``); None when it does not
    exist. Raises DiskError / SourceReadError when it exists but cannot be read."""
    found = walker.resolve(path, follow_last=True)
    if found is None or found[1].kind is not FileKind.FILE:
        return None
    node, mount = found[1], found[2]
    if node.size > max_bytes:
        raise HiveError(f"{node.size} bytes: larger than {max_bytes}, the bound for this file")
    return b"".join(mount.fs.iter_content(node))


def open_hive_file(walker: Walker, path: str, limits: Limits | None = None) -> Hive | None:
    """The hive file at ``path`` (posix, on the system volume), replayed from its
    ``.LOG1``/``.LOG2`` when dirty (see :func:`scanner.collectors.registry.open_hive`); None
    when the file does not exist.

    Raises:
        HiveError, DiskError, SourceReadError: it exists but cannot be read as a hive.
    """
    data = _read_file(walker, path)
    if data is None:
        return None
    log_bytes = (limits or Limits()).log_pages * 4096 + (1 << 20)  # pages + headers
    logs = [_read_optional(walker, f"{path}.{suffix}", log_bytes) for suffix in ("LOG1", "LOG2")]
    return open_hive(data, log1=logs[0], log2=logs[1], limits=limits)


def system_hive_path(install: WindowsInstall) -> str:
    """The posix path of the SYSTEM hive file of ``install``."""
    return f"{install.windows_dir}/System32/config/SYSTEM"


def _hive_files(walker: Walker, system: WindowsInstall, want_users: bool,
                notes: list[str] | None = None) -> list[tuple[str, str, str, bool]]:
    """(report name, posix path, mount prefix, required) of each hive to read. One hive
    file per mount (the state and the hive skip keep one digest per mount): a profile
    folder whose name would mount its NTUSER.DAT where a machine hive is
    (``C:\\Users\\.DEFAULT`` over the DEFAULT hive, which Windows mounts there) is not
    read, and named in ``notes``. Names differing in case are different mounts, each read
    (no folder can make another profile's hive go unread)."""
    config = f"{system.windows_dir}/System32/config"
    hives = [(name, f"{config}/{name}", mount, True) for name, mount in MACHINE_HIVES]
    if want_users:
        users = walker.resolve("/Users", follow_last=True)
        if users is not None and users[1].kind is FileKind.DIRECTORY:
            profiles = sorted(c.name for c in users[2].fs.children(users[1])
                              if c.kind is FileKind.DIRECTORY)
            mounts = {mount for _, _, mount, _ in hives}
            for user in profiles:
                path, mount = f"{users[0]}/{user}/NTUSER.DAT", f"HKU\\{user}"
                if mount in mounts:
                    if notes is not None:
                        notes.append(f"{windows_name(path)} not read: {mount} is another "
                                     "hive's mount")
                    continue
                mounts.add(mount)
                hives.append((f"NTUSER.DAT ({user})", path, mount, False))
    return hives


def collect_registry(walker: Walker, system: WindowsInstall, policy: list[PolicyEntity],
                     coverage: Coverage, limits: Limits | None = None,
                     opened: Mapping[str, Hive] | None = None,
                     unchanged: UnchangedHives | None = None,
                     ) -> tuple[dict[str, RegistryEntity], list[str]]:
    """Read every hive an enabled registry entity reaches and collect its keys and values
    (within ``limits``: a value, subkey list or log beyond a bound is listed as unreadable).
    ``opened``: hives read already, by the posix path of their file (not read again); when
    a dict, the machine hives read here are added to it. ``unchanged``: the hives whose
    stored state was read from the same digest are not walked (recorded there; their
    reports carry the stored counts).

    Returns the entities by id and the names of the registry entities scanned. Hive reports
    go to ``coverage.hives``; unreadable hives and keys to ``coverage.unreadable``.
    """
    entities = active(policy, EntityKind.WINDOWS_REGISTRY)
    if not entities:
        return {}, []
    want_users = any(reaches(e.path, "HKU") for e in entities)
    out: dict[str, RegistryEntity] = {}
    try:
        hive_files = _hive_files(walker, system, want_users, coverage.notes)
    except (DiskError, SourceReadError) as exc:
        coverage.unreadable["HKU"] = f"cannot list C:\\Users: {exc}"
        hive_files = _hive_files(walker, system, False)
    for name, path, mount, required in hive_files:
        if not any(reaches(e.path, mount) for e in entities):
            continue
        report = HiveReport(name, windows_name(path), mount)
        coverage.hives.append(report)
        try:
            hive = (opened or {}).get(path) or open_hive_file(walker, path, limits)
            if isinstance(opened, dict) and hive is not None and required:
                opened[path] = hive  # machine hives: kept for the inventory (users' are not)
            if hive is None:
                report.status = "missing"
                if required:
                    report.reason = "hive file not found"
                    coverage.unreadable[mount] = f"hive {windows_name(path)} not found"
                continue
            kept = None if unchanged is None else unchanged.skip(hive_tag(hive, mount, entities))
            if kept is not None:
                report.status, report.keys, report.values = hive.status, kept.keys, kept.values
                report.reason = "; ".join(filter(None, (hive.status_reason, UNCHANGED)))
                continue
            found, unreadable = collect(hive, mount, entities)
        except (DiskError, SourceReadError, HiveError) as exc:
            report.status, report.reason = "failed", str(exc)
            coverage.unreadable[mount] = f"hive {windows_name(path)}: {exc}"
            continue
        report.status, report.reason = hive.status, hive.status_reason or None
        if hive.status == "dirty-not-replayed":
            # The primary misses what only the logs hold: what it lacks is not "removed".
            coverage.unreadable[mount] = (f"hive {windows_name(path)} is dirty and was read "
                                          f"without its logs ({hive.status_reason}): "
                                          "removals under it are not trusted")
        elif hive.status == "replay-incomplete":
            # Part of the flush was not replayed: the hive is part old, part new.
            coverage.unreadable[mount] = (f"hive {windows_name(path)} was replayed only in "
                                          f"part ({hive.status_reason}): removals under it "
                                          "are not trusted")
        elif hive.status == "replayed" and unreadable:
            # A replay that leaves keys unreadable wrote pages that do not fit together.
            coverage.unreadable[mount] = (f"hive {windows_name(path)} was replayed from its "
                                          f"logs and {len(unreadable)} of its keys or values "
                                          "cannot be read (a torn replay): removals under "
                                          "it are not trusted")
        report.keys = sum(1 for e in found.values() if isinstance(e, RegistryKeyEntity))
        report.values = len(found) - report.keys
        out.update(found)
        coverage.unreadable.update(unreadable)
    return out, [e.name for e in entities]


def _read_optional(walker: Walker, path: str, max_bytes: int) -> bytes | None:
    """A transaction log: None when missing, unreadable or larger than ``max_bytes`` (the
    hive is then read as is: a dirty one keeps the state under it)."""
    try:
        return _read_file(walker, path, max_bytes)
    except (DiskError, SourceReadError, HiveError):
        return None

