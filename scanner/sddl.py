"""Render a self-relative Windows SECURITY_DESCRIPTOR as an SDDL string (pure, no I/O).

The output follows ``ConvertSecurityDescriptorToStringSecurityDescriptorW`` with all four
parts requested (owner, group, DACL, SACL), e.g.
``O:BAG:SYD:PAI(A;OICI;FA;;;SY)(A;OICIIO;GA;;;CO)(A;;0x1200a9;;;BU)``:

* ``O:`` / ``G:`` only when the descriptor has an owner / group.
* ``D:`` / ``S:`` when the DACL / SACL is present, followed by the ACL flags ``P``
  (protected), ``AR`` (auto-inherit requested), ``AI`` (auto-inherited), then the ACEs.
  A present but NULL ACL (offset 0) is written ``NO_ACCESS_CONTROL``.
* ACE: ``(type;flags;rights;object_guid;inherit_object_guid;sid)``. Rights are a named set
  (``FA``, ``FR``, ``FW``, ``FX``, ``KA``, ``KR``, ``KW``, ``GA``, ``GR``, ...) when the mask is
  exactly that set, else a concatenation of single-bit names (``CCDCLCSWRPSDRC``) when every
  bit has one, else lower-case hex (``0x1200a9``); ``KX`` equals ``KR`` and is written ``KR``,
  as Windows does. Mandatory label ACEs use ``NW``/``NR``/``NX``.
* SIDs with a domain-independent SDDL alias (``SY``, ``BA``, ``BU``, ``WD``, ``AU``, ``CO``, ...)
  are written as the alias, all others as ``S-1-...``. NT SERVICE\\TrustedInstaller has no
  alias in Windows either and is written in full.

Supported ACE types: allowed/denied/audit/alarm (``A``, ``D``, ``AU``, ``AL``), their object
forms (``OA``, ``OD``, ``OU``, ``OL``), mandatory label (``ML``), scoped policy id (``SP``),
process trust label (``TL``) and callback ACEs *without* a condition (``XA``, ``XD``, ``XU``).
Conditional expressions, resource attributes and other types raise :class:`ValueError`, so a
caller can keep the raw bytes (hex) instead and nothing is lost.
"""

from __future__ import annotations

import struct
import uuid

__all__ = ["sddl_from_descriptor", "sid_to_string", "SID_ALIASES"]

# Control bits (SECURITY_DESCRIPTOR_CONTROL)
SE_DACL_PRESENT = 0x0004
SE_SACL_PRESENT = 0x0010
SE_DACL_AUTO_INHERIT_REQ = 0x0100
SE_SACL_AUTO_INHERIT_REQ = 0x0200
SE_DACL_AUTO_INHERITED = 0x0400
SE_SACL_AUTO_INHERITED = 0x0800
SE_DACL_PROTECTED = 0x1000
SE_SACL_PROTECTED = 0x2000
SE_SELF_RELATIVE = 0x8000

SID_ALIASES: dict[str, str] = {
    "S-1-1-0": "WD", "S-1-3-0": "CO", "S-1-3-1": "CG", "S-1-3-4": "OW",
    "S-1-5-2": "NU", "S-1-5-4": "IU", "S-1-5-6": "SU", "S-1-5-7": "AN", "S-1-5-9": "ED",
    "S-1-5-10": "PS", "S-1-5-11": "AU", "S-1-5-12": "RC", "S-1-5-18": "SY", "S-1-5-19": "LS",
    "S-1-5-20": "NS", "S-1-5-33": "WR",
    "S-1-5-32-544": "BA", "S-1-5-32-545": "BU", "S-1-5-32-546": "BG", "S-1-5-32-547": "PU",
    "S-1-5-32-548": "AO", "S-1-5-32-549": "SO", "S-1-5-32-550": "PO", "S-1-5-32-551": "BO",
    "S-1-5-32-552": "RE", "S-1-5-32-554": "RU", "S-1-5-32-555": "RD", "S-1-5-32-556": "NO",
    "S-1-5-32-558": "MU", "S-1-5-32-559": "LU", "S-1-5-32-568": "IS", "S-1-5-32-569": "CY",
    "S-1-5-32-573": "ER", "S-1-5-32-574": "CD", "S-1-5-32-575": "RA", "S-1-5-32-576": "ES",
    "S-1-5-32-577": "MS", "S-1-5-32-578": "HA", "S-1-5-32-579": "AA", "S-1-5-32-580": "RM",
    "S-1-5-84-0-0-0-0-0": "UD", "S-1-15-2-1": "AC", "S-1-18-1": "AS", "S-1-18-2": "SS",
    "S-1-16-4096": "LW", "S-1-16-8192": "ME", "S-1-16-8448": "MP", "S-1-16-12288": "HI",
    "S-1-16-16384": "SI",
}

# ACE type -> (SDDL name, layout) ; layout: "simple" = mask + SID, "object" = mask + flags +
# GUIDs + SID, "callback" = mask + SID + application data (accepted only when empty).
_ACE_TYPES: dict[int, tuple[str, str]] = {
    0x00: ("A", "simple"), 0x01: ("D", "simple"), 0x02: ("AU", "simple"),
    0x03: ("AL", "simple"), 0x05: ("OA", "object"), 0x06: ("OD", "object"),
    0x07: ("OU", "object"), 0x08: ("OL", "object"), 0x09: ("XA", "callback"),
    0x0A: ("XD", "callback"), 0x0D: ("XU", "callback"), 0x11: ("ML", "simple"),
    0x13: ("SP", "simple"), 0x14: ("TL", "simple"),
}
_ML_ACE = 0x11

# ACE flags in the order Windows writes them.
_ACE_FLAGS = ((0x01, "OI"), (0x02, "CI"), (0x04, "NP"), (0x08, "IO"), (0x10, "ID"),
              (0x40, "SA"), (0x80, "FA"))
_KNOWN_ACE_FLAGS = 0xDF

# Whole right sets, checked first and in this order (KX = KR = 0x20019 is written KR).
_RIGHT_SETS = (
    (0x10000000, "GA"), (0x80000000, "GR"), (0x40000000, "GW"), (0x20000000, "GX"),
    (0x00020000, "RC"), (0x00010000, "SD"), (0x00040000, "WD"), (0x00080000, "WO"),
    (0x00000010, "RP"), (0x00000020, "WP"), (0x00000001, "CC"), (0x00000002, "DC"),
    (0x00000004, "LC"), (0x00000008, "SW"), (0x00000080, "LO"), (0x00000040, "DT"),
    (0x00000100, "CR"),
    (0x001F01FF, "FA"), (0x00120089, "FR"), (0x00120116, "FW"), (0x001200A0, "FX"),
    (0x000F003F, "KA"), (0x00020019, "KR"), (0x00020006, "KW"),
)
# Single-bit names used to spell other masks (bit -> name).
_RIGHT_BITS = {
    0: "CC", 1: "DC", 2: "LC", 3: "SW", 4: "RP", 5: "WP", 6: "DT", 7: "LO", 8: "CR",
    16: "SD", 17: "RC", 18: "WD", 19: "WO", 28: "GA", 29: "GX", 30: "GW", 31: "GR",
}
_LABEL_BITS = {0: "NW", 1: "NR", 2: "NX"}


def sid_to_string(raw: bytes, offset: int = 0) -> tuple[str, int]:
    """Decode a binary SID at ``offset``; return ``(S-1-... string, length in bytes)``."""
    if offset < 0 or len(raw) - offset < 8:
        raise ValueError(f"SID at byte {offset}: truncated header")
    revision, count = raw[offset], raw[offset + 1]
    if revision != 1:
        raise ValueError(f"SID at byte {offset}: revision {revision}, expected 1")
    if count > 15:
        raise ValueError(f"SID at byte {offset}: {count} sub-authorities (at most 15)")
    size = 8 + 4 * count
    if len(raw) - offset < size:
        raise ValueError(f"SID at byte {offset}: truncated ({count} sub-authorities)")
    authority = int.from_bytes(raw[offset + 2:offset + 8], "big")
    auth_text = str(authority) if authority < 1 << 32 else f"0x{authority:012X}"
    subs = struct.unpack_from(f"<{count}I", raw, offset + 8)
    return "-".join(["S-1", auth_text, *map(str, subs)]), size


def _sid_text(raw: bytes, offset: int) -> str:
    text, _ = sid_to_string(raw, offset)
    return SID_ALIASES.get(text, text)


def _rights(mask: int, label: bool) -> str:
    if mask == 0:
        return ""
    names = _LABEL_BITS if label else _RIGHT_BITS
    if not label:
        for value, name in _RIGHT_SETS:
            if mask == value:
                return name
    bits = [bit for bit in range(32) if mask >> bit & 1]
    if all(bit in names for bit in bits):
        return "".join(names[bit] for bit in bits)
    return f"0x{mask:x}"


def _ace(raw: bytes, offset: int, end: int) -> tuple[str, int]:
    """Render the ACE at ``offset`` (inside an ACL ending at ``end``); return text and size."""
    if end - offset < 4:
        raise ValueError(f"ACE at byte {offset}: truncated header")
    ace_type, flags, size = struct.unpack_from("<BBH", raw, offset)
    if size < 4 or offset + size > end:
        raise ValueError(f"ACE at byte {offset}: size {size} does not fit in the ACL")
    if ace_type not in _ACE_TYPES:
        raise ValueError(f"ACE at byte {offset}: unsupported ACE type 0x{ace_type:02x}")
    if flags & ~_KNOWN_ACE_FLAGS:
        raise ValueError(f"ACE at byte {offset}: unknown ACE flags 0x{flags:02x}")
    name, layout = _ACE_TYPES[ace_type]
    if size < 8:
        raise ValueError(f"ACE at byte {offset}: too short for an access mask")
    body = raw[offset:offset + size]  # the ACE's fields must lie within its own size
    (mask,) = struct.unpack_from("<I", body, 4)
    pos = 8
    object_guid = inherited_guid = ""
    if layout == "object":
        if len(body) - pos < 4:
            raise ValueError(f"ACE at byte {offset}: truncated object flags")
        (object_flags,) = struct.unpack_from("<I", body, pos)
        pos += 4
        if object_flags & ~0x3:
            raise ValueError(f"ACE at byte {offset}: unknown object flags 0x{object_flags:x}")
        for bit in (1, 2):
            if object_flags & bit:
                if len(body) - pos < 16:
                    raise ValueError(f"ACE at byte {offset}: truncated object type GUID")
                guid = str(uuid.UUID(bytes_le=body[pos:pos + 16]))
                pos += 16
                if bit == 1:
                    object_guid = guid
                else:
                    inherited_guid = guid
    try:
        sid, sid_size = sid_to_string(body, pos)
    except ValueError as exc:
        raise ValueError(f"ACE at byte {offset}: {exc}") from None
    if layout == "callback" and any(body[pos + sid_size:]):
        raise ValueError(f"ACE at byte {offset}: conditional expressions are not supported")
    flag_text = "".join(text for bit, text in _ACE_FLAGS if flags & bit)
    rights = _rights(mask, ace_type == _ML_ACE)
    sid = SID_ALIASES.get(sid, sid)
    return f"({name};{flag_text};{rights};{object_guid};{inherited_guid};{sid})", size


def _acl(raw: bytes, offset: int, label: str) -> str:
    if len(raw) - offset < 8:
        raise ValueError(f"{label} at byte {offset}: truncated ACL header")
    revision, _sbz1, size, count, _sbz2 = struct.unpack_from("<BBHHH", raw, offset)
    if revision not in (2, 3, 4):
        raise ValueError(f"{label}: ACL revision {revision} (expected 2 or 4)")
    if size < 8 or offset + size > len(raw):
        raise ValueError(f"{label}: ACL size {size} does not fit in the descriptor")
    end = offset + size
    pos = offset + 8
    aces = []
    for _ in range(count):
        text, ace_size = _ace(raw, pos, end)
        aces.append(text)
        pos += ace_size
    return "".join(aces)


def _acl_part(raw: bytes, control: int, acl_offset: int, tag: str, present: int,
              protected: int, auto_req: int, auto_inh: int) -> str:
    flags = (("P" if control & protected else "") + ("AR" if control & auto_req else "")
             + ("AI" if control & auto_inh else ""))
    if not control & present:
        return f"{tag}:{flags}" if flags else ""
    if acl_offset == 0:
        return f"{tag}:{flags}NO_ACCESS_CONTROL"
    return f"{tag}:{flags}" + _acl(raw, acl_offset, "DACL" if tag == "D" else "SACL")


def _check_offset(raw: bytes, offset: int, what: str) -> None:
    if offset and not 20 <= offset < len(raw):
        raise ValueError(f"{what} offset {offset} outside the descriptor ({len(raw)} bytes)")


def sddl_from_descriptor(raw: bytes | bytearray | memoryview) -> str:
    """Render a self-relative SECURITY_DESCRIPTOR (as stored in registry ``sk`` cells and
    NTFS ``$Secure``/``$SECURITY_DESCRIPTOR``) as an SDDL string.

    Layout: revision u8 (1), sbz1 u8, control u16, then u32 offsets of owner SID, group SID,
    SACL and DACL from the start of the descriptor (0 = absent).

    Raises:
        ValueError: truncated input, wrong revision, not self-relative, offsets or sizes
            outside the buffer, malformed SIDs/ACLs/ACEs, unsupported ACE types or flags.
    """
    raw = bytes(raw)
    if len(raw) < 20:
        raise ValueError(f"security descriptor too short ({len(raw)} bytes, header is 20)")
    revision, _sbz1, control, owner, group, sacl, dacl = struct.unpack_from("<BBHIIII", raw)
    if revision != 1:
        raise ValueError(f"security descriptor revision {revision}, expected 1")
    if not control & SE_SELF_RELATIVE:
        raise ValueError("security descriptor is not self-relative")
    for offset, what in ((owner, "owner"), (group, "group"), (sacl, "SACL"), (dacl, "DACL")):
        _check_offset(raw, offset, what)
    parts = []
    if owner:
        parts.append("O:" + _sid_text(raw, owner))
    if group:
        parts.append("G:" + _sid_text(raw, group))
    parts.append(_acl_part(raw, control, dacl, "D", SE_DACL_PRESENT, SE_DACL_PROTECTED,
                           SE_DACL_AUTO_INHERIT_REQ, SE_DACL_AUTO_INHERITED))
    parts.append(_acl_part(raw, control, sacl, "S", SE_SACL_PRESENT, SE_SACL_PROTECTED,
                           SE_SACL_AUTO_INHERIT_REQ, SE_SACL_AUTO_INHERITED))
    return "".join(parts)
