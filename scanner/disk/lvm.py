"""LVM2 physical volumes -> volume groups -> logical volumes, read from the on-disk format.

Layout (LVM2 ``lib/format_text/layout.h``; all integers little-endian):

- A *label* in one of the first four 512-byte sectors: ``LABELONE``, its own sector number,
  a CRC of bytes 20..511, the offset of the PV header (32) and the type ``LVM2 001``. The PV
  header holds the PV UUID (32 characters), the device size, then two zero-terminated lists
  of (offset, size) pairs: data areas, then metadata areas.
- Each metadata area starts with a 512-byte header: CRC, magic ``" LVM2 x[5A%r0N*>"``,
  version 1, the area's absolute start and size, then (offset, size, CRC, flags) locations of
  the current metadata text within the area (a circular buffer after the header).
- The text is the whole volume group in LVM2's config syntax: ``name { key = value ... }``
  with strings, integers and ``[ ... ]`` lists. Every PV of a group carries a copy; the copy
  with the highest ``seqno`` wins.

CRCs are LVM2's ``calc_crc``: CRC-32 (reflected, polynomial 0xEDB88320) starting from
0xF597A6CF without the final inversion, i.e. ``~zlib.crc32(buf, ~0xF597A6CF)``.

The metadata belongs to whoever controls the disk, so its reading is bounded
(:class:`scanner.limits.Limits`): the text is at most ``lvm_text_bytes`` long, sections nest
at most ``lvm_nesting`` deep (lists are flat, as LVM2 writes them), numbers have at most 20
digits. A PV whose extents would lie past its device fails; a segment outside its PV's
extents and logical volumes claiming the same physical extents fail (each LV with the reason),
so no corrupt or hostile text makes a scan read an extent twice.

Only linear logical volumes (every segment ``striped`` with one stripe) are readable here; the
others (striped over several stripes, thin, RAID, mirror, cache, snapshots and their
copy-on-write stores, VDO, ...) are reported with the reason. libvslvm (``pyvslvm``) reads the
same format but gives up on a whole volume group as soon as one LV is striped over two PVs and
does not expose segment types, which is why the metadata is parsed here.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from scanner.errors import LvmError, SourceReadError
from scanner.limits import Limits
from scanner.sources.base import BlockSource
from scanner.sources.lvm import Extent, LvmVolumeSource

SECTOR = 512
LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
LABEL_SCAN_SECTORS = 4
MDA_MAGIC = b" LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
INITIAL_CRC = 0xF597A6CF
MAX_DIGITS = 20  # a 64-bit number has at most 20 digits


def lvm_crc(data: bytes) -> int:
    """LVM2's ``calc_crc(INITIAL_CRC, data)``."""
    return zlib.crc32(data, ~INITIAL_CRC & 0xFFFFFFFF) ^ 0xFFFFFFFF


def format_uuid(raw: str) -> str:
    """LVM's 32-character identifier in the dashed 6-4-4-4-4-4-6 form ``pvs``/``blkid`` show."""
    if len(raw) != 32:
        return raw
    parts, at = [], 0
    for width in (6, 4, 4, 4, 4, 4, 6):
        parts.append(raw[at:at + width])
        at += width
    return "-".join(parts)


# -- label and PV header -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PvLabel:
    """The label and PV header of one physical volume."""

    uuid: str                              # dashed form
    device_size: int
    data_areas: tuple[tuple[int, int], ...]
    metadata_areas: tuple[tuple[int, int], ...]
    sector: int


def probe_label(source: BlockSource) -> PvLabel | None:
    """The LVM2 label of ``source``, or ``None`` when it is not a physical volume.

    Raises :class:`LvmError` for a label that is there but damaged (bad CRC, bad header).
    """
    try:
        head = source.read_at(0, LABEL_SCAN_SECTORS * SECTOR)
    except SourceReadError:
        return None
    for sector in range(LABEL_SCAN_SECTORS):
        raw = head[sector * SECTOR:(sector + 1) * SECTOR]
        if len(raw) < SECTOR or raw[:8] != LABEL_ID:
            continue
        if raw[24:32] != LABEL_TYPE:
            continue  # another LABELONE user (not LVM2 text format)
        (sector_xl, crc_xl, offset_xl) = struct.unpack_from("<QII", raw, 8)
        if crc_xl != lvm_crc(raw[20:]):
            raise LvmError(f"LVM2 label in sector {sector}: checksum mismatch")
        if sector_xl != sector or not 32 <= offset_xl <= SECTOR - 40:
            raise LvmError(f"LVM2 label in sector {sector}: inconsistent header")
        return _pv_header(raw, offset_xl, sector)
    return None


def _pv_header(raw: bytes, at: int, sector: int) -> PvLabel:
    uuid = raw[at:at + 32].decode("ascii", "replace")
    (device_size,) = struct.unpack_from("<Q", raw, at + 32)
    at += 40
    lists: list[list[tuple[int, int]]] = [[], []]
    for current in lists:
        while True:
            if at + 16 > SECTOR:
                raise LvmError(f"LVM2 PV header in sector {sector}: unterminated area list")
            offset, size = struct.unpack_from("<QQ", raw, at)
            at += 16
            if offset == 0:
                break
            current.append((offset, size))
    return PvLabel(format_uuid(uuid), device_size, tuple(lists[0]), tuple(lists[1]), sector)


def read_metadata_text(source: BlockSource, label: PvLabel, limits: Limits | None = None) -> str:
    """The current volume group metadata text from the first metadata area that is intact.

    Raises :class:`LvmError` naming what is wrong when no area yields valid text (a PV without
    metadata areas is valid for LVM but cannot be placed in a group from its own bytes).
    """
    if not label.metadata_areas:
        raise LvmError(f"LVM2 PV {label.uuid} holds no metadata area")
    problems = []
    most = (limits or Limits()).lvm_text_bytes
    for start, size in label.metadata_areas:
        try:
            return _metadata_area_text(source, start, size, most)
        except LvmError as exc:
            problems.append(str(exc))
    raise LvmError("; ".join(problems))


def _metadata_area_text(source: BlockSource, start: int, size: int, most: int) -> str:
    where = f"LVM2 metadata area at {start}"
    try:
        header = source.read_at(start, MDA_HEADER_SIZE)
    except SourceReadError as exc:
        raise LvmError(f"{where}: unreadable: {exc}") from exc
    if len(header) < MDA_HEADER_SIZE:
        raise LvmError(f"{where}: cut short (truncated image?)")
    if header[4:20] != MDA_MAGIC:
        raise LvmError(f"{where}: bad magic")
    (crc,) = struct.unpack_from("<I", header, 0)
    if crc != lvm_crc(header[4:]):
        raise LvmError(f"{where}: header checksum mismatch")
    version, mda_start, mda_size = struct.unpack_from("<IQQ", header, 20)
    if version != 1 or mda_start != start:
        raise LvmError(f"{where}: unsupported header (version {version}, start {mda_start})")
    offset, text_size, text_crc, _flags = struct.unpack_from("<QQII", header, 40)
    if offset == 0 or text_size == 0:
        raise LvmError(f"{where}: no metadata recorded")
    if text_size > mda_size or offset >= mda_size:
        raise LvmError(f"{where}: metadata location out of bounds")
    if text_size > most:
        raise LvmError(f"{where}: {text_size} bytes of metadata text, over the bound of "
                       f"{most} (SNAPFIM_MAX_LVM_TEXT_BYTES)")
    try:
        first = min(text_size, mda_size - offset)
        data = source.read_at(start + offset, first)
        if first < text_size:  # the circular buffer wraps to just after the header
            data += source.read_at(start + MDA_HEADER_SIZE, text_size - first)
    except SourceReadError as exc:
        raise LvmError(f"{where}: metadata unreadable: {exc}") from exc
    if len(data) != text_size:
        raise LvmError(f"{where}: metadata cut short (truncated image?)")
    if lvm_crc(data) != text_crc:
        raise LvmError(f"{where}: metadata checksum mismatch")
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


# -- the config syntax -------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<punct>[{}\[\]=,])
  | (?P<word>[A-Za-z0-9_.+\-/@:]+)
""", re.VERBOSE)


def parse_config(text: str, max_nesting: int | None = None) -> dict[str, Any]:
    """Parse LVM2's config syntax into nested dicts (sections), ints, strings and flat lists.

    Raises :class:`LvmError` for anything else, sections nested deeper than ``max_nesting``
    and numbers of more than 20 digits included."""
    if max_nesting is None:
        max_nesting = Limits().lvm_nesting
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise LvmError(f"LVM2 metadata: unexpected character {text[at]!r} at {at}")
        kind = match.lastgroup or ""
        if kind == "number" and len(match.group()) > MAX_DIGITS + 1:
            raise LvmError(f"LVM2 metadata: a number of {len(match.group())} characters at "
                           f"{at} (at most {MAX_DIGITS} digits)")
        at = match.end()
        if kind != "space":
            tokens.append((kind, match.group()))
    pos = 0

    def value() -> Any:
        nonlocal pos
        kind, tok = tokens[pos]
        pos += 1
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", tok[1:-1])
        if kind == "number":
            return float(tok) if "." in tok else int(tok)
        if tok == "[":
            items: list[Any] = []
            while tokens[pos][1] != "]":
                if tokens[pos][1] == "[":
                    raise LvmError("LVM2 metadata: a list inside a list")
                items.append(value())
                if tokens[pos][1] == ",":
                    pos += 1
            pos += 1
            return items
        raise LvmError(f"LVM2 metadata: unexpected {tok!r}")

    def section(closing: bool, depth: int = 0) -> dict[str, Any]:
        nonlocal pos
        if depth > max_nesting:
            raise LvmError(f"LVM2 metadata: sections nested deeper than {max_nesting} "
                           "(SNAPFIM_MAX_LVM_NESTING)")
        out: dict[str, Any] = {}
        while pos < len(tokens):
            kind, tok = tokens[pos]
            if tok == "}" and closing:
                pos += 1
                return out
            if kind not in ("word", "number"):
                raise LvmError(f"LVM2 metadata: unexpected {tok!r}")
            pos += 1
            follow = tokens[pos][1] if pos < len(tokens) else ""
            pos += 1
            if follow == "=":
                out[tok] = value()
            elif follow == "{":
                out[tok] = section(True, depth + 1)
            else:
                raise LvmError(f"LVM2 metadata: expected '=' or '{{' after {tok!r}")
        if closing:
            raise LvmError("LVM2 metadata: unbalanced braces")
        return out

    try:
        return section(False)
    except IndexError as exc:
        raise LvmError("LVM2 metadata: text ends early") from exc


# -- volume groups -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PvInfo:
    """One PV as the volume group metadata describes it."""

    name: str          # "pv0", the key segments use
    uuid: str
    pe_start: int      # bytes
    pe_count: int
    device: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of logical extents of an LV."""

    start_extent: int
    extent_count: int
    type: str
    stripes: tuple[tuple[str, int], ...] = ()   # (pv name, first physical extent)
    cow_store: str | None = None
    origin: str | None = None


@dataclass(slots=True)
class LogicalVolume:
    """An LV of a volume group; ``reason`` says why it is not read (``None``: linear), and
    ``error`` why its metadata is invalid (it fails: its content is unknown)."""

    vg: str
    name: str
    uuid: str
    visible: bool
    segments: list[Segment]
    extent_size: int
    reason: str | None = None
    error: str | None = None

    @property
    def size(self) -> int:
        """Size in bytes (sum of the segments)."""
        return sum(s.extent_count for s in self.segments) * self.extent_size

    @property
    def full_name(self) -> str:
        """``vg/lv``."""
        return f"{self.vg}/{self.name}"


@dataclass(slots=True)
class VolumeGroup:
    """A volume group as its metadata text describes it."""

    name: str
    uuid: str
    seqno: int
    extent_size: int                       # bytes
    pvs: dict[str, PvInfo] = field(default_factory=dict)
    lvs: list[LogicalVolume] = field(default_factory=list)

    def pv_by_uuid(self, uuid: str) -> PvInfo | None:
        """The PV entry with this (dashed) UUID."""
        return next((p for p in self.pvs.values() if p.uuid == uuid), None)


def _segment_kind(seg: Segment) -> str:
    """What a segment is, in the words of a coverage report (``linear`` is readable)."""
    if seg.type == "striped":
        if len(seg.stripes) == 1:
            return "linear"
        return f"striped logical volume ({len(seg.stripes)} stripes)"
    if seg.type.startswith("raid"):
        return f"{seg.type.upper()} logical volume"
    names = {"thin": "thin logical volume", "thin-pool": "thin pool",
             "snapshot": "snapshot", "mirror": "mirrored logical volume",
             "cache": "cached logical volume", "cache-pool": "cache pool",
             "writecache": "write-cached logical volume", "vdo": "VDO logical volume",
             "vdo-pool": "VDO pool", "integrity": "integrity logical volume",
             "error": "error target", "zero": "zero target"}
    return names.get(seg.type, f"logical volume of segment type {seg.type!r}")


def parse_volume_group(text: str, limits: Limits | None = None) -> VolumeGroup:
    """The volume group described by a metadata text (one VG per text, as LVM2 writes it).

    Raises :class:`LvmError` for a text that is not one (see :func:`parse_config`), and for
    a physical volume whose extents would lie past the device the metadata gives it."""
    tree = parse_config(text, (limits or Limits()).lvm_nesting)
    groups = [(k, v) for k, v in tree.items() if isinstance(v, dict)]
    if len(groups) != 1:
        raise LvmError(f"LVM2 metadata: expected one volume group, found {len(groups)}")
    name, vg = groups[0]
    try:
        extent_size = int(vg["extent_size"]) * SECTOR
        group = VolumeGroup(name, str(vg["id"]), int(vg.get("seqno", 0)), extent_size)
        for pv_name, pv in vg.get("physical_volumes", {}).items():
            info = PvInfo(pv_name, str(pv["id"]), int(pv["pe_start"]) * SECTOR,
                          int(pv.get("pe_count", 0)), str(pv.get("device", "")))
            device = int(pv.get("dev_size", 0)) * SECTOR
            if (info.pe_start < 0 or info.pe_count < 0 or extent_size <= 0
                    or (device and info.pe_start + info.pe_count * extent_size > device)):
                raise LvmError(f"LVM2 metadata of {name}: {pv_name} claims {info.pe_count} "
                               f"extents of {extent_size} bytes from {info.pe_start}, past "
                               f"its {device} bytes")
            group.pvs[pv_name] = info
        for lv_name, lv in vg.get("logical_volumes", {}).items():
            segments = []
            for key in sorted((k for k in lv if k.startswith("segment")
                               and isinstance(lv[k], dict)), key=lambda k: int(k[7:] or 0)):
                seg = lv[key]
                raw = seg.get("stripes", [])
                stripes = tuple((str(raw[i]), int(raw[i + 1])) for i in range(0, len(raw) - 1, 2))
                segments.append(Segment(int(seg["start_extent"]), int(seg["extent_count"]),
                                        str(seg.get("type", "")), stripes,
                                        seg.get("cow_store"), seg.get("origin")))
            status = lv.get("status", [])
            group.lvs.append(LogicalVolume(name, lv_name, str(lv.get("id", "")),
                                           "VISIBLE" in status, segments, extent_size))
    except (KeyError, TypeError, ValueError) as exc:
        raise LvmError(f"LVM2 metadata of {name}: malformed ({exc!r})") from exc
    if extent_size <= 0:
        raise LvmError(f"LVM2 metadata of {name}: extent size {extent_size}")
    _classify(group)
    return group


def _classify(group: VolumeGroup) -> None:
    cow_of = {s.cow_store: s.origin for lv in group.lvs for s in lv.segments
              if s.type == "snapshot" and s.cow_store}
    for lv in group.lvs:
        if lv.name in cow_of:
            lv.reason = (f"snapshot of {group.name}/{cow_of[lv.name]} (copy-on-write store): "
                         "not supported yet")
            continue
        if not lv.segments:
            lv.reason = "no segments"
            continue
        kinds = sorted({_segment_kind(s) for s in lv.segments} - {"linear"})
        if kinds:
            lv.reason = f"{'; '.join(kinds)}: not supported yet"
            continue
        expected = 0
        for seg in sorted(lv.segments, key=lambda s: s.start_extent):
            if seg.start_extent != expected:
                lv.reason = f"segments leave a gap at extent {expected}"
                break
            if seg.stripes[0][0] not in group.pvs:
                lv.reason = f"segment names unknown physical volume {seg.stripes[0][0]!r}"
                break
            expected += seg.extent_count
    _refuse_overlaps(group)


def _refuse_overlaps(group: VolumeGroup) -> None:
    """Readable LVs that claim a physical extent another LV (or another segment of
    themselves) claims too fail, all of them: LVM2 never maps one extent twice, the metadata
    is corrupt or hostile."""
    runs: dict[str, list[tuple[int, int, LogicalVolume]]] = {}
    for lv in group.lvs:
        if lv.reason is None and lv.error is None:
            for seg in lv.segments:
                pv_name, first = seg.stripes[0]
                runs.setdefault(pv_name, []).append((first, first + seg.extent_count, lv))
    for pv_name, spans in runs.items():
        spans.sort(key=lambda s: (s[0], s[1]))
        reach_end, reach_lv = -1, None
        for start, end, lv in spans:
            if reach_lv is not None and start < reach_end:
                for one, other in ((lv, reach_lv), (reach_lv, lv)):
                    if one.error is None:
                        one.error = (f"shares extents of {pv_name} from {start} with "
                                     f"{other.full_name}: overlapping logical volumes are "
                                     "not read")
            if end > reach_end:
                reach_end, reach_lv = end, lv


# -- PVs on a disk, assembled into groups ------------------------------------------------------

@dataclass(slots=True)
class PhysicalVolume:
    """A PV found on the disk: where (its source and a key naming it), its label and group."""

    key: str                  # the volume label of the partition ("p2", "disk")
    source: BlockSource
    label: PvLabel
    group: VolumeGroup | None  # None: the PV keeps no metadata (another PV of its VG does)


def read_physical_volume(key: str, source: BlockSource, limits: Limits | None = None
                         ) -> PhysicalVolume | None:
    """The PV on ``source`` with its volume group, ``None`` if it is no PV (its metadata read
    within ``limits``).

    Raises :class:`LvmError` when the label or every metadata copy is damaged, or the metadata
    does not list this PV.
    """
    label = probe_label(source)
    if label is None:
        return None
    if not label.metadata_areas:  # pvcreate --metadatacopies 0
        return PhysicalVolume(key, source, label, None)
    group = parse_volume_group(read_metadata_text(source, label, limits), limits)
    if group.pv_by_uuid(label.uuid) is None:
        raise LvmError(f"LVM2 metadata of {group.name} does not list this PV ({label.uuid})")
    return PhysicalVolume(key, source, label, group)


@dataclass(slots=True)
class AssembledGroup:
    """A volume group with the PVs of this disk that belong to it (newest metadata wins)."""

    group: VolumeGroup
    members: dict[str, PhysicalVolume]     # PV name in the metadata -> the PV found


def assemble(pvs: list[PhysicalVolume]) -> list[AssembledGroup]:
    """Group the PVs by volume group UUID, keeping the metadata with the highest seqno; PVs
    without metadata join the group whose metadata lists them."""
    newest: dict[str, VolumeGroup] = {}
    for pv in pvs:
        if pv.group is not None:
            known = newest.get(pv.group.uuid)
            if known is None or pv.group.seqno > known.seqno:
                newest[pv.group.uuid] = pv.group
    out = []
    for group in newest.values():
        found: dict[str, PhysicalVolume] = {}
        for pv in pvs:
            info = group.pv_by_uuid(pv.label.uuid)
            if info is not None and (pv.group is None or pv.group.uuid == group.uuid):
                found[info.name] = pv
        out.append(AssembledGroup(group, found))
    return out


def orphans(pvs: list[PhysicalVolume], groups: list[AssembledGroup]) -> list[PhysicalVolume]:
    """PVs that no volume group on this disk claims (no metadata of their own, and the PVs
    that hold it are elsewhere)."""
    claimed = {id(pv) for group in groups for pv in group.members.values()}
    return [pv for pv in pvs if id(pv) not in claimed]


def first_extent(assembled: AssembledGroup, lv: LogicalVolume
                 ) -> tuple[PhysicalVolume, int | None]:
    """The PV on this disk that holds the LV's first extent, and that extent's byte offset in
    the PV (``None``, with the group's first PV, when the LV has no extent on a PV here)."""
    first = min(lv.segments, key=lambda s: s.start_extent, default=None)
    if first is not None and first.stripes:
        name, extent = first.stripes[0]
        pv = assembled.members.get(name)
        if pv is not None and name in assembled.group.pvs:
            return pv, assembled.group.pvs[name].pe_start + extent * lv.extent_size
    return next(iter(assembled.members.values())), None


def logical_volume_extents(assembled: AssembledGroup, lv: LogicalVolume) -> list[Extent]:
    """Where each run of a linear LV lies: (offset in the LV, length, PV source, PV offset).

    Raises :class:`LvmError` when a PV is not on this disk or an extent lies past its end.
    """
    extents = []
    size = lv.extent_size
    for seg in sorted(lv.segments, key=lambda s: s.start_extent):
        pv_name, first = seg.stripes[0]
        pv = assembled.members.get(pv_name)
        info = assembled.group.pvs[pv_name]
        if pv is None:
            raise LvmError(f"needs physical volume {info.uuid} ({info.device or pv_name}), "
                           "which is not on this disk")
        start = info.pe_start + first * size
        length = seg.extent_count * size
        if start + length > pv.source.size:
            raise LvmError(f"extents {first}..{first + seg.extent_count - 1} lie past the end "
                           f"of {pv.key} (truncated image?)")
        if first < 0 or seg.extent_count <= 0 or first + seg.extent_count > info.pe_count:
            raise LvmError(f"extents {first}..{first + seg.extent_count - 1} lie outside the "
                           f"{info.pe_count} extents of {pv.key}")
        extents.append(Extent(seg.start_extent * size, length, pv.source, start))
    return extents


def lvm_locator(assembled: AssembledGroup, lv: LogicalVolume) -> dict[str, Any]:
    """How another process reopens the LV: the locators of the group's PVs on this disk."""
    pvs = [assembled.members[name].source.locator for name in sorted(assembled.members)]
    return {"kind": "lvm", "pvs": pvs, "vg": assembled.group.name, "lv": lv.name}


def open_logical_volume(assembled: AssembledGroup, lv: LogicalVolume,
                        owned: tuple[BlockSource, ...] = ()) -> LvmVolumeSource:
    """A block source over a linear LV (raises :class:`LvmError` if it cannot be read)."""
    if lv.error is not None or lv.reason is not None:
        raise LvmError(lv.error or lv.reason or "")
    return LvmVolumeSource(logical_volume_extents(assembled, lv), lv.size,
                           lvm_locator(assembled, lv), owned)


def reopen_logical_volume(locator: dict[str, Any], pv_sources: list[BlockSource]
                          ) -> LvmVolumeSource:
    """Open the LV a ``{"kind": "lvm"}`` locator names over the already opened PV sources
    (which the returned source then owns and closes). The metadata is read within the bounds
    of the environment (``SNAPFIM_MAX_LVM_*``), as the scan that made the locator read it."""
    found = []
    limits = Limits.from_env()
    for index, source in enumerate(pv_sources):
        pv = read_physical_volume(f"pv{index}", source, limits)
        if pv is not None:
            found.append(pv)
    for assembled in assemble(found):
        if assembled.group.name != locator["vg"]:
            continue
        for lv in assembled.group.lvs:
            if lv.name == locator["lv"]:
                return open_logical_volume(assembled, lv, tuple(pv_sources))
    raise LvmError(f"logical volume {locator['vg']}/{locator['lv']} not found")
