"""Extended attribute values as the kernel's VFS gives them: POSIX ACLs
(``system.posix_acl_access``, v2 encoding; :func:`acl_xattr`) and file capabilities
(``security.capability``; :func:`capability_xattr`)."""

from __future__ import annotations

import struct
from collections.abc import Iterable

# -- xattr values -----------------------------------------------------------------------------

_ACL_TAGS = {("user", False): 0x01, ("user", True): 0x02, ("group", False): 0x04,
             ("group", True): 0x08, ("mask", False): 0x10, ("other", False): 0x20}
_ACL_UNDEFINED_ID = 0xFFFFFFFF


def acl_xattr(text: str) -> bytes:
    """The VFS (v2) ``system.posix_acl_access`` value for a ``getfacl -c -n`` style short text
    such as ``user::rw-,user:1000:r--,group::r--,mask::r--,other::r--`` (entries must already
    be in canonical order, as setfacl stores them)."""
    out = struct.pack("<I", 2)
    for entry in text.split(","):
        tag, qualifier, perms = entry.split(":")
        perm = sum(bit for ch, bit in zip(perms, (4, 2, 1), strict=True) if ch != "-")
        code = _ACL_TAGS[(tag, bool(qualifier))]
        out += struct.pack("<HHI", code, perm, int(qualifier) if qualifier else _ACL_UNDEFINED_ID)
    return out


def capability_xattr(permitted: Iterable[int], effective: bool = True) -> bytes:
    """A revision-2 ``security.capability`` value (what ``setcap CAPS=p[e]`` writes) for the
    capability numbers in ``permitted`` (e.g. 13 = cap_net_raw, 10 = cap_net_bind_service)."""
    mask = 0
    for cap in permitted:
        mask |= 1 << cap
    magic = 0x02000000 | (1 if effective else 0)
    return struct.pack("<IIIII", magic, mask & 0xFFFFFFFF, 0, mask >> 32, 0)
