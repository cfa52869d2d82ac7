"""The RPM database as SQLite (``/var/lib/rpm/rpmdb.sqlite``: RHEL 9, Fedora, Amazon Linux
2023) and the RPM header format its ``Packages`` table stores, one blob per package.

The database is opened by Python's own SQLite (``sqlite3``, from memory: ``deserialize``),
read-only, with untrusted-schema mode, cell checks and an instruction budget (a hostile file
cannot make a query run for ever). No maintained pure-Python parser of the header format
exists (rpm's Python bindings need the whole rpm library and a database directory of their
own), and the format is small and documented (rpm's ``header.c`` / the LSB spec): an index
count and a data length (big-endian 32-bit), the index entries (tag, type, offset, count:
16 bytes each), then the data. :func:`parse_header` checks every offset and count against the
data before reading it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from scanner.changetracking.model import MAX_ITEMS_PER_SOURCE, MAX_PACKAGED_FILES, clip
from scanner.errors import InventoryError

MAX_RPMDB_BYTES = 1 << 30
MAX_HEADER_TAGS = 0xFFFF          # rpm's own bounds (header.c: HEADER_TAGS_MAX, _DATA_MAX)
MAX_HEADER_DATA = 0x0FFFFFFF
MAX_SQL_STEPS = 200_000_000       # SQLite virtual machine instructions for the whole read
_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
_INTRO = struct.Struct(">II")
_ENTRY = struct.Struct(">iIiI")
# tags
NAME, VERSION, RELEASE, EPOCH, ARCH, VENDOR = 1000, 1001, 1002, 1003, 1022, 1011
FILEDIGESTS, FILEFLAGS, DIRINDEXES, BASENAMES, DIRNAMES = 1035, 1037, 1116, 1117, 1118
FILEDIGESTALGO = 5011
_WANTED = {NAME, VERSION, RELEASE, EPOCH, ARCH, VENDOR, FILEDIGESTS, FILEFLAGS, DIRINDEXES,
           BASENAMES, DIRNAMES, FILEDIGESTALGO}
# types
_INT32, _STRING, _STRING_ARRAY, _I18NSTRING = 4, 6, 8, 9
_ALGORITHMS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}
RPMFILE_CONFIG = 1


@dataclass(slots=True)
class RpmPackage:
    """One package of the database: name, EVR, architecture, vendor, and its files with the
    digest the database records (hex, empty for directories and links) and their flags."""

    name: str
    version: str | None
    architecture: str | None
    vendor: str | None = None
    algorithm: str = "md5"
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)  # path -> (digest, config)
    digest: str = ""  # SHA-256 of every file's path and recorded digest


class _Strings(NamedTuple):
    """A header's array of ``number`` strings as stored: ``raw`` their bytes joined by NUL
    (no trailing NUL). Decoded only when needed: the package digest is taken over the
    bytes, and only the directories, and the files of a package that has some under the
    monitored prefixes, are decoded."""

    raw: bytes
    number: int

    def decoded(self) -> list[str]:
        """The strings (a NUL never ends nor starts a UTF-8 sequence: decoding the joined
        bytes then splitting them gives what decoding each string gives)."""
        return self.raw.decode("utf-8", "surrogateescape").split("\0") if self.number else []


def _string_array(data: bytes, offset: int, count: int, end: int) -> _Strings:
    """The ``count`` NUL-terminated strings at ``offset``, none past ``end``. Only a window
    of the data is copied (grown until it holds them all), never the rest of it."""
    if not count:
        return _Strings(b"", 0)
    size = 72 * count + 64
    while True:
        stop = min(end, offset + size)
        parts = data[offset:stop].split(b"\0", count)
        if len(parts) > count:
            return _Strings(data[offset:stop - len(parts[count]) - 1], count)
        if stop >= end:  # the count-th string has no NUL before the end of the data
            raise InventoryError("header string runs past the data")
        size *= 4


def _fields(blob: bytes) -> dict[int, Any]:
    """The wanted tags of one header blob: strings, :class:`_Strings` or lists of ints.
    Raises :class:`InventoryError` on any inconsistency (never reads past the blob)."""
    base = 8 if blob[:8] == _MAGIC else 0
    if len(blob) - base < 8:
        raise InventoryError("header shorter than its intro")
    il, dl = _INTRO.unpack_from(blob, base)
    if il > MAX_HEADER_TAGS or dl > MAX_HEADER_DATA:
        raise InventoryError(f"header of {il} tags, {dl} data bytes: beyond rpm's bounds")
    start = base + 8 + il * 16
    end = start + dl
    if end > len(blob):
        raise InventoryError("header data runs past the blob")
    out: dict[int, Any] = {}
    for tag, kind, offset, count in _ENTRY.iter_unpack(memoryview(blob)[base + 8:start]):
        if tag not in _WANTED:
            continue
        if offset < 0 or offset > dl or count > dl + 1:
            raise InventoryError(f"tag {tag}: offset {offset}, count {count} outside the data")
        at = start + offset
        if kind == _INT32:
            if at + 4 * count > end:
                raise InventoryError(f"tag {tag}: integers run past the data")
            out[tag] = list(struct.unpack_from(f">{count}i", blob, at))
        elif kind in (_STRING, _I18NSTRING):
            stop = blob.find(b"\0", at, end)
            if stop < 0:
                raise InventoryError("header string runs past the data")
            out[tag] = blob[at:stop].decode("utf-8", "surrogateescape")
        elif kind == _STRING_ARRAY:
            if count > MAX_PACKAGED_FILES:  # before a list of that many strings is made
                raise InventoryError(f"tag {tag}: {count} strings, more than the "
                                     f"{MAX_PACKAGED_FILES} files bound")
            out[tag] = _string_array(blob, at, count, end)
    return out


def parse_header(blob: bytes) -> dict[int, Any]:
    """The wanted tags of one header blob: strings, lists of strings or lists of ints.
    Raises :class:`InventoryError` on any inconsistency (never reads past the blob)."""
    return {tag: value.decoded() if isinstance(value, _Strings) else value
            for tag, value in _fields(blob).items()}


def _texts(value: Any, name: str) -> _Strings:
    """A list-of-strings tag (as parsed, or a list of ``str``) as stored."""
    if isinstance(value, _Strings):
        return value
    if isinstance(value, list) and set(map(type, value)) <= {str}:
        return _Strings("\0".join(value).encode("utf-8", "surrogateescape"), len(value))
    raise InventoryError(f"{name}: a file list that is not a list of strings")


def _numbers(value: Any, name: str) -> list[int]:
    """A list-of-integers tag, checked (a header's tag may be of any type)."""
    if isinstance(value, _Strings) and not value.number:
        return []
    if isinstance(value, list) and set(map(type, value)) <= {int}:
        return value
    raise InventoryError(f"{name}: a file list that is not a list of integers")


def _count(value: Any) -> int:
    """The number of items of a list tag, as parsed or as stored."""
    return value.number if isinstance(value, _Strings) else len(value)


def _listed(value: Any) -> Any:
    """A tag as :func:`parse_header` gives it (a string array decoded), for the tags read
    as one item of a list (epoch, digest algorithm): whichever parse a header came from, the
    package is the same."""
    return value.decoded() if isinstance(value, _Strings) else value


@functools.lru_cache(maxsize=16)
def _above(prefixes: tuple[str, ...]) -> frozenset[str]:
    """Every leading part of ``prefixes`` (``p.startswith(d)`` is ``d in _above(...)``)."""
    return frozenset(p[:i] for p in prefixes for i in range(len(p) + 1))


def package_of(tags: dict[int, Any], prefixes: tuple[str, ...] = ("",)) -> RpmPackage:
    """The package a parsed header describes, with its files under ``prefixes`` (paths
    without leading ``/``; its digest covers them all). Raises :class:`InventoryError`
    when its file lists do not fit together or are not of their types."""
    name = tags.get(NAME)
    if not isinstance(name, str) or not name:
        raise InventoryError("header without a name")
    version, release = tags.get(VERSION), tags.get(RELEASE)
    epoch = _listed(tags.get(EPOCH))
    evr = None
    if isinstance(version, str):
        evr = version + (f"-{release}" if isinstance(release, str) else "")
        if isinstance(epoch, list) and epoch and epoch[0]:
            evr = f"{epoch[0]}:{evr}"
    arch = tags.get(ARCH)
    algo = _listed(tags.get(FILEDIGESTALGO))
    package = RpmPackage(clip(name), clip(evr) if evr else None,
                         clip(arch) if isinstance(arch, str) else None,
                         clip(tags[VENDOR]) if isinstance(tags.get(VENDOR), str) else None,
                         _ALGORITHMS.get(algo[0], "unknown") if isinstance(algo, list) and algo
                         else "md5")
    basenames, dirnames, indexes = tags.get(BASENAMES), tags.get(DIRNAMES), tags.get(DIRINDEXES)
    if basenames is None:
        return package
    if not (isinstance(basenames, (list, _Strings)) and isinstance(dirnames, (list, _Strings))
            and isinstance(indexes, list) and len(indexes) == _count(basenames)):
        raise InventoryError(f"{name}: file lists of different lengths")
    files = _count(basenames)
    digests = tags.get(FILEDIGESTS)
    digests = digests if digests is not None and _count(digests) else [""] * files
    flags = tags.get(FILEFLAGS)
    flags = flags if flags is not None and _count(flags) else [0] * files
    if _count(digests) != files or _count(flags) != files:
        raise InventoryError(f"{name}: file digests do not match its file list")
    bases, dirs, sums = _texts(basenames, name), _texts(dirnames, name), _texts(digests, name)
    indexes, flags = _numbers(indexes, name), _numbers(flags, name)
    if indexes and not 0 <= min(indexes) <= max(indexes) < dirs.number:
        raise InventoryError(f"{name}: a file names a directory out of {dirs.number}")
    # the SHA-256 of "\0".join((algorithm, *dirnames, "", *basenames, "", *indexes, "",
    # *digests)), taken over the bytes as stored (an empty list adds no string)
    chunks = [package.algorithm.encode()]
    listed = _Strings("\0".join(map(str, indexes)).encode(), len(indexes))
    for raw, count in (dirs, bases, listed, sums):
        if count:
            chunks.append(raw)
        chunks.append(b"")
    chunks.pop()  # no empty string after the digests
    package.digest = hashlib.sha256(b"\0".join(chunks)).hexdigest()
    directories = dirs.decoded()
    above = _above(prefixes)
    keep = {i for i, d in enumerate(directories)  # directories under or above a prefix
            if d[1:].startswith(prefixes) or d[1:] in above}
    if keep:
        for base, index, digest, flag in zip(bases.decoded(), indexes, sums.decoded(), flags,
                                             strict=True):
            path = directories[index] + base
            if index in keep and path[1:].startswith(prefixes):
                package.files[path] = (digest.lower(), bool(flag & RPMFILE_CONFIG))
    return package


def read_sqlite_rpmdb(data: bytes, wal: bytes | None = None, prefixes: tuple[str, ...] = ("",)
                      ) -> tuple[list[RpmPackage], int]:
    """The packages of an ``rpmdb.sqlite`` file's bytes (with its ``-wal`` file's, when the
    snapshot holds one not yet checkpointed) and the number of headers skipped as damaged.
    Raises :class:`InventoryError` when it is no SQLite database, lacks the ``Packages``
    table, is past a bound, or a query runs past its budget."""
    if len(data) + len(wal or b"") > MAX_RPMDB_BYTES:
        raise InventoryError(f"rpmdb of {len(data)} bytes: larger than {MAX_RPMDB_BYTES}")
    if wal:  # the WAL is applied by SQLite itself, from a private copy of both files
        with tempfile.TemporaryDirectory(prefix="snapfim-rpmdb-") as tmp:
            path = os.path.join(tmp, "rpmdb.sqlite")
            with open(path, "wb") as fh:
                fh.write(data)
            with open(path + "-wal", "wb") as fh:
                fh.write(wal)
            return _query(sqlite3.connect(path), None, prefixes)
    if data[18:20] == b"\x02\x02":  # WAL mode: read the file as a rollback-journal database
        data = data[:18] + b"\x01\x01" + data[20:]
    return _query(sqlite3.connect(":memory:"), data, prefixes)


def _query(conn: sqlite3.Connection, data: bytes | None, prefixes: tuple[str, ...]
           ) -> tuple[list[RpmPackage], int]:
    try:
        steps = 0

        def budget() -> int:
            nonlocal steps
            steps += 100_000
            return 1 if steps > MAX_SQL_STEPS else 0

        conn.set_progress_handler(budget, 100_000)
        try:
            if data is not None:
                conn.deserialize(data)
            conn.execute("PRAGMA trusted_schema=OFF")
            conn.execute("PRAGMA cell_size_check=ON")
            rows = conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum")
            return packages_of_blobs(rows, prefixes)
        except sqlite3.Error as exc:
            raise InventoryError(f"rpmdb.sqlite: {exc}") from exc
    finally:
        conn.close()


def packages_of_blobs(rows: Iterable[tuple[int, Any]], prefixes: tuple[str, ...] = ("",)
                      ) -> tuple[list[RpmPackage], int]:
    """The packages of ``(instance, header blob)`` rows (either database's) and the number
    of blobs skipped as damaged. Raises :class:`InventoryError` past the package or file
    bounds."""
    packages: list[RpmPackage] = []
    skipped = files = 0
    for _hnum, blob in rows:
        if len(packages) >= MAX_ITEMS_PER_SOURCE:
            raise InventoryError(f"more than {MAX_ITEMS_PER_SOURCE} packages: the bound")
        if not isinstance(blob, bytes):
            skipped += 1
            continue
        try:
            package = package_of(_fields(blob), prefixes)
        except InventoryError:
            skipped += 1
            continue
        files += len(package.files)
        if files > MAX_PACKAGED_FILES:
            raise InventoryError(f"more than {MAX_PACKAGED_FILES} files: the bound")
        packages.append(package)
    return packages, skipped
