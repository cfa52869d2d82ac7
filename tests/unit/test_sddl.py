"""Tests of scanner.sddl: security descriptors built byte by byte here."""

from __future__ import annotations

import contextlib
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.sddl import sddl_from_descriptor, sid_to_string

TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
SELF_RELATIVE, DACL_PRESENT, SACL_PRESENT = 0x8000, 0x0004, 0x0010
DACL_PROTECTED, DACL_AUTO_INHERITED, DACL_AUTO_INHERIT_REQ = 0x1000, 0x0400, 0x0100
SACL_PROTECTED, SACL_AUTO_INHERITED = 0x2000, 0x0800


def sid(text: str) -> bytes:
    parts = text.split("-")
    subs = [int(p) for p in parts[3:]]
    return bytes([1, len(subs)]) + int(parts[2]).to_bytes(6, "big") + struct.pack(
        f"<{len(subs)}I", *subs)


def ace(ace_type: int, flags: int, mask: int, who: str, extra: bytes = b"") -> bytes:
    body = struct.pack("<I", mask) + sid(who) + extra
    return struct.pack("<BBH", ace_type, flags, 4 + len(body)) + body


def object_ace(ace_type: int, flags: int, mask: int, who: str, object_type: str | None,
               inherited_type: str | None) -> bytes:
    obj_flags = (1 if object_type else 0) | (2 if inherited_type else 0)
    body = struct.pack("<II", mask, obj_flags)
    for guid in (object_type, inherited_type):
        if guid:
            body += uuid.UUID(guid).bytes_le
    body += sid(who)
    return struct.pack("<BBH", ace_type, flags, 4 + len(body)) + body


def acl(*aces: bytes, revision: int = 2) -> bytes:
    body = b"".join(aces)
    return struct.pack("<BBHHH", revision, 0, 8 + len(body), len(aces), 0) + body


def descriptor(owner: str | None = None, group: str | None = None, dacl: bytes | None = None,
               sacl: bytes | None = None, control: int = 0, null_dacl: bool = False) -> bytes:
    """Self-relative SD laid out as Windows does: header, owner, group, SACL, DACL."""
    tail = b""
    offsets = {}
    for name, blob in (("owner", sid(owner) if owner else None),
                       ("group", sid(group) if group else None), ("sacl", sacl), ("dacl", dacl)):
        offsets[name] = 20 + len(tail) if blob is not None else 0
        tail += blob or b""
    control |= SELF_RELATIVE
    if dacl is not None or null_dacl:
        control |= DACL_PRESENT
    if sacl is not None:
        control |= SACL_PRESENT
    return struct.pack("<BBHIIII", 1, 0, control, offsets["owner"], offsets["group"],
                       offsets["sacl"], offsets["dacl"]) + tail


# --- well-formed descriptors -------------------------------------------------------------------


def test_typical_file_descriptor() -> None:
    raw = descriptor("S-1-5-32-544", "S-1-5-18", acl(
        ace(0, 0x00, 0x001F01FF, "S-1-5-18"),
        ace(0, 0x03, 0x10000000, "S-1-5-32-544"),
        ace(0, 0x0B, 0x10000000, "S-1-3-0"),
        ace(0, 0x13, 0x001200A9, "S-1-5-32-545"),
        ace(0, 0x10, 0x001301BF, "S-1-5-11"),
    ), control=DACL_PROTECTED | DACL_AUTO_INHERITED)
    assert sddl_from_descriptor(raw) == (
        "O:BAG:SYD:PAI(A;;FA;;;SY)(A;OICI;GA;;;BA)(A;OICIIO;GA;;;CO)"
        "(A;OICIID;0x1200a9;;;BU)(A;ID;0x1301bf;;;AU)")


def test_registry_typical_descriptor_with_trusted_installer() -> None:
    # HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run on Windows 10/11 (shape of it)
    raw = descriptor(TRUSTED_INSTALLER, "S-1-5-18", acl(
        ace(0, 0x0A, 0x10000000, "S-1-3-0"),
        ace(0, 0x02, 0x000F003F, "S-1-5-18"),
        ace(0, 0x02, 0x000F003F, "S-1-5-32-544"),
        ace(0, 0x02, 0x00020019, "S-1-5-32-545"),
        ace(0, 0x02, 0x00020019, "S-1-15-2-1"),
        ace(0, 0x02, 0x000F003F, TRUSTED_INSTALLER),
        ace(0, 0x02, 0x0003001F, "S-1-5-32-551"),
    ), control=DACL_PROTECTED | DACL_AUTO_INHERIT_REQ | DACL_AUTO_INHERITED)
    assert sddl_from_descriptor(raw) == (
        f"O:{TRUSTED_INSTALLER}G:SYD:PARAI(A;CIIO;GA;;;CO)(A;CI;KA;;;SY)(A;CI;KA;;;BA)"
        f"(A;CI;KR;;;BU)(A;CI;KR;;;AC)(A;CI;KA;;;{TRUSTED_INSTALLER})"
        "(A;CI;CCDCLCSWRPSDRC;;;BO)")


@pytest.mark.parametrize(("mask", "text"), [
    (0x001F01FF, "FA"), (0x00120089, "FR"), (0x00120116, "FW"), (0x001200A0, "FX"),
    (0x000F003F, "KA"), (0x00020019, "KR"), (0x00020006, "KW"), (0x10000000, "GA"),
    (0x80000000, "GR"), (0x40000000, "GW"), (0x20000000, "GX"), (0xA0000000, "GXGR"),
    (0x00010000, "SD"), (0x00060000, "RCWD"), (0x000E0000, "RCWDWO"), (0x0, ""),
    (0x00100000, "0x100000"), (0x001200A9, "0x1200a9"), (0x01000000, "0x1000000"),
    (0x00000200, "0x200"),
])
def test_rights(mask: int, text: str) -> None:
    raw = descriptor(dacl=acl(ace(0, 0, mask, "S-1-1-0")))
    assert sddl_from_descriptor(raw) == f"D:(A;;{text};;;WD)"


@pytest.mark.parametrize(("flags", "text"), [
    (0x01, "OI"), (0x02, "CI"), (0x04, "NP"), (0x08, "IO"), (0x10, "ID"),
    (0x1F, "OICINPIOID"), (0x0A, "CIIO"),
])
def test_ace_flags(flags: int, text: str) -> None:
    raw = descriptor(dacl=acl(ace(1, flags, 0x001F01FF, "S-1-5-7")))
    assert sddl_from_descriptor(raw) == f"D:(D;{text};FA;;;AN)"


def test_sacl_audit_and_label() -> None:
    raw = descriptor("S-1-5-18", "S-1-5-18", dacl=acl(ace(0, 0, 0x000F003F, "S-1-5-18")),
                     sacl=acl(ace(2, 0xC2, 0x000D0006, "S-1-1-0"),
                              ace(0x11, 0, 0x1, "S-1-16-4096"),
                              ace(0x11, 0, 0x3, "S-1-16-12288"),
                              ace(0x11, 0, 0x10, "S-1-16-8192")),
                     control=SACL_PROTECTED | SACL_AUTO_INHERITED)
    assert sddl_from_descriptor(raw) == (
        "O:SYG:SYD:(A;;KA;;;SY)S:PAI(AU;CISAFA;DCLCSDWDWO;;;WD)(ML;;NW;;;LW)(ML;;NWNR;;;HI)"
        "(ML;;0x10;;;ME)")


def test_object_aces() -> None:
    guid1 = "bf967aba-0de6-11d0-a285-00aa003049e2"
    guid2 = "4828cc14-1437-45bc-9b07-ad6f015e5f28"
    raw = descriptor(dacl=acl(
        object_ace(5, 0x12, 0x00000130, "S-1-5-10", guid1, guid2),
        object_ace(6, 0, 0x00000010, "S-1-1-0", None, guid2),
        object_ace(5, 0, 0x00000100, "S-1-5-11", guid1, None),
        object_ace(5, 0, 0x00000100, "S-1-5-11", None, None),
    ))
    assert sddl_from_descriptor(raw) == (
        f"D:(OA;CIID;RPWPCR;{guid1};{guid2};PS)(OD;;RP;;{guid2};WD)"
        f"(OA;;CR;{guid1};;AU)(OA;;CR;;;AU)")


def test_unaliased_sids_and_big_authority() -> None:
    domain_user = "S-1-5-21-1004336348-1177238915-682003330-1001"
    raw = descriptor(domain_user, "S-1-5-21-1004336348-1177238915-682003330-513",
                     dacl=acl(ace(0, 0, 0x001F01FF, domain_user)))
    assert sddl_from_descriptor(raw) == (
        f"O:{domain_user}G:S-1-5-21-1004336348-1177238915-682003330-513"
        f"D:(A;;FA;;;{domain_user})")
    big = bytes([1, 1]) + (1 << 40).to_bytes(6, "big") + struct.pack("<I", 7)
    assert sid_to_string(big) == ("S-1-0x010000000000-7", 12)


def test_absent_null_and_empty_acls() -> None:
    assert sddl_from_descriptor(descriptor("S-1-5-18")) == "O:SY"
    assert sddl_from_descriptor(descriptor(group="S-1-5-32-544")) == "G:BA"
    assert sddl_from_descriptor(descriptor("S-1-5-18", null_dacl=True)) == (
        "O:SYD:NO_ACCESS_CONTROL")
    assert sddl_from_descriptor(descriptor(dacl=acl(), control=DACL_PROTECTED)) == "D:P"
    assert sddl_from_descriptor(descriptor(control=DACL_PROTECTED)) == "D:P"
    assert sddl_from_descriptor(descriptor()) == ""


def test_acl_revision_4_and_padded_ace() -> None:
    padded = ace(0, 0, 0x00020019, "S-1-5-32-545", extra=b"\0" * 4)
    raw = descriptor(dacl=acl(padded, ace(0, 0, 0x000F003F, "S-1-5-18"), revision=4))
    assert sddl_from_descriptor(raw) == "D:(A;;KR;;;BU)(A;;KA;;;SY)"


def test_callback_ace_without_condition_is_rendered() -> None:
    raw = descriptor(dacl=acl(ace(9, 0, 0x001F01FF, "S-1-5-18")))
    assert sddl_from_descriptor(raw) == "D:(XA;;FA;;;SY)"


def test_accepts_bytearray_and_memoryview() -> None:
    raw = descriptor("S-1-5-18")
    assert sddl_from_descriptor(bytearray(raw)) == sddl_from_descriptor(memoryview(raw)) == "O:SY"


# --- malformed input ---------------------------------------------------------------------------

GOOD = descriptor("S-1-5-32-544", "S-1-5-18", acl(ace(0, 0x02, 0x000F003F, "S-1-5-18")))


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "too short"),
    (GOOD[:19], "too short"),
    (b"\x02" + GOOD[1:], "revision 2"),
    (GOOD[:2] + struct.pack("<H", DACL_PRESENT) + GOOD[4:], "not self-relative"),
    (GOOD[:4] + struct.pack("<I", 4000) + GOOD[8:], "owner offset"),
    (GOOD[:len(GOOD) - 3], "DACL"),  # truncated inside the last ACE's SID
    (descriptor("S-1-5-18")[:-2], "SID"),
    (descriptor(dacl=acl(ace(0x12, 0, 1, "S-1-1-0"))), "unsupported ACE type 0x12"),
    (descriptor(dacl=acl(ace(0, 0x20, 1, "S-1-1-0"))), "unknown ACE flags"),
    (descriptor(dacl=acl(ace(9, 0, 1, "S-1-1-0", extra=b"artx\x01\x02\x03\x04"))),
     "conditional"),
    (descriptor(dacl=acl(ace(0, 0, 1, "S-1-1-0"), revision=7)), "ACL revision 7"),
])
def test_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sddl_from_descriptor(raw)


def test_ace_size_overflowing_acl() -> None:
    good_ace = ace(0, 0, 1, "S-1-1-0")
    bad_ace = good_ace[:2] + struct.pack("<H", 200) + good_ace[4:]
    with pytest.raises(ValueError, match="does not fit"):
        sddl_from_descriptor(descriptor(dacl=acl(bad_ace)))


def test_sid_with_too_many_subauthorities() -> None:
    bad = bytes([1, 16]) + bytes(6) + bytes(64)
    with pytest.raises(ValueError, match="sub-authorities"):
        sid_to_string(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=199))
def test_garbage_raises_only_value_error(noise: bytes, cut: int) -> None:
    for raw in (noise, GOOD[:cut] + noise, GOOD[:20] + noise):
        with contextlib.suppress(ValueError):
            sddl_from_descriptor(raw)
