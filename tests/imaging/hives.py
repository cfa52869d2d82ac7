"""Write Windows registry hive files (regf 1.5) from scratch, for tests and benchmarks.

    b = HiveBuilder("ROOT")
    run = b.key("Microsoft\\Windows\\CurrentVersion\\Run", last_write=datetime(2024, 5, 1))
    run.value("OneDrive", REG_SZ, sz("C:\\OneDrive.exe"))
    b.value("Select", "Current", REG_DWORD, dword(1))   # creates the key if needed
    data = b.build()                                      # bytes of a clean primary hive

Keys are created like ``mkdir -p``; names are case-insensitive (the first spelling is kept).
The output is deterministic: keys without ``last_write`` get the builder's ``timestamp``, keys
without ``security`` get ``default_security``. Layout follows Windows: 4 KiB hbins (larger
when one cell needs it), 8-byte aligned cells, ``lh`` subkey lists sorted by upper-case name
(split under an ``ri`` index root above :attr:`HiveBuilder.MAX_LEAF` entries; ``lf`` or
``li`` lists, as older Windows versions wrote, with ``subkey_lists=``), shared
reference-counted ``sk`` cells in a circular list, value data of at most 4 bytes inline,
more than 16344 bytes in ``db`` big-data segments. ``dirty=True`` writes a primary whose
sequence numbers differ, as after an interrupted write.

:func:`write_transaction_log` turns an old and a new hive into what a crash leaves on disk:
the old primary marked dirty plus new-format (Windows 8.1+) ``.LOG1``/``.LOG2`` files whose
``HvLE`` entries carry the changed pages, which python-registry's ``RegistryLog`` replays.

Hostile structures, as an attacker who controls the disk writes them (for the reader's
bounds): a value whose data is :class:`RepeatedSegments` (a ``db`` record listing one segment
cell many times), :meth:`KeyHandle.repeat_subkey_list` (an ``ri`` index root listing the same
``lh`` leaf many times), :meth:`KeyHandle.link_subkey` (a subkey list entry pointing at
another key, e.g. an ancestor: a key that is its own descendant), ``share_data_cells=True``
(values with equal data share one data cell), :meth:`KeyHandle.share_values_with` (keys
sharing one value list), and
:func:`log_with_pages` (a log whose dirty pages lie wherever the caller says).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from scanner.registry.hive import (
    BIG_DATA_SEGMENT,
    HBIN_START,
    base_block_checksum,
)

__all__ = [
    "HiveBuilder", "KeyHandle", "LoggedHive", "write_transaction_log", "security_descriptor",
    "sid_bytes", "sz", "multi_sz", "dword", "dword_be", "qword", "to_filetime", "marvin32",
    "DEFAULT_SECURITY", "RepeatedSegments", "log_with_pages",
]

_NK = struct.Struct("<i2sHQIIIIIIIIIIIIIIIHH")  # cell size + nk header
_VK = struct.Struct("<2sHIIIHH")
_HBIN = struct.Struct("<4sIIQQI")
_FILETIME_EPOCH = 116444736000000000
_DEFAULT_TIME = datetime(2024, 1, 1, tzinfo=UTC)
_NONE = 0xFFFFFFFF
_ROOT_FLAGS = 0x0C  # KEY_HIVE_ENTRY | KEY_NO_DELETE
_KEY_COMP_NAME = 0x20
_VALUE_COMP_NAME = 0x1


# -- data encoders ---------------------------------------------------------------------------

def sz(text: str) -> bytes:
    """REG_SZ / REG_EXPAND_SZ data: UTF-16LE with the terminating NUL."""
    return (text + "\0").encode("utf-16le")


def multi_sz(items: Iterable[str]) -> bytes:
    """REG_MULTI_SZ data: each string NUL-terminated, then an empty string."""
    return "".join(s + "\0" for s in items).encode("utf-16le") + b"\0\0"


def dword(n: int) -> bytes:
    return struct.pack("<I", n)


def dword_be(n: int) -> bytes:
    return struct.pack(">I", n)


def qword(n: int) -> bytes:
    return struct.pack("<Q", n)


def to_filetime(when: datetime) -> int:
    """A datetime as a FILETIME; naive datetimes are taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _FILETIME_EPOCH + micros * 10


def sid_bytes(sid: str) -> bytes:
    """Encode ``S-1-5-32-544`` as a binary SID."""
    parts = sid.split("-")
    if parts[:2] != ["S", "1"] or len(parts) < 3:
        raise ValueError(f"not a SID: {sid!r}")
    subs = [int(p) for p in parts[3:]]
    return (bytes([1, len(subs)]) + int(parts[2]).to_bytes(6, "big")
            + struct.pack(f"<{len(subs)}I", *subs))


def security_descriptor(owner: str | None, group: str | None,
                        dacl: Iterable[tuple[int, int, int, str]] | None,
                        sacl: Iterable[tuple[int, int, int, str]] | None = None,
                        control: int = 0) -> bytes:
    """A self-relative SECURITY_DESCRIPTOR from SIDs and simple ACEs
    ``(ace_type, ace_flags, access_mask, sid)``; ``control`` adds flags such as
    0x1000 (DACL protected) or 0x0400 (DACL auto-inherited). Layout like Windows: header,
    SACL, DACL, owner, group."""

    def acl(aces: Iterable[tuple[int, int, int, str]]) -> bytes:
        body = b""
        count = 0
        for ace_type, flags, mask, sid in aces:
            s = sid_bytes(sid)
            body += struct.pack("<BBHI", ace_type, flags, 8 + len(s), mask) + s
            count += 1
        return struct.pack("<BBHHH", 2, 0, 8 + len(body), count, 0) + body

    control |= 0x8000
    tail = b""
    offsets = {}
    for name, blob in (("sacl", None if sacl is None else acl(sacl)),
                       ("dacl", None if dacl is None else acl(dacl)),
                       ("owner", None if owner is None else sid_bytes(owner)),
                       ("group", None if group is None else sid_bytes(group))):
        offsets[name] = 0 if blob is None else 20 + len(tail)
        tail += blob or b""
    if dacl is not None:
        control |= 0x0004
    if sacl is not None:
        control |= 0x0010
    return struct.pack("<BBHIIII", 1, 0, control, offsets["owner"], offsets["group"],
                       offsets["sacl"], offsets["dacl"]) + tail


# The usual ACL of HKLM\SOFTWARE keys: O:BAG:SYD:AI(A;CIIO;GA;;;CO)(A;CI;KA;;;SY)
# (A;CI;KA;;;BA)(A;CI;KR;;;BU)(A;CI;KR;;;AC)
DEFAULT_SECURITY = security_descriptor(
    "S-1-5-32-544", "S-1-5-18",
    [(0, 0x0A, 0x10000000, "S-1-3-0"), (0, 0x02, 0xF003F, "S-1-5-18"),
     (0, 0x02, 0xF003F, "S-1-5-32-544"), (0, 0x02, 0x20019, "S-1-5-32-545"),
     (0, 0x02, 0x20019, "S-1-15-2-1")],
    control=0x0400)


@dataclass(frozen=True, slots=True)
class RepeatedSegments:
    """Value data written as a ``db`` big-data record whose segment list names one cell
    (holding ``segment``) ``count`` times; the value claims ``count * len(segment)`` bytes."""

    segment: bytes
    count: int

    def __len__(self) -> int:
        return self.count * len(self.segment)


# -- the tree --------------------------------------------------------------------------------

def _upcase(name: str) -> str:
    if name.isascii():
        return name.upper()
    return "".join(u if len(u := c.upper()) == 1 else c for c in name)


def _name_hash(upper: str) -> int:
    h = 0
    if upper.isascii():
        for c in upper.encode("ascii"):
            h = (h * 37 + c) & 0xFFFFFFFF
        return h
    units = struct.unpack(f"<{len(upper.encode('utf-16le')) // 2}H", upper.encode("utf-16le"))
    for u in units:
        h = (h * 37 + u) & 0xFFFFFFFF
    return h


def _encode_name(name: str) -> tuple[bytes, bool]:
    """Stored name bytes and whether they are 'compressed' (one byte per character)."""
    if name.isascii():
        return name.encode("ascii"), True
    return name.encode("utf-16le"), False


class _Node:
    __slots__ = ("name", "children", "values", "last_write", "security", "list_repeat",
                 "links", "values_of")

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: dict[str, _Node] = {}
        self.values: dict[str, tuple[str, int, bytes | RepeatedSegments]] = {}
        self.last_write: int | None = None
        self.security: bytes | None = None
        self.list_repeat = 1
        self.links: list[_Node] = []
        self.values_of: _Node | None = None


class KeyHandle:
    """A key being built: add subkeys and values below it without path lookups."""

    __slots__ = ("_node", "path")

    def __init__(self, node: _Node, path: str) -> None:
        self._node = node
        self.path = path

    def key(self, path: str, last_write: datetime | None = None,
            security: bytes | None = None) -> KeyHandle:
        """Create (or update) the key at ``path`` relative to this one."""
        node = self._node
        full = self.path
        for segment in path.split("\\"):
            if not segment:
                continue
            upper = _upcase(segment)
            child = node.children.get(upper)
            if child is None:
                child = node.children[upper] = _Node(segment)
            node = child
            full = f"{full}\\{child.name}" if full else child.name
        if last_write is not None:
            node.last_write = to_filetime(last_write)
        if security is not None:
            node.security = bytes(security)
        return KeyHandle(node, full)

    def value(self, name: str, type: int, data: bytes | RepeatedSegments) -> None:
        """Set a value; one of the same name (case-insensitive) is replaced, keeping its
        spelling, as RegSetValueEx does."""
        if len(data) > 0x7FFFFFFF:
            raise ValueError("value data too large")
        upper = _upcase(name)
        known = self._node.values.get(upper)
        stored = data if isinstance(data, RepeatedSegments) else bytes(data)
        self._node.values[upper] = (name if known is None else known[0], type, stored)

    def repeat_subkey_list(self, times: int) -> None:
        """Write this key's subkey list as an ``ri`` index root listing its one ``lh`` leaf
        ``times`` times (at most 65,535; the key needs at least one subkey)."""
        if not 1 <= times <= 0xFFFF:
            raise ValueError("an index root lists 1 to 65,535 leaves")
        self._node.list_repeat = times

    def share_values_with(self, owner: KeyHandle) -> None:
        """Point this key at ``owner``'s value list (``owner`` written before this key: an
        ancestor) instead of a list of its own."""
        self._node.values_of = owner._node

    def link_subkey(self, target: KeyHandle) -> None:
        """List ``target`` (a key written before this one: an ancestor, or this key itself)
        among this key's subkeys as well, by its cell offset."""
        self._node.links.append(target._node)

    def delete_value(self, name: str) -> None:
        self._node.values.pop(_upcase(name), None)

    def delete_key(self, name: str) -> None:
        """Remove the direct subkey ``name`` and its tree."""
        self._node.children.pop(_upcase(name), None)


class HiveBuilder:
    """Build a hive in memory, then :meth:`build` its bytes (repeatably)."""

    MAX_LEAF = 500  # entries per subkey list (a full list still fits in a 4 KiB hbin)

    def __init__(self, root_name: str = "ROOT", *, timestamp: datetime | None = None,
                 hive_name: str = "", dirty: bool = False, sequence: int = 1,
                 default_security: bytes = DEFAULT_SECURITY, subkey_lists: str = "lh",
                 share_data_cells: bool = False) -> None:
        if subkey_lists not in ("lh", "lf", "li"):
            raise ValueError(f"subkey_lists must be lh, lf or li, not {subkey_lists!r}")
        self._root = _Node(root_name)
        self.subkey_lists = subkey_lists
        self.timestamp = to_filetime(timestamp or _DEFAULT_TIME)
        self.hive_name = hive_name
        self.dirty = dirty
        self.sequence = sequence
        self.default_security = bytes(default_security)
        self.share_data_cells = share_data_cells  # equal data written once, shared by values

    @property
    def root(self) -> KeyHandle:
        return KeyHandle(self._root, "")

    def key(self, path: str, last_write: datetime | None = None,
            security: bytes | None = None) -> KeyHandle:
        """Create (or update) the key at ``path`` (``A\\B\\C``, relative to the root)."""
        return self.root.key(path, last_write, security)

    def value(self, key_path: str, name: str, type: int, data: bytes) -> None:
        """Set a value of the key at ``key_path`` (created if needed)."""
        self.root.key(key_path).value(name, type, data)

    def delete_key(self, path: str) -> None:
        parent, _, name = path.rpartition("\\")
        self.root.key(parent).delete_key(name)

    def build(self) -> bytes:
        """The hive file: base block + hbins."""
        writer = _Writer(self.timestamp, self.MAX_LEAF, self.subkey_lists)
        writer.shared = {} if self.share_data_cells else None
        root_off = writer.write_tree(self._root, self.default_security)
        bins = writer.finish()
        header = bytearray(512)
        seq2 = self.sequence & 0xFFFFFFFF
        seq1 = (seq2 + 1) & 0xFFFFFFFF if self.dirty else seq2
        struct.pack_into("<4sIIQIIIIIII", header, 0, b"regf", seq1, seq2, self.timestamp,
                         1, 5, 0, 1, root_off, len(bins), 1)
        name = self.hive_name.encode("utf-16le")[:62]
        header[0x30:0x30 + len(name)] = name
        struct.pack_into("<I", header, 0x1FC, base_block_checksum(header))
        return bytes(header) + bytes(HBIN_START - 512) + bytes(bins)


class _Writer:
    """Cell allocator and tree serializer (offsets are relative to the first hbin)."""

    def __init__(self, timestamp: int, max_leaf: int, kind: str) -> None:
        self.kind = kind
        self.buf = bytearray()
        self.pos = self.end = 0
        self.timestamp = timestamp
        self.max_leaf = max_leaf
        self.sk: dict[bytes, list[int]] = {}  # descriptor -> [offset, reference count]
        self.shared: dict[bytes, int] | None = None  # data -> its cell, when cells are shared

    def alloc(self, payload: int) -> int:
        size = (payload + 11) & ~7
        if self.pos + size > self.end:
            self._new_bin(size)
        off = self.pos
        self.pos += size
        struct.pack_into("<i", self.buf, off, -size)
        return off

    def put(self, payload: bytes) -> int:
        off = self.alloc(len(payload))
        self.buf[off + 4:off + 4 + len(payload)] = payload
        return off

    def _new_bin(self, cell: int) -> None:
        if self.pos < self.end:
            struct.pack_into("<i", self.buf, self.pos, self.end - self.pos)  # free cell
        start = self.end
        size = max(4096, (cell + 32 + 4095) & ~4095)
        self.buf.extend(bytes(size))
        _HBIN.pack_into(self.buf, start, b"hbin", start, size, 0,
                        self.timestamp if start == 0 else 0, 0)
        self.pos, self.end = start + 32, start + size

    def finish(self) -> bytearray:
        if self.pos < self.end:
            struct.pack_into("<i", self.buf, self.pos, self.end - self.pos)
            self.pos = self.end
        cells = list(self.sk.values())
        for i, (off, refs) in enumerate(cells):
            struct.pack_into("<2sHIII", self.buf, off + 4, b"sk", 0,
                             cells[i - 1][0], cells[(i + 1) % len(cells)][0], refs)
        return self.buf

    def security(self, descriptor: bytes) -> int:
        entry = self.sk.get(descriptor)
        if entry is None:
            off = self.alloc(0x14 + len(descriptor))
            self.buf[off + 4 + 0x14:off + 4 + 0x14 + len(descriptor)] = descriptor
            struct.pack_into("<I", self.buf, off + 4 + 0x10, len(descriptor))
            entry = self.sk[descriptor] = [off, 0]
        entry[1] += 1
        return entry[0]

    def data(self, data: bytes | RepeatedSegments) -> tuple[int, int]:
        """(length field, data offset field) of a vk for ``data``."""
        if isinstance(data, RepeatedSegments):
            seg = self.put(data.segment + b"\0\0\0\0")
            seg_list = self.put(struct.pack(f"<{data.count}I", *([seg] * data.count)))
            return len(data), self.put(struct.pack("<2sHI", b"db", data.count, seg_list))
        n = len(data)
        if n <= 4:
            return n | 0x80000000, int.from_bytes(data.ljust(4, b"\0"), "little")
        if n <= BIG_DATA_SEGMENT:
            if self.shared is None:
                return n, self.put(data)
            cell = self.shared.get(data)
            if cell is None:
                cell = self.shared[data] = self.put(data)
            return n, cell
        # each segment cell keeps 4 spare bytes, as full segments do (16344 + 4 + 4 = 16352):
        # hivex reads "cell size - 8" bytes from every segment
        segments = [self.put(data[i:i + BIG_DATA_SEGMENT] + b"\0\0\0\0")
                    for i in range(0, n, BIG_DATA_SEGMENT)]
        seg_list = self.put(struct.pack(f"<{len(segments)}I", *segments))
        return n, self.put(struct.pack("<2sHI", b"db", len(segments), seg_list))

    def write_tree(self, root: _Node, default_sd: bytes) -> int:
        name, comp = _encode_name(root.name)
        root_off = self.alloc(0x4C + len(name))
        offsets = {id(root): root_off}  # of the keys allocated so far (for link_subkey)
        vlists: dict[int, tuple[int, int]] = {}  # key -> (value list, count): share_values_with
        stack: list[tuple[_Node, int, int, bytes, bool]] = [(root, root_off, 0, name, comp)]
        vk_pack, nk_pack, put, alloc = _VK.pack, _NK.pack_into, self.put, self.alloc
        while stack:
            node, off, parent, name, comp = stack.pop()
            # values
            vk_offs = []
            max_vname = max_data = 0
            for vname, vtype, data in node.values.values():
                nb, vcomp = _encode_name(vname)
                length, doff = self.data(data)
                vk_offs.append(put(vk_pack(b"vk", len(nb), length, doff, vtype,
                                           _VALUE_COMP_NAME if vcomp else 0, 0) + nb))
                max_vname = max(max_vname, 2 * len(vname))
                max_data = max(max_data, len(data))
            vlist = put(struct.pack(f"<{len(vk_offs)}I", *vk_offs)) if vk_offs else _NONE
            nvalues = len(vk_offs)
            vlists[id(node)] = (vlist, nvalues)
            if node.values_of is not None:
                vlist, nvalues = vlists[id(node.values_of)]
            # subkeys: reserve their nk cells (adjacent, sorted), then the list(s)
            children = sorted(node.children.items())
            entries = []
            pending = []
            max_name = 0
            for upper, child in children:
                cname, ccomp = _encode_name(child.name)
                coff = offsets[id(child)] = alloc(0x4C + len(cname))
                entries.append((coff, self._list_word(upper, child.name)))
                pending.append((child, coff, off, cname, ccomp))
                max_name = max(max_name, 2 * len(child.name))
            stack.extend(reversed(pending))
            for target in node.links:
                entries.append((offsets[id(target)],
                                self._list_word(_upcase(target.name), target.name)))
            sublist = self._subkey_list(entries, node.list_repeat) if entries else _NONE
            sk = self.security(node.security or default_sd)
            flags = (_KEY_COMP_NAME if comp else 0) | (_ROOT_FLAGS if off == root_off else 0)
            stamp = node.last_write if node.last_write is not None else self.timestamp
            nk_pack(self.buf, off, -((0x4C + len(name) + 11) & ~7), b"nk", flags,
                    stamp, 0, parent if off != root_off else _NONE, len(entries), 0,
                    sublist, _NONE, nvalues, vlist, sk, _NONE, max_name, 0, max_vname,
                    max_data, 0, len(name), 0)
            self.buf[off + 0x50:off + 0x50 + len(name)] = name
        return root_off

    def _list_word(self, upper: str, name: str) -> int:
        """The second dword of a subkey list entry: lh name hash, lf name hint (first 4
        characters), nothing for li."""
        if self.kind == "lh":
            return _name_hash(upper)
        if self.kind == "lf":
            return int.from_bytes(name[:4].encode("latin-1", "replace").ljust(4, b"\0"),
                                  "little")
        return 0

    def _subkey_list(self, entries: list[tuple[int, int]], repeat: int = 1) -> int:
        sig = self.kind.encode("ascii")

        def lh(chunk: list[tuple[int, int]]) -> int:
            flat = ([x for pair in chunk for x in pair] if sig != b"li"
                    else [off for off, _ in chunk])
            return self.put(struct.pack(f"<2sH{len(flat)}I", sig, len(chunk), *flat))

        if repeat > 1:
            leaf = lh(entries)
            return self.put(struct.pack(f"<2sH{repeat}I", b"ri", repeat, *([leaf] * repeat)))
        if len(entries) <= self.max_leaf:
            return lh(entries)
        leaves = [lh(entries[i:i + self.max_leaf])
                  for i in range(0, len(entries), self.max_leaf)]
        return self.put(struct.pack(f"<2sH{len(leaves)}I", b"ri", len(leaves), *leaves))


# -- transaction logs ------------------------------------------------------------------------

_M32 = 0xFFFFFFFF


def marvin32(data: bytes, seed: int = 0x82EF4D887A4E55C5) -> int:
    """Marvin32 as the regf log format uses it (data length must be a multiple of 4)."""
    if len(data) % 4:
        raise ValueError("marvin32 here handles whole dwords only")
    lo, hi = seed & _M32, seed >> 32
    for v in (*struct.unpack(f"<{len(data) // 4}I", data), 0x80, 0):
        lo = (lo + v) & _M32
        hi ^= lo
        lo = ((((lo << 20) | (lo >> 12)) & _M32) + hi) & _M32
        hi = (((hi << 9) | (hi >> 23)) & _M32) ^ lo
        lo = ((((lo << 27) | (lo >> 5)) & _M32) + hi) & _M32
        hi = ((hi << 19) | (hi >> 13)) & _M32
    return hi << 32 | lo


@dataclass(frozen=True, slots=True)
class LoggedHive:
    """What a crash during a hive flush leaves: a dirty primary and its log file(s)."""

    primary: bytes
    log1: bytes
    log2: bytes | None


def _log_entry(sequence: int, hbins_size: int, runs: list[tuple[int, bytes]]) -> bytes:
    refs = b"".join(struct.pack("<II", off, len(page)) for off, page in runs)
    body = refs + b"".join(page for _, page in runs)
    size = (40 + len(body) + 511) & ~511
    body = body.ljust(size - 40, b"\0")
    head = struct.pack("<4sIIIII", b"HvLE", size, 0, sequence, hbins_size, len(runs))
    hash1 = marvin32(body)
    head += struct.pack("<Q", hash1)
    return head + struct.pack("<Q", marvin32(head)) + body


def _runs(new: bytes, pages: list[int]) -> list[tuple[int, bytes]]:
    """Consecutive dirty pages merged into (offset, bytes) runs."""
    runs: list[tuple[int, bytes]] = []
    for off in pages:
        page = new[HBIN_START + off:HBIN_START + off + 4096]
        if runs and runs[-1][0] + len(runs[-1][1]) == off:
            runs[-1] = (runs[-1][0], runs[-1][1] + page)
        else:
            runs.append((off, page))
    return runs


def write_transaction_log(old: bytes, new: bytes, *, entries: int = 1,
                          dual: bool = False) -> LoggedHive:
    """Model an interrupted flush from hive ``old`` to hive ``new`` (both clean, from
    :meth:`HiveBuilder.build`): the old primary with its primary sequence number bumped
    (dirty) and a new-format log whose ``entries`` HvLE entries (consecutive sequence numbers
    from the old secondary one) carry every 4 KiB page of ``new`` that differs. With
    ``dual=True`` the entries are split between LOG1 (first half) and LOG2 (the rest), the
    dual-logging layout Windows uses. Replaying gives ``new``'s hbins back."""
    seq = struct.unpack_from("<I", old, 8)[0]
    new_size = struct.unpack_from("<I", new, 0x28)[0]
    old_bins = old[HBIN_START:]
    pages = [off for off in range(0, new_size, 4096)
             if old_bins[off:off + 4096] != new[HBIN_START + off:HBIN_START + off + 4096]]
    count = max(1, min(entries, len(pages)))
    chunks = [_runs(new, pages[i * len(pages) // count:(i + 1) * len(pages) // count])
              for i in range(count)]
    split = (count + 1) // 2 if dual and count > 1 else count

    def log(first: int, part: list[list[tuple[int, bytes]]]) -> bytes:
        header = bytearray(old[:512])
        struct.pack_into("<II", header, 4, first, first)
        struct.pack_into("<I", header, 0x1C, 6)  # new-format transaction log
        struct.pack_into("<I", header, 0x1FC, base_block_checksum(header))
        return bytes(header) + b"".join(
            _log_entry(first + i, new_size, chunk) for i, chunk in enumerate(part))

    primary = bytearray(old)
    struct.pack_into("<I", primary, 4, (seq + 1) & _M32)
    struct.pack_into("<I", primary, 0x1FC, base_block_checksum(primary))
    log1 = log(seq, chunks[:split])
    log2 = log(seq + split, chunks[split:]) if split < count else None
    if dual and log2 is None:
        log2 = log((seq - 1) & _M32, [])  # a stale log from an earlier flush: not eligible
    return LoggedHive(bytes(primary), log1, log2)


def log_with_pages(old: bytes, runs: list[tuple[int, bytes]], *,
                   hbins_size: int | None = None) -> LoggedHive:
    """The hive ``old`` (clean) marked dirty, and a ``.LOG1`` with one valid ``HvLE`` entry
    writing each ``(offset, bytes)`` run at its hbin-relative offset and giving the hive
    ``hbins_size`` bytes of bins (default: ``old``'s), wherever those lie: what an attacker
    writes to make a replay allocate without bound."""
    seq = struct.unpack_from("<I", old, 8)[0]
    size = struct.unpack_from("<I", old, 0x28)[0] if hbins_size is None else hbins_size
    header = bytearray(old[:512])
    struct.pack_into("<II", header, 4, seq, seq)
    struct.pack_into("<I", header, 0x1C, 6)  # new-format transaction log
    struct.pack_into("<I", header, 0x1FC, base_block_checksum(header))
    primary = bytearray(old)
    struct.pack_into("<I", primary, 4, (seq + 1) & _M32)
    struct.pack_into("<I", primary, 0x1FC, base_block_checksum(primary))
    return LoggedHive(bytes(primary), bytes(header) + _log_entry(seq, size, runs), None)
