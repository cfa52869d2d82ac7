"""The RPM database as Berkeley DB (``/var/lib/rpm/Packages``: RHEL 7/8, CentOS 7/8, Amazon
Linux 2, SUSE before ndb): a BDB *hash* database whose keys are package instance numbers
(4 bytes, the writing host's byte order; key 0 holds rpm's instance counter) and whose
values are the header blobs :func:`scanner.changetracking.rpm.parse_header` reads.

The on-disk structures come from ``dissect.database`` (Fox-IT's maintained dissect family,
``dissect.database.bsd``): the metadata page (page size, ``max_bucket``, the ``spares`` that
map buckets to pages), the page header, the overflow item, the constants. Its record
iterator (``DB.records``) is not used: version 1.1 raises ``TypeError`` on an empty bucket
page -- which a hash database with fewer keys than buckets has, e.g. after ``rpm -e`` or
``rpm -U`` removed a header --, looks for db5.3's page checksums in the wrong flags (and
then reads every page 6 bytes off), and follows bucket and overflow chains without a guard
(an overflow page whose length field is 0 loops for ever; a chain looping back is followed
until Python's recursion limit). So the walk is ours, over dissect's structures, and
bounded:

* the file is at most :data:`~scanner.changetracking.rpm.MAX_RPMDB_BYTES`, its page size one
  BDB allows (512 to 64 KiB, a power of two), its declared buckets no more than its pages;
* every page is visited at most once (a page reached twice is a loop or a cross-link), so
  the work is linear in the file's size whatever its pointers say;
* an overflow item's declared length is bounded by the file and rpm's header bound;
* the records are bounded by :data:`~scanner.changetracking.model.MAX_ITEMS_PER_SOURCE`.

(At worst, a 1 GiB file of 512-byte pages, about 20 microseconds a page: tens of seconds,
never more; a real rpmdb is tens of MB of 4 KiB pages.)

A damaged bucket chain makes the database unreadable (:class:`InventoryError`: the
source's previous state is kept); a damaged item (an overflow chain that breaks, a key that
is not an instance number) is skipped and counted, like a damaged header. Only
little-endian databases are read (x86_64, aarch64; not s390x or ppc64 big-endian): dissect
reads little-endian structures only, and a big-endian database is refused by name.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from dissect.cstruct.exceptions import Error as CstructError
from dissect.database.bsd import db as bsd
from dissect.database.bsd.c_db import c_db
from dissect.database.exception import Error as DissectError

from scanner.changetracking import rpm
from scanner.changetracking.model import MAX_ITEMS_PER_SOURCE
from scanner.errors import InventoryError

MAX_BLOB_BYTES = 8 + 16 * rpm.MAX_HEADER_TAGS + rpm.MAX_HEADER_DATA  # rpm's header bound
_MAGIC_OFFSET = 12
_HASH_DUP = 0x01  # hash meta flags: DB_HASH_DUP


def _fields(structure: Any, *names: str) -> struct.Struct:
    """A reader of ``names`` (in the order of their offsets) of a dissect structure, at the
    offsets and sizes dissect defines: one ``unpack_from`` per page rather than a cstruct
    object (20 microseconds each: most of a walk's time)."""
    layout, at = "<", 0
    for name in names:
        field = structure.fields[name]
        layout += f"{field.offset - at}x{_CODES[field.type.size]}"
        at = field.offset + field.type.size
    return struct.Struct(layout)


_CODES = {1: "B", 2: "H", 4: "I"}
# dissect's layouts and constants, looked up once (cstruct resolves names per access)
_PAGE_FIELDS = _fields(c_db.PAGE, "next_pgno", "entries", "hf_offset", "type")
_HOFFPAGE_FIELDS = _fields(c_db.HOFFPAGE, "pgno", "tlen")
_PAGE_LEN, _HOFFPAGE_LEN, _CHKSUM_LEN = len(c_db.PAGE), len(c_db.HOFFPAGE), len(c_db.PG_CHKSUM)
_HASH_PAGES = (c_db.P_HASH, c_db.P_HASH_UNSORTED)
_P_INVALID, _P_OVERFLOW = c_db.P_INVALID, c_db.P_OVERFLOW
_H_KEYDATA, _H_OFFPAGE = c_db.H_KEYDATA, c_db.H_OFFPAGE
_LIBRARY_ERRORS = (CstructError, DissectError, EOFError, ValueError, IndexError, KeyError,
                   TypeError, NotImplementedError, OverflowError, struct.error)


def read_bdb_rpmdb(data: bytes, prefixes: tuple[str, ...] = ("",)
                   ) -> tuple[list[rpm.RpmPackage], int]:
    """The packages of a Berkeley DB ``Packages`` file's bytes and the number of records
    skipped as damaged (items and headers). Raises :class:`InventoryError` when it is no
    little-endian BDB hash database, its structure is damaged, or it is past a bound."""
    records, damaged = hash_records(data)
    packages, skipped = rpm.packages_of_blobs(
        sorted((key, blob) for key, blob in records if key != 0), prefixes)
    if not packages and skipped + damaged:
        raise InventoryError(f"Packages: none of its {skipped + damaged} records can be read")
    return packages, skipped + damaged


def hash_records(data: bytes, max_records: int = MAX_ITEMS_PER_SOURCE + 1
                 ) -> tuple[list[tuple[int, bytes]], int]:
    """The (little-endian 4-byte key, value) pairs of a BDB hash database, and the number of
    pairs skipped as damaged. Raises :class:`InventoryError` as :func:`read_bdb_rpmdb`."""
    if len(data) > rpm.MAX_RPMDB_BYTES:
        raise InventoryError(f"Packages of {len(data)} bytes: larger than "
                             f"{rpm.MAX_RPMDB_BYTES}, the bound")
    try:
        return _Walk(data, max_records).records()
    except _LIBRARY_ERRORS as exc:  # dissect's structures on bytes they do not fit
        raise InventoryError(f"Packages: damaged Berkeley DB ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from exc


class _Walk:
    """One bounded walk of a hash database: bucket pages and their chains, each page once.
    A damaged chain or item raises :class:`InventoryError` inside; an item's is caught and
    the item skipped, a bucket chain's ends the walk."""

    def __init__(self, data: bytes, max_records: int) -> None:
        if len(data) < 512:
            raise InventoryError(f"Packages: {len(data)} bytes, too short for a Berkeley DB")
        magic = data[_MAGIC_OFFSET:_MAGIC_OFFSET + 4]
        if magic == struct.pack(">I", c_db.DB_HASHMAGIC):
            raise InventoryError("Packages: a big-endian Berkeley DB, not supported")
        if magic != struct.pack("<I", c_db.DB_HASHMAGIC):
            raise InventoryError("Packages: not a Berkeley DB hash database (magic "
                                 f"{magic.hex()})")
        self.data = memoryview(data)
        self.db = bsd.DB(io.BytesIO(data))  # the metadata page, parsed by dissect
        meta = self.db.meta.dbmeta
        if meta.encrypt_alg:
            raise InventoryError("Packages: an encrypted Berkeley DB, not supported")
        if meta.flags & _HASH_DUP:
            raise InventoryError("Packages: a hash database with duplicates, not rpm's")
        size = self.db.page_size
        if size < 512 or size > 65536 or size & (size - 1):
            raise InventoryError(f"Packages: page size {size}, not one Berkeley DB allows")
        self.size = size
        # the page header, and the checksum after it when the meta page says so (dissect
        # 1.1 looks for it in the access method's flags, where the hash's DUP flag lives)
        self.overhead = _PAGE_LEN + (
            _CHKSUM_LEN if meta.metaflags & c_db.DBMETA_CHKSUM else 0)
        self.pages = len(data) // size
        if meta.last_pgno >= self.pages:
            raise InventoryError(f"Packages: truncated: {self.pages} pages of "
                                 f"{meta.last_pgno + 1}")
        buckets = self.db.meta.max_bucket + 1
        if buckets >= self.pages:  # the meta page and one page per bucket at least
            raise InventoryError(f"Packages: {buckets} buckets declared, the file holds "
                                 f"{self.pages} pages")
        self.buckets = buckets
        self.visited = bytearray(self.pages)  # one byte a page: bounded by the file
        self.visited[0] = 1
        self.max_records = max_records
        self.out: list[tuple[int, bytes]] = []
        self.damaged = 0

    def _page(self, pgno: int, what: str) -> tuple[memoryview, tuple[int, int, int, int]]:
        """A page's bytes and its header's (next page, entries, hf_offset, type); each page
        once."""
        if not 0 < pgno < self.pages:
            raise InventoryError(f"{what} page {pgno} outside the file's {self.pages} pages")
        if self.visited[pgno]:
            raise InventoryError(f"{what} page {pgno} reached twice: a page loop")
        self.visited[pgno] = 1
        raw = self.data[pgno * self.size:(pgno + 1) * self.size]
        return raw, _PAGE_FIELDS.unpack_from(raw)

    def records(self) -> tuple[list[tuple[int, bytes]], int]:
        for bucket in range(self.buckets):
            pgno = bsd.BUCKET_TO_PAGE(self.db, bucket)
            try:
                while pgno:
                    pgno = self._bucket_page(pgno)
            except InventoryError as exc:
                raise InventoryError(f"Packages: bucket {bucket}: {exc}") from exc
        return self.out, self.damaged

    def _bucket_page(self, pgno: int) -> int:
        """The pairs of one bucket page into ``out``; the next page of its chain (0: none)."""
        raw, (next_pgno, entries, _, kind) = self._page(pgno, "bucket")
        if kind not in _HASH_PAGES:
            if kind == _P_INVALID and not entries:
                return 0  # a bucket never written: empty
            raise InventoryError(f"page {pgno} is of type {kind}, not a hash page")
        if entries % 2 or self.overhead + 2 * entries > self.size:
            raise InventoryError(f"page {pgno} lists {entries} items")
        lookup = struct.unpack_from(f"<{entries}H", raw, self.overhead)
        for index in range(0, entries, 2):
            key = self._item(raw, lookup, index)
            value = self._item(raw, lookup, index + 1)
            if key is None or value is None or len(key) != 4:
                self.damaged += 1
                continue
            self.out.append((int.from_bytes(key, "little"), value))
            if len(self.out) > self.max_records:  # checked at each record: one long chain
                raise InventoryError(f"Packages: more than {self.max_records - 1} packages: "
                                     "the bound")
        return int(next_pgno)

    def _item(self, raw: memoryview, lookup: tuple[int, ...], index: int) -> bytes | None:
        """One item of a hash page: inline data, or the overflow chain it points to; None
        when it is damaged (its pair is skipped)."""
        start = lookup[index]
        end = self.size if index == 0 else lookup[index - 1]
        if not self.overhead + 2 * len(lookup) <= start < end <= self.size:
            return None
        kind = raw[start]
        if kind == _H_KEYDATA:
            return bytes(raw[start + 1:end])
        if kind != _H_OFFPAGE or end - start < _HOFFPAGE_LEN:
            return None  # duplicates (H_DUPLICATE, H_OFFDUP): rpm never writes them
        pgno, size = _HOFFPAGE_FIELDS.unpack_from(raw, start)
        try:
            return self._overflow(pgno, size)
        except InventoryError:
            return None

    def _overflow(self, pgno: int, size: int) -> bytes:
        """An overflow item of ``size`` bytes from its chain of pages, each read once."""
        if size > min(MAX_BLOB_BYTES, len(self.data)):
            raise InventoryError(f"overflow item of {size} bytes")
        parts = []
        left = size
        room = self.size - self.overhead
        while left > 0:
            raw, (next_pgno, _, length, kind) = self._page(pgno, "overflow")
            # hf_offset: the data this page holds
            if kind != _P_OVERFLOW or not 0 < length <= room:
                raise InventoryError(f"overflow page {pgno} of type {kind}, {length} bytes")
            parts.append(raw[self.overhead:self.overhead + min(left, length)])
            left -= length
            pgno = next_pgno
        return b"".join(parts)
