"""Windows registry hive files (regf): a small, strict, fast reader.

``tests/imaging/hives.py`` writes hives (test data, benchmarks); this module reads them.
python-registry stays the tool for replaying transaction logs (see
:func:`scanner.registry.replay.open_hive`); reading is done here because python-registry
1.3.1 returns wrong raw bytes for inline data (a 2-byte REG_SZ comes back as 4 bytes, an
inline REG_MULTI_SZ as 0, an inline REG_DWORD_BIG_ENDIAN is read from a bogus cell) and is
slower: its bare walk of a 200k-key / 500k-value hive takes ~8 s; this reader's takes ~1.2 s,
and a whole-hive ``collect`` (with hashing and SDDL) over it ~3 s
(``python3 -m benchmarks.bench_registry --whole``).

Layout (offsets of cells are relative to the first hbin, at file offset 0x1000):

* base block (4096 bytes): ``regf``, sequence numbers at 4/8 (different = dirty), FILETIME
  at 0x0C, version at 0x14/0x18, file type at 0x1C (0 = primary), root cell at 0x24, size of
  the hbins at 0x28, XOR checksum of 0..0x1FB at 0x1FC.
* hbins: ``hbin`` header of 32 bytes, then cells: i32 size (negative = allocated) + payload.
  ``nk`` key, ``vk`` value, ``lf``/``lh``/``li``/``ri`` subkey lists, value lists (u32 offsets),
  ``sk`` security descriptor, ``db`` big data (segments of 16344 bytes).

Names are made unambiguous as they are decoded (:func:`scanner.textsafe.escape_name`: a name
with a control character, or a key name with a backslash, is escaped whole), so a hostile
name never merges with another id or reaches storage as NUL. Every offset is bounds-checked;
anything inconsistent raises :class:`HiveError`. What a hive can make the reader do is
bounded (:class:`scanner.limits.Limits`): the data of one value (``value_bytes``), the
big-data segments of one value (``hive_cells_per_value``; a segment cell listed twice is
refused), the entries of one key's subkey list (``subkey_list_entries``; an index root
listing the same leaf twice is refused), the values of one key (``values_per_key``). A cell
is owned by one value or key: a data cell of more than 1 KiB, a big-data list or segment
claimed by a second value, or a value list of more than 64 values claimed by a second key, is
refused for the second (Windows never shares them; a hive that does would make a scan hash
the same bytes once per claimant; sharing smaller cells costs no more than the entities it
makes, and tracking every cell would cost a fifth more memory on a big hive). A value
whose data breaks a bound or cannot be read comes back with ``error`` set (and empty data),
so its key's other values are still read; a subkey or value list that breaks one raises
:class:`HiveError` for its key.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from scanner.errors import HiveError
from scanner.limits import Limits
from scanner.textsafe import escape_name
from scanner.timestamps import storable_ns

__all__ = [
    "HiveError", "HiveHeader", "Hive", "RegKey", "RegValue", "parse_header", "type_name",
    "filetime_to_ns", "REG_NONE", "REG_SZ", "REG_EXPAND_SZ", "REG_BINARY", "REG_DWORD",
    "REG_DWORD_BIG_ENDIAN", "REG_LINK", "REG_MULTI_SZ", "REG_RESOURCE_LIST",
    "REG_FULL_RESOURCE_DESCRIPTOR", "REG_RESOURCE_REQUIREMENTS_LIST", "REG_QWORD",
    "BIG_DATA_SEGMENT", "HBIN_START", "base_block_checksum",
]

REG_NONE = 0
REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_DWORD_BIG_ENDIAN = 5
REG_LINK = 6
REG_MULTI_SZ = 7
REG_RESOURCE_LIST = 8
REG_FULL_RESOURCE_DESCRIPTOR = 9
REG_RESOURCE_REQUIREMENTS_LIST = 10
REG_QWORD = 11

_TYPE_NAMES = {
    REG_NONE: "REG_NONE", REG_SZ: "REG_SZ", REG_EXPAND_SZ: "REG_EXPAND_SZ",
    REG_BINARY: "REG_BINARY", REG_DWORD: "REG_DWORD",
    REG_DWORD_BIG_ENDIAN: "REG_DWORD_BIG_ENDIAN", REG_LINK: "REG_LINK",
    REG_MULTI_SZ: "REG_MULTI_SZ", REG_RESOURCE_LIST: "REG_RESOURCE_LIST",
    REG_FULL_RESOURCE_DESCRIPTOR: "REG_FULL_RESOURCE_DESCRIPTOR",
    REG_RESOURCE_REQUIREMENTS_LIST: "REG_RESOURCE_REQUIREMENTS_LIST", REG_QWORD: "REG_QWORD",
}

HBIN_START = 0x1000
BIG_DATA_SEGMENT = 16344  # bytes of value data per db segment; larger values use db cells
_FILETIME_EPOCH = 116444736000000000  # 1601-01-01 -> 1970-01-01 in 100 ns units

_NK = struct.Struct("<2sHQIIIIIIIIIIIIIIIHH")  # through the class name length (0x4C bytes)
_VK = struct.Struct("<2sHIIIHH")  # 0x14 bytes
_VK_CELL = struct.Struct("<i2sHIIIHH")  # cell size + vk header (0x18 bytes)
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U32_PAIR = struct.Struct("<II")
_KEY_NAME_NEEDS = re.compile(r"[\\\x00-\x1f\x7f]").search  # see escape_name
_CLAIM_BYTES = 1024  # data cells larger than this have one owner ...
_CLAIM_VALUES = 64  # ... and value lists longer than this
_KEY_COMP_NAME = 0x20
_VALUE_COMP_NAME = 0x1


def type_name(value_type: int) -> str:
    """``REG_SZ`` etc. for the known types, ``REG_UNKNOWN_0x...`` for the rest."""
    name = _TYPE_NAMES.get(value_type)
    return name if name is not None else f"REG_UNKNOWN_0x{value_type:x}"


def filetime_to_ns(filetime: int) -> int:
    """A Windows FILETIME (100 ns since 1601) as integer nanoseconds since the Unix epoch,
    clamped to the storable range (:func:`scanner.timestamps.storable_ns`)."""
    return storable_ns((filetime - _FILETIME_EPOCH) * 100)


@dataclass(frozen=True, slots=True)
class HiveHeader:
    """The fields of the base block that matter for reading."""

    primary_sequence: int
    secondary_sequence: int
    last_written: int  # FILETIME
    major: int
    minor: int
    file_type: int
    root_offset: int
    hbins_size: int
    checksum_ok: bool
    name: str

    @property
    def dirty(self) -> bool:
        """True when a write was interrupted (sequence numbers differ or bad checksum)."""
        return self.primary_sequence != self.secondary_sequence or not self.checksum_ok


def base_block_checksum(block: bytes | bytearray) -> int:
    """The regf checksum: XOR of the dwords at 0..0x1FB (0 -> 1, 0xFFFFFFFF -> 0xFFFFFFFE)."""
    xsum = 0
    for dword in struct.unpack_from("<127I", block, 0):
        xsum ^= dword
    return {0: 1, 0xFFFFFFFF: 0xFFFFFFFE}.get(xsum, xsum)


def parse_header(data: bytes) -> HiveHeader:
    """Check and decode the base block of a primary hive file; raise :class:`HiveError`."""
    if len(data) < HBIN_START:
        raise HiveError(f"truncated hive: {len(data)} bytes, the base block alone is 4096")
    if data[:4] != b"regf":
        raise HiveError("not a registry hive (no 'regf' signature)")
    seq1, seq2, stamp, major, minor, ftype, _fmt, root, size = struct.unpack_from(
        "<IIQIIIIII", data, 4)
    name = bytes(data[0x30:0x70]).decode("utf-16le", "replace").split("\0", 1)[0]
    stored = struct.unpack_from("<I", data, 0x1FC)[0]
    header = HiveHeader(seq1, seq2, stamp, major, minor, ftype, root, size,
                        stored == base_block_checksum(data), name)
    if major != 1 or not 2 <= minor <= 6:
        raise HiveError(f"unsupported hive format version {major}.{minor}")
    if ftype != 0:
        raise HiveError(f"not a primary hive file (file type {ftype}; a transaction log?)")
    if size == 0 or size % 4096:
        raise HiveError(f"invalid hive bins size 0x{size:x}")
    if HBIN_START + size > len(data):
        raise HiveError(f"truncated hive: the header says {HBIN_START + size} bytes, "
                        f"the file has {len(data)}")
    if data[HBIN_START:HBIN_START + 4] != b"hbin":
        raise HiveError("no 'hbin' block at offset 0x1000")
    return header


_NIL = 0xFFFFFFFF  # HCELL_NIL: no cell


def _check_count(key: RegKey, what: str, count: int, list_offset: int) -> None:
    """A key's count of subkeys or values must agree with its list: a count with no list, or
    a list with a count of none, is a damaged key (its subtree is unreadable, never empty)."""
    if list_offset == _NIL:
        raise HiveError(f"key at 0x{key.offset:x} says {count} {what}s but has no {what} list")
    if count == _NIL:
        raise HiveError(f"key at 0x{key.offset:x} says it has no {what}s but points at a "
                        f"{what} list (0x{list_offset:x})")


class RegKey(NamedTuple):
    """One key (``nk`` cell). ``last_write`` is a FILETIME; offsets are hbin-relative.
    (A named tuple: a walk makes one per key, and a tuple is built several times faster than
    a frozen dataclass.)"""

    offset: int
    name: str
    last_write: int
    subkey_count: int
    value_count: int
    subkeys_offset: int
    values_offset: int
    security_offset: int


class RegValue(NamedTuple):
    """One value (``vk`` cell): its name as stored ('' = the default value), type and data.
    ``error`` says why the data could not be read (then ``data`` is empty)."""

    name: str
    type: int
    data: bytes
    error: str | None = None


_tuple_new = tuple.__new__  # RegKey._make without its Python-level call


class Hive:
    """A parsed primary hive held in memory.

    ``status`` / ``status_reason`` say whether the hive was clean, replayed from transaction
    logs, or dirty and read as is (set by :func:`scanner.registry.replay.open_hive`).

    The hive bytes are kept as one immutable ``bytes`` object and read in place: positions
    below are absolute (``HBIN_START`` + cell offset); names, values and data are sliced out
    of it directly. Compressed (one byte per character) value names are decoded once per
    distinct spelling and shared, as a hive repeats a few thousand names (``""``,
    ``ThreadingModel``, ``DisplayName``...) hundreds of thousands of times.
    """

    def __init__(self, data: bytes, *, status: str = "clean", status_reason: str = "",
                 limits: Limits | None = None) -> None:
        self.header = parse_header(data)
        self._data = data if isinstance(data, bytes) else bytes(data)  # immutable: no copy
        self._size = self.header.hbins_size
        self._big_data = self.header.minor >= 4
        self.limits = limits = limits or Limits()
        self._small = min(BIG_DATA_SEGMENT, limits.value_bytes)  # data read in the fast path
        self._owners: dict[int, int] = {}  # cell offset -> the vk or nk cell that uses it
        self._names: dict[bytes, str] = {}
        self._sha256: str | None = None
        self.status = status
        self.status_reason = status_reason
        self.root = self._key(self.header.root_offset)

    def content_sha256(self) -> str:
        """SHA-256 of the hive's bytes as read (after any replay of its logs); computed once."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self._data).hexdigest()
        return self._sha256

    # -- cells ----------------------------------------------------------------------------

    def _cell(self, offset: int, what: str) -> tuple[int, int]:
        """Absolute payload position and payload size of the cell at ``offset``."""
        if not 0x20 <= offset <= self._size - 8 or offset & 3:
            raise HiveError(f"{what}: cell offset 0x{offset:x} outside the hive bins")
        (size,) = _I32.unpack_from(self._data, HBIN_START + offset)
        size = -size if size < 0 else size
        if size < 8 or offset + size > self._size:
            raise HiveError(f"{what}: cell at 0x{offset:x} has an invalid size {size}")
        return HBIN_START + offset + 4, size - 4

    def _claim(self, cell: int, owner: int, what: str) -> None:
        """Record that ``owner`` (a vk or nk cell) uses ``cell``; refuse a second owner."""
        first = self._owners.setdefault(cell, owner)
        if first != owner:
            whose = "key" if what == "value list" else "value"
            raise HiveError(f"{what} cell 0x{cell:x} of the {whose} at 0x{owner:x} belongs to "
                            f"the {whose} at 0x{first:x} (shared cells)")

    def _key(self, offset: int) -> RegKey:
        data = self._data
        if 0x20 <= offset <= self._size - 8 and not offset & 3:  # _cell, inline
            (size,) = _I32.unpack_from(data, HBIN_START + offset)
            size = -size if size < 0 else size
            if size < 8 or offset + size > self._size:
                raise HiveError(f"key: cell at 0x{offset:x} has an invalid size {size}")
            pos, size = HBIN_START + offset + 4, size - 4
        else:
            pos, size = self._cell(offset, "key")
        if size < _NK.size or data[pos:pos + 2] != b"nk":
            raise HiveError(f"cell 0x{offset:x} is not a key (nk)")
        (_sig, flags, stamp, _access, _parent, nsub, _nvol, subs, _vsubs, nval, vals, sk,
         _cls, _m1, _m2, _m3, _m4, _work, name_len, _cls_len) = _NK.unpack_from(data, pos)
        if _NK.size + name_len > size:
            raise HiveError(f"key at 0x{offset:x}: name runs past its cell")
        pos += _NK.size
        name = (data[pos:pos + name_len].decode("latin-1") if flags & _KEY_COMP_NAME
                else data[pos:pos + name_len].decode("utf-16le", "replace"))
        if _KEY_NAME_NEEDS(name):  # a control character or a backslash: hostile
            name = escape_name(name, key=True)
        # A count of 0 or 0xFFFFFFFF means "none" only with no list (HCELL_NIL): a key that
        # claims none but points at a list keeps a non-zero count, so that reading its list
        # (subkeys / iter_values) meets the disagreement instead of hiding the subtree.
        if nsub in (0, _NIL):
            nsub = 0 if subs == _NIL else _NIL
        if nval in (0, _NIL):
            nval = 0 if vals == _NIL else _NIL
        return _tuple_new(RegKey, (offset, name, stamp, nsub, nval, subs, vals, sk))

    def _list_offsets(self, offset: int, depth: int = 0) -> list[int]:
        pos, size = self._cell(offset, "subkey list")
        data = self._data
        sig = data[pos:pos + 2]
        if sig not in (b"lf", b"lh", b"li", b"ri"):
            raise HiveError(f"cell 0x{offset:x} is not a subkey list ({sig!r})")
        (count,) = _U16.unpack_from(data, pos + 2)
        step = 8 if sig in (b"lf", b"lh") else 4
        if 4 + step * count > size:
            raise HiveError(f"subkey list at 0x{offset:x}: {count} entries overflow its cell")
        bound = self.limits.subkey_list_entries
        if count > bound:
            raise HiveError(f"subkey list at 0x{offset:x}: {count} entries, over the bound of "
                            f"{bound} (SNAPFIM_MAX_SUBKEYS)")
        chunk = data[pos + 4:pos + 4 + step * count]
        entries = [e[0] for e in (_U32_PAIR if step == 8 else _U32).iter_unpack(chunk)]
        if sig != b"ri":
            return entries
        if depth:
            raise HiveError(f"subkey list at 0x{offset:x}: nested index roots")
        if len(set(entries)) != len(entries):
            raise HiveError(f"index root at 0x{offset:x} lists the same subkey list twice")
        total = 0
        for sub in entries:  # counted before anything is built
            spos, _ssize = self._cell(sub, "subkey list")
            total += _U16.unpack_from(data, spos + 2)[0]
            if total > bound:
                raise HiveError(f"index root at 0x{offset:x}: over {bound} subkeys, the bound "
                                "(SNAPFIM_MAX_SUBKEYS)")
        result: list[int] = []
        for sub in entries:
            result.extend(self._list_offsets(sub, depth + 1))
        return result

    # -- keys -----------------------------------------------------------------------------

    def subkeys(self, key: RegKey) -> list[RegKey]:
        """The subkeys of ``key`` in stored order (sorted by upper-case name)."""
        if key.subkey_count == 0:
            return []
        _check_count(key, "subkey", key.subkey_count, key.subkeys_offset)
        offsets = self._list_offsets(key.subkeys_offset)
        if len(offsets) != key.subkey_count:
            raise HiveError(f"key at 0x{key.offset:x} says {key.subkey_count} subkeys but its "
                            f"list holds {len(offsets)}")
        make = self._key
        return [make(off) for off in offsets]

    def subkey(self, key: RegKey, name: str) -> RegKey | None:
        """The subkey named ``name`` (case-insensitive), or None."""
        wanted = name.upper()
        for sub in self.subkeys(key):
            if sub.name.upper() == wanted:
                return sub
        return None

    def find(self, path: str) -> RegKey | None:
        """The key at ``path`` below the root (``A\\B\\C``, case-insensitive), or None."""
        key = self.root
        for segment in (s for s in path.split("\\") if s):
            found = self.subkey(key, segment)
            if found is None:
                return None
            key = found
        return key

    def security(self, key: RegKey) -> bytes | None:
        """The raw self-relative security descriptor of the key's ``sk`` cell (None if none)."""
        if key.security_offset == 0xFFFFFFFF:
            return None
        pos, size = self._cell(key.security_offset, "security")
        data = self._data
        if size < 0x14 or data[pos:pos + 2] != b"sk":
            raise HiveError(f"cell 0x{key.security_offset:x} is not a security cell (sk)")
        (length,) = _U32.unpack_from(data, pos + 0x10)
        if 0x14 + length > size:
            raise HiveError(f"security cell at 0x{key.security_offset:x}: descriptor of "
                            f"{length} bytes overflows its cell")
        return data[pos + 0x14:pos + 0x14 + length]

    # -- values ---------------------------------------------------------------------------

    def values(self, key: RegKey) -> list[RegValue]:
        """The values of ``key`` in stored order, with their raw data."""
        return list(self.iter_values(key)) if key.value_count else []

    def iter_values(self, key: RegKey) -> Iterator[RegValue]:
        """The values of ``key`` one at a time (only one value's data is held at once, however
        many values share the same big-data cells); raises :class:`HiveError` when the value
        list itself cannot be read."""
        if key.value_count == 0:
            return
        _check_count(key, "value", key.value_count, key.values_offset)
        if key.value_count > self.limits.values_per_key:
            raise HiveError(f"key at 0x{key.offset:x}: {key.value_count} values, over the bound "
                            f"of {self.limits.values_per_key} (SNAPFIM_MAX_VALUES)")
        if key.value_count > _CLAIM_VALUES:
            self._claim(key.values_offset, key.offset, "value list")
        pos, size = self._cell(key.values_offset, "value list")
        if 4 * key.value_count > size:
            raise HiveError(f"value list at 0x{key.values_offset:x}: {key.value_count} "
                            "entries overflow its cell")
        data, names, hbins, small = self._data, self._names, self._size, self._small
        owners = self._owners
        last = hbins - _VK_CELL.size
        for (offset,) in _U32.iter_unpack(data[pos:pos + 4 * key.value_count]):
            # the common case inline: a well-formed vk cell with a compressed name, and inline
            # data or data in one cell; anything else (and every error message) goes through
            # _value / _value_data, which check the same things one by one
            if 0x20 <= offset <= last and not offset & 3:
                size, sig, name_len, length, data_off, vtype, flags, _spare = (
                    _VK_CELL.unpack_from(data, HBIN_START + offset))
                if size < 0:
                    size = -size
                if (sig == b"vk" and flags & _VALUE_COMP_NAME and offset + size <= hbins
                        and _VK_CELL.size + name_len <= size):
                    start = HBIN_START + offset + _VK_CELL.size
                    raw = data[start:start + name_len]
                    name = names.get(raw)
                    if name is None:
                        name = names[raw] = escape_name(raw.decode("latin-1"), key=False)
                    value: bytes | None = None
                    if length & 0x80000000:
                        if length & 0x7FFFFFFF <= 4:
                            start = HBIN_START + offset + 12
                            value = data[start:start + (length & 0x7FFFFFFF)]
                    elif length == 0:
                        value = b""
                    elif (length <= small and 0x20 <= data_off <= hbins - 8
                          and not data_off & 3 and (length <= _CLAIM_BYTES or
                                                    owners.setdefault(data_off, offset) == offset)):
                        (size,) = _I32.unpack_from(data, HBIN_START + data_off)
                        if size < 0:
                            size = -size
                        if size >= 8 and data_off + size <= hbins and length <= size - 4:
                            start = HBIN_START + data_off + 4
                            value = data[start:start + length]
                    if value is None:
                        try:
                            value = self._value_data(offset, length, data_off,
                                                     HBIN_START + offset + 4)
                        except HiveError as exc:  # this value only
                            yield _tuple_new(RegValue, (name, vtype, b"", str(exc)))
                            continue
                    yield _tuple_new(RegValue, (name, vtype, value, None))
                    continue
            yield self._value(offset)

    def _value(self, offset: int) -> RegValue:
        pos, size = self._cell(offset, "value")
        data = self._data
        if size < _VK.size or data[pos:pos + 2] != b"vk":
            raise HiveError(f"cell 0x{offset:x} is not a value (vk)")
        _sig, name_len, length, data_off, vtype, flags, _spare = _VK.unpack_from(data, pos)
        if _VK.size + name_len > size:
            raise HiveError(f"value at 0x{offset:x}: name runs past its cell")
        raw = data[pos + _VK.size:pos + _VK.size + name_len]
        name = escape_name(raw.decode("latin-1") if flags & _VALUE_COMP_NAME else raw.decode(
            "utf-16le", "replace"), key=False)
        try:
            value = self._value_data(offset, length, data_off, pos)
        except HiveError as exc:  # this value only
            return _tuple_new(RegValue, (name, vtype, b"", str(exc)))
        return _tuple_new(RegValue, (name, vtype, value, None))

    def _value_data(self, offset: int, length: int, data_off: int, vk_pos: int) -> bytes:
        """The data of the value at ``offset`` (``vk_pos``: absolute position of its vk)."""
        if length & 0x80000000:
            length &= 0x7FFFFFFF
            if length > 4:
                raise HiveError(f"value at 0x{offset:x}: inline data of {length} bytes")
            return self._data[vk_pos + 8:vk_pos + 8 + length]
        if length == 0:
            return b""
        if length > self.limits.value_bytes:
            raise HiveError(f"value at 0x{offset:x}: {length} bytes of data, over the bound of "
                            f"{self.limits.value_bytes} (SNAPFIM_MAX_VALUE_BYTES)")
        if length > _CLAIM_BYTES:
            self._claim(data_off, offset, "data")
        pos, size = self._cell(data_off, "value data")
        if length > BIG_DATA_SEGMENT and self._big_data and self._data[pos:pos + 2] == b"db":
            return self._big(pos, size, length, offset)
        if length > size:
            raise HiveError(f"value at 0x{offset:x}: {length} bytes of data in a cell of {size}")
        return self._data[pos:pos + length]

    def _big(self, pos: int, size: int, length: int, offset: int) -> bytes:
        (count, list_off) = struct.unpack_from("<HI", self._data, pos + 2)
        if size < 8 or count * BIG_DATA_SEGMENT < length:
            raise HiveError(f"value at 0x{offset:x}: {count} big-data segments cannot hold "
                            f"{length} bytes")
        bound = self.limits.hive_cells_per_value
        if count > bound:
            raise HiveError(f"value at 0x{offset:x}: {count} big-data segments, over the bound "
                            f"of {bound} (SNAPFIM_MAX_VALUE_CELLS)")
        self._claim(list_off, offset, "big-data segment list")
        lpos, lsize = self._cell(list_off, "big-data segment list")
        if 4 * count > lsize:
            raise HiveError(f"value at 0x{offset:x}: segment list overflows its cell")
        segments = [seg for (seg,) in _U32.iter_unpack(self._data[lpos:lpos + 4 * count])]
        if len(set(segments)) != len(segments):
            raise HiveError(f"value at 0x{offset:x}: a big-data segment cell is listed twice")
        view = memoryview(self._data)
        parts = []
        remaining = length
        for seg in segments:
            if remaining <= 0:
                break
            self._claim(seg, offset, "big-data segment")
            spos, ssize = self._cell(seg, "big-data segment")
            take = min(BIG_DATA_SEGMENT, remaining)
            if take > ssize:
                raise HiveError(f"value at 0x{offset:x}: short big-data segment")
            parts.append(view[spos:spos + take])
            remaining -= take
        return b"".join(parts)
