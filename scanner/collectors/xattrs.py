"""Render raw ext4 extended attributes as comparable, human-readable text.

Pure functions, no I/O. Input is the raw value bytes of each xattr as a filesystem reader
returns them (the ext backend returns ``system.posix_acl_*`` in the ext4 **on-disk**
encoding, version 1; the kernel's ``getxattr`` returns the VFS encoding, version 2; both are
accepted).

* POSIX ACLs are rendered like ``getfacl -c -n`` joined with ``,``:
  ``user::rw-,user:1000:r--,group::r--,mask::r--,other::r--`` (entries in stored order, which
  is canonical because the kernel and setfacl always store them sorted).
* ``security.capability`` is rendered like ``getcap -n`` (libcap 2.66 ``cap_to_text``):
  ``cap_net_bind_service,cap_net_raw=ep``, plus `` [rootid=N]`` for a v3 value with a
  non-zero namespace root uid. Capabilities above ``cap_checkpoint_restore`` (40) are written
  ``cap_N`` where libcap would write the bare number ``N``.
* Everything else is text when the value is printable UTF-8, else ``0x`` + hex. A value whose
  text itself starts with ``0x`` is also written in hex, so the two forms never collide.
  Names are bytes too and are escaped like file names (``user.\\xff`` for the byte 0xFF).
"""

from __future__ import annotations

import struct

from scanner.paths import decode_name

__all__ = [
    "ACL_ACCESS",
    "ACL_DEFAULT",
    "CAPABILITY",
    "CAP_NAMES",
    "render_capability",
    "render_posix_acl",
    "render_xattrs",
    "render_value",
]

ACL_ACCESS = b"system.posix_acl_access"
ACL_DEFAULT = b"system.posix_acl_default"
CAPABILITY = b"security.capability"

# --- POSIX ACLs ------------------------------------------------------------------------------

_ACL_VFS_VERSION = 2  # POSIX_ACL_XATTR_VERSION (getxattr / setxattr format)
_ACL_EXT4_VERSION = 1  # EXT4_ACL_VERSION (on-disk format)

_ACL_USER_OBJ = 0x01
_ACL_USER = 0x02
_ACL_GROUP_OBJ = 0x04
_ACL_GROUP = 0x08
_ACL_MASK = 0x10
_ACL_OTHER = 0x20

_ACL_TAG_NAMES = {
    _ACL_USER_OBJ: "user",
    _ACL_USER: "user",
    _ACL_GROUP_OBJ: "group",
    _ACL_GROUP: "group",
    _ACL_MASK: "mask",
    _ACL_OTHER: "other",
}
_ACL_TAGS_WITH_ID = (_ACL_USER, _ACL_GROUP)
_ACL_PERM_BITS = 0x7  # r=4, w=2, x=1


def _acl_entry_text(tag: int, perm: int, qualifier: int | None, offset: int) -> str:
    name = _ACL_TAG_NAMES.get(tag)
    if name is None:
        raise ValueError(f"POSIX ACL: unknown entry tag 0x{tag:x} at byte {offset}")
    if perm & ~_ACL_PERM_BITS:
        raise ValueError(f"POSIX ACL: invalid permission bits 0x{perm:x} at byte {offset}")
    perms = ("r" if perm & 4 else "-") + ("w" if perm & 2 else "-") + ("x" if perm & 1 else "-")
    who = str(qualifier) if tag in _ACL_TAGS_WITH_ID else ""
    return f"{name}:{who}:{perms}"


def _acl_entries(raw: bytes) -> list[str]:
    if len(raw) < 4:
        raise ValueError(f"POSIX ACL: value too short ({len(raw)} bytes) for the version header")
    (version,) = struct.unpack_from("<I", raw, 0)
    entries: list[str] = []
    if version == _ACL_VFS_VERSION:
        # struct posix_acl_xattr_entry { le16 e_tag; le16 e_perm; le32 e_id; }
        if (len(raw) - 4) % 8:
            raise ValueError(
                f"POSIX ACL (VFS v2): {len(raw) - 4} entry bytes is not a multiple of 8"
            )
        for offset in range(4, len(raw), 8):
            tag, perm, qualifier = struct.unpack_from("<HHI", raw, offset)
            entries.append(_acl_entry_text(tag, perm, qualifier, offset))
    elif version == _ACL_EXT4_VERSION:
        # ext4_acl_entry (8 bytes, with e_id) for ACL_USER / ACL_GROUP,
        # ext4_acl_entry_short (4 bytes) for all other tags.
        offset = 4
        while offset < len(raw):
            if len(raw) - offset < 4:
                raise ValueError(f"POSIX ACL (ext4 v1): truncated entry at byte {offset}")
            tag, perm = struct.unpack_from("<HH", raw, offset)
            qualifier = None
            if tag in _ACL_TAGS_WITH_ID:
                if len(raw) - offset < 8:
                    raise ValueError(
                        f"POSIX ACL (ext4 v1): truncated user/group entry at byte {offset}"
                    )
                (qualifier,) = struct.unpack_from("<I", raw, offset + 4)
                size = 8
            else:
                size = 4
            entries.append(_acl_entry_text(tag, perm, qualifier, offset))
            offset += size
    else:
        raise ValueError(
            f"POSIX ACL: unknown version {version} (expected 2 = VFS or 1 = ext4 on-disk)"
        )
    if not entries:
        raise ValueError("POSIX ACL: no entries")
    return entries


def render_posix_acl(raw: bytes) -> str:
    """Render a ``system.posix_acl_access`` / ``system.posix_acl_default`` value.

    Accepts the Linux VFS encoding (le32 version 2, then 8-byte entries ``tag u16, perm u16,
    id u32``) and the ext4 on-disk encoding (le32 version 1, then ``tag u16, perm u16`` with a
    ``u32`` id only for ACL_USER and ACL_GROUP entries). Returns the ``getfacl``-style short
    text with numeric ids, entries in stored order, e.g.
    ``user::rw-,user:1000:r--,group::r--,mask::r--,other::r--``.

    Raises:
        ValueError: unknown version, truncated or trailing bytes, unknown tag, permission bits
            other than rwx, or no entries.
    """
    return ",".join(_acl_entries(bytes(raw)))


# --- File capabilities -----------------------------------------------------------------------

CAP_NAMES: tuple[str, ...] = (
    "cap_chown",  # 0
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",  # 5
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",  # 10
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",  # 15
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",  # 20
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",  # 25
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",  # 30
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",  # 35
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",  # 40
)

_VFS_CAP_REVISION_MASK = 0xFF000000
_VFS_CAP_FLAGS_EFFECTIVE = 0x000001
# revision -> (total size in bytes, number of 32-bit words per set)
_VFS_CAP_REVISIONS = {1: (12, 1), 2: (20, 2), 3: (24, 2)}

# libcap's flag encoding inside cap_to_text (LIBCAP_EFF/PER/INH); clauses are emitted in
# descending order of this value, so it fixes the clause order of the output
_EFF, _PER, _INH = 1, 2, 4
_MAX_BITS = 64  # __CAP_MAXBITS


def _flags_text(state: int) -> str:
    return (
        ("e" if state & _EFF else "")
        + ("i" if state & _INH else "")
        + ("p" if state & _PER else "")
    )


def _cap_name(bit: int) -> str:
    return CAP_NAMES[bit] if bit < len(CAP_NAMES) else f"cap_{bit}"


def _caps_to_text(effective: int, inheritable: int, permitted: int) -> str:
    """Python port of libcap 2.66 ``cap_to_text`` (cap_max_bits() = len(CAP_NAMES))."""

    def state(bit: int) -> int:
        return (
            (_EFF if effective >> bit & 1 else 0)
            | (_INH if inheritable >> bit & 1 else 0)
            | (_PER if permitted >> bit & 1 else 0)
        )

    named = len(CAP_NAMES)
    histo = [0] * 8
    for bit in range(named):
        histo[state(bit)] += 1
    # most common state of the named bits; ties go to the lower state (prefers "none")
    m = 7
    for t in range(6, -1, -1):
        if histo[t] >= histo[m]:
            m = t

    clauses: list[str] = []
    base = "=" + _flags_text(m)
    for t in range(7, -1, -1):
        if t == m or not histo[t]:
            continue
        clause = ",".join(_cap_name(b) for b in range(named) if state(b) == t)
        raised = t & ~m
        if raised:
            if base == "=" and not clauses:
                # libcap: "= foo+eip ..." is shortened to "foo=eip ..."
                base = ""
                clause += "=" + _flags_text(raised)
            else:
                clause += "+" + _flags_text(raised)
        lowered = ~t & m
        if lowered:
            clause += "-" + _flags_text(lowered)
        clauses.append(clause)

    # bits unknown to libcap: always listed, as additions
    for t in range(7, 0, -1):
        bits = [b for b in range(named, _MAX_BITS) if state(b) == t]
        if bits:
            clauses.append(",".join(_cap_name(b) for b in bits) + "+" + _flags_text(t))

    return " ".join(([base] if base else []) + clauses)


def render_capability(raw: bytes) -> str:
    """Render a ``security.capability`` value (``struct vfs_cap_data``) like ``getcap -n``.

    Layout: le32 ``magic_etc`` (revision in the high byte, bit 0 = effective flag), then per
    32-bit word a le32 permitted and a le32 inheritable mask (1 word for revision 1, 2 words
    for revisions 2 and 3), then for revision 3 a le32 ``rootid``. As in the kernel and libcap,
    the effective flag raises every permitted or inheritable capability in the effective set.
    Examples: ``cap_net_bind_service,cap_net_raw=ep``, ``=ep`` (all), ``=`` (none),
    ``cap_net_raw=ep [rootid=1000]`` (v3 with a namespace root uid, printed as a signed
    32-bit number like getcap does).

    Raises:
        ValueError: unknown revision, size not matching the revision, or ``magic_etc`` flag
            bits other than the effective flag (ignored by the kernel, refused here so that
            ``render_xattrs`` keeps such a value as hex and nothing is lost).
    """
    raw = bytes(raw)
    if len(raw) < 4:
        raise ValueError(f"capability: value too short ({len(raw)} bytes)")
    (magic_etc,) = struct.unpack_from("<I", raw, 0)
    revision = (magic_etc & _VFS_CAP_REVISION_MASK) >> 24
    if revision not in _VFS_CAP_REVISIONS:
        raise ValueError(f"capability: unknown vfs_cap_data revision {revision}")
    size, words = _VFS_CAP_REVISIONS[revision]
    if len(raw) != size:
        raise ValueError(f"capability: revision {revision} must be {size} bytes, got {len(raw)}")
    extra_flags = magic_etc & ~_VFS_CAP_REVISION_MASK & ~_VFS_CAP_FLAGS_EFFECTIVE
    if extra_flags:
        raise ValueError(f"capability: unknown flag bits 0x{extra_flags:06x} in magic_etc")

    permitted = inheritable = 0
    for word in range(words):
        p, i = struct.unpack_from("<II", raw, 4 + 8 * word)
        permitted |= p << (32 * word)
        inheritable |= i << (32 * word)
    effective = permitted | inheritable if magic_etc & _VFS_CAP_FLAGS_EFFECTIVE else 0

    text = _caps_to_text(effective, inheritable, permitted)
    if revision == 3:
        (rootid,) = struct.unpack_from("<I", raw, 20)
        if rootid:
            # getcap prints it with %d
            signed = rootid - (1 << 32) if rootid >= 1 << 31 else rootid
            text += f" [rootid={signed}]"
    return text


# --- All xattrs ------------------------------------------------------------------------------


def _hex(raw: bytes) -> str:
    return "0x" + bytes(raw).hex()


def render_value(raw: bytes) -> str:
    """Render any xattr value: the text if it is printable UTF-8 (and does not start with
    ``0x``), else ``0x`` + lowercase hex. ``b""`` renders as ``""``."""
    raw = bytes(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _hex(raw)
    if text.isprintable() and not text.startswith("0x"):
        return text
    return _hex(raw)


def render_xattrs(
    attrs: dict[bytes, bytes],
) -> tuple[str | None, str | None, dict[str, str]]:
    """Split and render all xattrs of one inode (names and values are bytes, as stored).

    Returns ``(acl, capability, other)``:

    * ``acl``: the rendered ``system.posix_acl_access`` followed by the entries of
      ``system.posix_acl_default`` each prefixed with ``default:`` (all joined with ``,``,
      as ``getfacl`` lists them); only the default part if there is no access ACL; ``None``
      if neither exists. A malformed part is kept as ``0x``+hex (``default:0x...`` for the
      default ACL).
    * ``capability``: the rendered ``security.capability``, ``0x``+hex if malformed, ``None``
      if absent.
    * ``other``: every remaining xattr, its name escaped like file names
      (:func:`scanner.paths.decode_name`: a byte that is not UTF-8, or a control character,
      is written ``\\xNN`` and a backslash ``\\\\``) mapped to :func:`render_value` of its
      value. Both forms are reversible, so distinct attributes never collide.

    Never raises on bad names or values.
    """
    parts: list[str] = []
    if ACL_ACCESS in attrs:
        try:
            parts.append(render_posix_acl(attrs[ACL_ACCESS]))
        except ValueError:
            parts.append(_hex(attrs[ACL_ACCESS]))
    if ACL_DEFAULT in attrs:
        try:
            parts.extend("default:" + e for e in _acl_entries(bytes(attrs[ACL_DEFAULT])))
        except ValueError:
            parts.append("default:" + _hex(attrs[ACL_DEFAULT]))
    acl = ",".join(parts) if parts else None

    capability: str | None = None
    if CAPABILITY in attrs:
        try:
            capability = render_capability(attrs[CAPABILITY])
        except ValueError:
            capability = _hex(attrs[CAPABILITY])

    special = (ACL_ACCESS, ACL_DEFAULT, CAPABILITY)
    other = {decode_name(bytes(name)): render_value(value) for name, value in attrs.items()
             if name not in special}
    return acl, capability, other
