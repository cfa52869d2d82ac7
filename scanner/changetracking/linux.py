"""The software of a Linux root, from its package databases, read through the scan's mounts:
dpkg (``/var/lib/dpkg``), RPM as SQLite (``/var/lib/rpm/rpmdb.sqlite``) or else as Berkeley
DB (``Packages``; SUSE's ndb ``Packages.db`` is a coverage note: not supported) and apk
(``/lib/apk/db/installed``). A database that exists but cannot be read whole is an
unreadable path of the scan (partial; that source's previous state is kept, never
"removed"); damaged entries inside a readable one are skipped, and the source is then read
in part (the scan is partial, what it no longer lists is kept: the damaged entry may be it).
"""

from __future__ import annotations

import hashlib
from typing import Any

from scanner.changetracking import apk, dpkg, rpm
from scanner.changetracking.model import (
    MAX_PACKAGED_FILES,
    SOFTWARE,
    Inventory,
    InventoryEntity,
    PackagedFile,
    item_id,
)
from scanner.changetracking.parses import Parses
from scanner.changetracking.reading import (
    Canonical,
    Digested,
    ReadBudget,
    exists,
    fail_if_unreadable,
    list_entries,
    monitored_prefixes,
    read_digested,
    read_node,
)
from scanner.disk.nodes import FileKind
from scanner.disk.walker import Walker
from scanner.errors import DiskError, InventoryError, SourceReadError

DPKG_DIR = "/var/lib/dpkg"
DPKG_STATUS = f"{DPKG_DIR}/status"
RPM_SQLITE = "/var/lib/rpm/rpmdb.sqlite"
RPM_BDB = "/var/lib/rpm/Packages"
RPM_NDB = "/var/lib/rpm/Packages.db"
RPM_DATABASES = (RPM_SQLITE, RPM_BDB, RPM_NDB)  # the first one present is the database
APK_INSTALLED = "/lib/apk/db/installed"
_READ_ERRORS = (DiskError, SourceReadError, InventoryError)


def collect_software(walker: Walker, inventory: Inventory,
                     roots: tuple[str, ...] = ("/",), parses: Parses | None = None) -> None:
    """Every package database of the root ``walker`` walks, into ``inventory``; the file
    records kept are those under the monitored ``roots`` (only they can have events).
    ``parses``: the previous scan's parses, reused for database files whose bytes are the
    same (default: none); ``inventory.parses`` holds those of this scan."""
    parses = parses if parses is not None else inventory.parses or Parses()
    inventory.parses = parses
    canonical = Canonical(walker)
    canonical.prefixes = monitored_prefixes(roots, walker)
    for source, paths, reader in (("dpkg", (DPKG_STATUS,), _dpkg), ("rpm", RPM_DATABASES, _rpm),
                                  ("apk", (APK_INSTALLED,), _apk)):
        seen = set(walker.result.unreadable)
        path = paths[0]
        try:
            path = next((p for p in paths if exists(walker, p)), "")
            if not path:
                continue
            if path == RPM_NDB:  # not read: nothing recorded, the previous state kept
                inventory.notes.append(f"rpm: {RPM_NDB}: SUSE's ndb format, not supported")
                continue
            inventory.sources.add(source)
            skipped = reader(walker, inventory, canonical, parses)
        except _READ_ERRORS as exc:
            inventory.fail(source, str(exc), path)  # the database, named by its main file
            continue
        fail_if_unreadable(walker, seen, source, inventory)
        if skipped and source not in inventory.unreadable:
            inventory.read_in_part(source, f"{skipped} damaged package entries skipped", path)


def _check(inventory: Inventory) -> None:
    """The bound on packaged files (checked after each package's files)."""
    if len(inventory.files) > MAX_PACKAGED_FILES:
        raise InventoryError(f"more than {MAX_PACKAGED_FILES} packaged files: the bound")


def _dpkg(walker: Walker, inventory: Inventory, canonical: Canonical, parses: Parses) -> int:
    status = read_digested(walker, DPKG_STATUS, dpkg.MAX_STATUS_BYTES)
    if status is None:
        raise InventoryError("status is not a regular file")
    packages, skipped = _status(status, parses)
    listed = list_entries(walker, f"{DPKG_DIR}/info")  # ~4 files a package, 1 read
    info = {n.name: n.inode for n in (listed[0] if listed else ()) if n.kind is FileKind.FILE}
    budget = ReadBudget("dpkg")
    damaged = 0
    for package in packages:
        item = InventoryEntity(item_id("dpkg", package.name, package.architecture), SOFTWARE,
                               package.name, "dpkg", package.version, package.architecture,
                               policies=("dpkg",))
        name: str | None = f"{package.name}:{package.architecture}.md5sums"
        if name not in info:
            name = f"{package.name}.md5sums" if f"{package.name}.md5sums" in info else None
        digest = hashlib.sha256()
        sums: dict[str, str] = {}
        known = None  # the digest so far, when it is known
        if name is not None and listed is not None:
            node, path = listed[1].node_by_inode(info[name]), f"{DPKG_DIR}/info/{name}"
            if node.size > dpkg.MAX_MD5SUMS_BYTES:  # this package only: kept as it was
                inventory.read_in_part("dpkg", f"{node.size} bytes, larger than "
                                       f"{dpkg.MAX_MD5SUMS_BYTES}, the bound", path)
                continue
            raw = read_node(listed[1], node, dpkg.MAX_MD5SUMS_BYTES, budget, path)
            digest.update(raw)  # its SHA-256 so far is the md5sums file's: the parse's key
            known = digest.hexdigest()
            sums, bad = _md5sums(raw, known, canonical.prefixes, parses)
            damaged += bad
        if package.conffiles:
            for path, md5 in sorted(package.conffiles.items()):
                digest.update(f"\0{path} {md5}".encode("utf-8", "surrogateescape"))
            known = None
        item.digest = known or digest.hexdigest()
        inventory.add(item)
        if not sums and not package.conffiles:  # the file table and its bound unchanged
            continue
        files = inventory.files
        for path, md5 in sums.items():  # the first owner wins
            files.setdefault(canonical(path), PackagedFile(
                item.path, package.name, package.version, md5, "md5"))
        for path, md5 in package.conffiles.items():  # conffiles are not in md5sums
            files.setdefault(canonical(path), PackagedFile(
                item.path, package.name, package.version, md5 or None, "md5", True))
        _check(inventory)
    _note(inventory, "dpkg", damaged)
    return skipped


def _status(status: Digested, parses: Parses) -> tuple[list[dpkg.DpkgPackage], int]:
    """The parse of a status file (the previous one when its bytes are the same)."""
    return parses.reuse(
        parses.key("dpkg-status", status.sha256, ()),
        lambda: dpkg.parse_status(status.data()),
        lambda parsed: {"packages": [[p.name, p.version, p.architecture, p.status, p.conffiles]
                                     for p in parsed[0]], "skipped": parsed[1]},
        lambda kept: ([dpkg.DpkgPackage(str(n), v, a, str(s), dict(c)) for n, v, a, s, c
                       in kept["packages"]], int(kept["skipped"])))


def _md5sums(raw: bytes, sha256: str, prefixes: tuple[str, ...], parses: Parses
             ) -> tuple[dict[str, str], int]:
    """The parse of one md5sums file (the previous one when its bytes are the same)."""
    return parses.reuse(parses.key("dpkg-md5sums", sha256, prefixes),
                        lambda: dpkg.parse_md5sums(raw, prefixes), list, _sums)


def _sums(kept: Any) -> tuple[dict[str, str], int]:
    """A kept md5sums parse read back (read only: the inventory copies what it keeps)."""
    sums, bad = kept if isinstance(kept, list) and len(kept) == 2 else (None, None)
    if not isinstance(sums, dict) or not isinstance(bad, int):
        raise ValueError("not an md5sums parse")
    return sums, bad


def _rpm(walker: Walker, inventory: Inventory, canonical: Canonical, parses: Parses) -> int:
    if not exists(walker, RPM_SQLITE):  # Berkeley DB (RPM_DATABASES: it is present)
        data = read_digested(walker, RPM_BDB, rpm.MAX_RPMDB_BYTES)
        if data is None:
            raise InventoryError("Packages is not a regular file")
        packages, skipped = _rpmdb("rpm-bdb", data, None, canonical.prefixes, parses)
    else:
        data = read_digested(walker, RPM_SQLITE, rpm.MAX_RPMDB_BYTES)
        if data is None:
            raise InventoryError("rpmdb.sqlite is not a regular file")
        wal = read_digested(walker, RPM_SQLITE + "-wal", rpm.MAX_RPMDB_BYTES)  # not checkpointed
        packages, skipped = _rpmdb("rpm-sqlite", data, wal, canonical.prefixes, parses)
    for package in packages:
        item = InventoryEntity(item_id("rpm", package.name, package.architecture), SOFTWARE,
                               package.name, "rpm", package.version, package.architecture,
                               detail={"vendor": package.vendor} if package.vendor else {},
                               policies=("rpm",))
        item.digest = package.digest
        inventory.add(item)
        if not package.files:  # nothing monitored: the file table and its bound unchanged
            continue
        files = inventory.files
        wanted = canonical.prefixes
        for path, (file_digest, config) in package.files.items():
            if file_digest and path[1:].startswith(wanted):  # links, ghosts: no digest
                files.setdefault(canonical(path), PackagedFile(
                    item.path, package.name, package.version, file_digest, package.algorithm,
                    config))
        _check(inventory)
    return skipped


def _rpmdb(kind: str, data: Digested, wal: Digested | None, prefixes: tuple[str, ...],
           parses: Parses) -> tuple[list[rpm.RpmPackage], int]:
    """The parse of an rpmdb of ``kind`` (``rpm-sqlite`` with its WAL, or ``rpm-bdb``): the
    previous one when their bytes are the same."""
    digest = data.sha256
    if wal is not None and wal.size:
        digest += "+" + wal.sha256

    def parse() -> tuple[list[rpm.RpmPackage], int]:
        if kind == "rpm-bdb":  # imported here: dissect costs ~65 ms, only BDB rpmdbs need it
            from scanner.changetracking.rpm_bdb import read_bdb_rpmdb

            return read_bdb_rpmdb(data.data(), prefixes)
        return rpm.read_sqlite_rpmdb(data.data(), None if wal is None else wal.data(),
                                     prefixes)

    return parses.reuse(
        parses.key(kind, digest, prefixes),
        parse,
        lambda parsed: {"packages": [[p.name, p.version, p.architecture, p.vendor,
                                      p.algorithm, p.files, p.digest] for p in parsed[0]],
                        "skipped": parsed[1]},
        lambda kept: ([rpm.RpmPackage(str(n), v, a, o, str(g), {
            p: (str(d), bool(c)) for p, (d, c) in f.items()} if f else {}, str(h))
            for n, v, a, o, g, f, h in kept["packages"]], int(kept["skipped"])))


def _apk(walker: Walker, inventory: Inventory, canonical: Canonical, parses: Parses) -> int:
    data = read_digested(walker, APK_INSTALLED, apk.MAX_INSTALLED_BYTES)
    if data is None:
        raise InventoryError("installed is not a regular file")
    packages, skipped = _installed(data, canonical.prefixes, parses)
    for package, listed in packages:
        item = InventoryEntity(item_id("apk", package.name, package.architecture), SOFTWARE,
                               package.name, "apk", package.version, package.architecture,
                               detail={"origin": package.origin} if package.origin else {},
                               policies=("apk",))
        item.digest = listed
        inventory.add(item)
        if not package.files:  # nothing monitored: the file table and its bound unchanged
            continue
        files = inventory.files
        for path, sha1 in package.files.items():
            if sha1:
                files.setdefault(canonical(path), PackagedFile(
                    item.path, package.name, package.version, sha1, "sha1",
                    path.startswith("/etc/")))
        _check(inventory)
    return skipped


def _installed(data: Digested, prefixes: tuple[str, ...], parses: Parses
               ) -> tuple[list[tuple[apk.ApkPackage, str]], int]:
    """The packages of an apk ``installed`` file with the digest of all their file records,
    their files cut to those under ``prefixes`` (the previous parse when its bytes are the
    same)."""
    def parse() -> tuple[list[tuple[apk.ApkPackage, str]], int]:
        parsed, skipped = apk.parse_installed(data.data())
        packages = []
        for package in parsed:
            listed = "".join(f"\0{p} {d or ''}" for p, d in sorted(package.files.items()))
            digest = hashlib.sha256(listed.encode("utf-8", "surrogateescape")).hexdigest()
            package.files = {p: d for p, d in package.files.items()
                             if d and p[1:].startswith(prefixes)}
            packages.append((package, digest))
        return packages, skipped

    return parses.reuse(
        parses.key("apk-installed", data.sha256, prefixes), parse,
        lambda parsed: {"packages": [[p.name, p.version, p.architecture, p.origin, p.files, d]
                                     for p, d in parsed[0]], "skipped": parsed[1]},
        lambda kept: ([(apk.ApkPackage(str(n), v, a, o, dict(f)), str(d))
                       for n, v, a, o, f, d in kept["packages"]], int(kept["skipped"])))


def _note(inventory: Inventory, source: str, damaged: int) -> None:
    if damaged:
        inventory.notes.append(f"{source}: {damaged} damaged file digest lines skipped")
