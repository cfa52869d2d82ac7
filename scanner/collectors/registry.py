"""Offline registry hives -> monitored key and value entities.

    hive = open_hive(software_bytes, log1=log1_bytes, log2=log2_bytes)  # scanner.registry.replay
    entities, unreadable = collect(hive, "HKLM\\SOFTWARE", policy_entities)

Rules:

* A WINDOWS_REGISTRY policy entity applies to a hive when its path lies in the hive's mount
  prefix (``HKLM\\SOFTWARE`` for SOFTWARE, ``HKLM\\SYSTEM`` for SYSTEM, ``HKU\\<SID>`` for a
  user's NTUSER.DAT), or above it (``HKLM`` recursive covers the whole hive). Key names match
  case-insensitively; ``HKEY_LOCAL_MACHINE``/``HKEY_USERS`` equal ``HKLM``/``HKU``.
* ``depth``: ``None`` = the key and all its subkeys, ``0`` = the key and its values only,
  ``n`` = ``n`` levels of subkeys. A wildcard (``*``, ``?``) in the last segment matches each
  direct subkey of the parent (each then walked with the entity's depth). Wildcards match any
  character of a key name, ``/`` included (``/`` is legal in registry names).
* ``values``: when the entity names values, only those values are entities (case-insensitive,
  in every key walked) and no key entity is produced: value-level monitoring, as in the newer
  recommended table.
* ``excludes``: keys (and their trees) matching an exclude are skipped.
* ``HKLM\\SYSTEM\\CurrentControlSet`` is not stored in the hive: it is resolved through
  ``Select\\Current`` to ``ControlSet00N``; entity ids keep the ``CurrentControlSet``
  spelling. A whole-hive walk lists the real ``ControlSet00N`` keys only.
* Ids: a key is ``<mount prefix>\\<names as stored on disk>``; a value is its key id, two
  backslashes, and the value name as stored (``HKLM\\SOFTWARE\\...\\Run\\\\OneDrive``; the
  default value has the empty name, ``...\\Run\\\\``). Key names never hold a backslash and
  are never empty, so the double backslash cannot be confused with a key path.
* A key whose cells fail to parse is reported in ``unreadable`` ({id: reason}): entities at or
  below that id are incomplete and must keep their previous state (never "removed").
* When the whole hive was read (clean, or replayed from its logs, with no unreadable key) its
  entities carry a :class:`~scanner.entities.HiveTag`: the mount prefix and a digest of the
  hive's bytes, the registry entities walking it and :data:`RULES`. The store stages nothing
  of a hive whose digest it already holds (:mod:`scanner.storage.hives`).
"""

from __future__ import annotations

import codecs
import gc
import hashlib
import re
from collections.abc import Iterable

from scanner.entities import (
    HiveTag,
    RegistryEntity,
    RegistryKeyEntity,
    RegistryValueEntity,
    value_id,
)
from scanner.policy import EntityKind, PolicyEntity
from scanner.registry.controlset import resolve_current_control_set
from scanner.registry.hive import (
    REG_DWORD,
    REG_DWORD_BIG_ENDIAN,
    REG_EXPAND_SZ,
    REG_LINK,
    REG_MULTI_SZ,
    REG_QWORD,
    REG_SZ,
    Hive,
    HiveError,
    RegKey,
    filetime_to_ns,
    type_name,
)
from scanner.sddl import sddl_from_descriptor

__all__ = ["collect", "reaches", "preview", "hive_tag", "PREVIEW_CHARS", "RULES"]

# The version of what a hive yields (ids, fields, previews, ACL rendering): part of every hive
# digest, so a change of these rules stages every hive again. Bump it with such a change.
RULES = 1
# hive states whose every key was read: their entities are what the hive holds
_WHOLE = frozenset({"clean", "replayed"})

PREVIEW_CHARS = 256
_PREVIEW_BYTES = 64  # binary types: hex of the first 64 bytes
_SMALL_DATA = 32  # values of at most this many bytes share their digest and preview ...
_SMALL_CACHE = 1 << 16  # ... through a cache of at most this many distinct (type, data)


# -- previews ------------------------------------------------------------------------------

def _text(data: bytes) -> str:
    return _utf16(data[:len(data) & ~1], "replace", True)[0]


def _bounded(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


# A string preview needs at most PREVIEW_CHARS + 1 characters, and a character takes at most
# two UTF-16 units: decoding this many bytes of a long REG_SZ gives the same preview as
# decoding all of it (a surrogate pair cut at the end only spoils a character past the cut).
_TEXT_PREFIX = 4 * (PREVIEW_CHARS + 1)
_utf16 = codecs.utf_16_le_decode  # bytes.decode("utf-16le") without the codec lookup


def preview(value_type: int, data: bytes) -> str:
    """Readable, bounded text of value data: strings up to the first NUL (REG_MULTI_SZ
    items joined with ``\\n``, trailing empty items dropped), integers in decimal, anything
    else (or integers of the wrong size) as ``0x`` + hex of the first 64 bytes; at most
    :data:`PREVIEW_CHARS` characters, ``…`` marking a cut."""
    if value_type in (REG_SZ, REG_EXPAND_SZ):
        return _bounded(_text(data[:_TEXT_PREFIX]).split("\0", 1)[0])
    if value_type == REG_DWORD and len(data) == 4:
        return str(int.from_bytes(data, "little"))
    if value_type == REG_LINK:
        return _bounded(_text(data[:_TEXT_PREFIX]))
    if value_type == REG_MULTI_SZ:
        items = _text(data).split("\0")
        while items and not items[-1]:
            items.pop()
        return _bounded("\n".join(items))
    if value_type == REG_DWORD_BIG_ENDIAN and len(data) == 4:
        return str(int.from_bytes(data, "big"))
    if value_type == REG_QWORD and len(data) == 8:
        return str(int.from_bytes(data, "little"))
    text = "0x" + data[:_PREVIEW_BYTES].hex()
    return text + "…" if len(data) > _PREVIEW_BYTES else text


# -- collecting ----------------------------------------------------------------------------

_HEADS = {"HKEY_LOCAL_MACHINE": "HKLM", "HKEY_USERS": "HKU"}
_CCS = "CurrentControlSet"


def _segments(path: str) -> list[str]:
    segs = [s for s in path.strip().split("\\") if s]
    if segs:
        segs[0] = _HEADS.get(segs[0].upper(), segs[0].upper())
    return segs


def _prefix_matches(segs: list[str], prefix: list[str]) -> bool:
    """Whether an entity's first segments name a hive's mount prefix (``HKU\\*`` matches
    every user's hive)."""
    return all(_name_regex(s).match(p) for s, p in zip(segs, prefix, strict=False))


def reaches(entity_path: str, mount_prefix: str) -> bool:
    """Whether a registry entity can reach into the hive mounted at ``mount_prefix``
    (``HKLM\\SOFTWARE\\...`` into SOFTWARE, ``HKLM`` into every machine hive,
    ``HKU\\*\\...`` into every user's): lets a caller skip reading hives nobody monitors."""
    return _prefix_matches(_segments(entity_path), _segments(mount_prefix))


def _name_regex(pattern: str) -> re.Pattern[str]:
    """A key-name pattern: ``*`` any run, ``?`` one character, case-insensitive."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body + r"\Z", re.IGNORECASE | re.DOTALL)


class _Collector:
    def __init__(self, hive: Hive, prefix: list[str]) -> None:
        self.hive = hive
        self.prefix = prefix
        self.out: dict[str, RegistryEntity] = {}
        self.unreadable: dict[str, str] = {}
        self._acl: dict[int, str | None] = {}
        self._ccs: str | None = None
        self._types: dict[int, str] = {}
        self._small: dict[tuple[int, bytes], tuple[str, str]] = {}

    # -- finding the roots of an entity --

    def roots(self, entity: PolicyEntity) -> Iterable[tuple[RegKey, str, int | None]]:
        """(key, id, remaining depth) for each key the entity starts at in this hive.

        A subkey list that cannot be read on the way down is recorded in ``unreadable``
        under the id the state uses for what the entity reaches there: the ids of the keys
        found so far (on-disk spelling, ``CurrentControlSet`` kept), then the entity's next
        segment when it is a plain name (matched case-insensitively downstream), or nothing
        more when it is a wildcard (the whole key whose list failed); the entity then
        yields nothing."""
        segs = _segments(entity.path)
        last = _name_regex(segs[-1])
        if len(segs) <= len(self.prefix):
            # the entity is the mount point or above it: the hive root may be inside it
            if not self._under_prefix(segs):
                return
            below = len(self.prefix) - len(segs)
            if entity.depth is not None and entity.depth < below:
                return
            depth = None if entity.depth is None else entity.depth - below
            yield self.hive.root, "\\".join(self.prefix), depth
            return
        if not self._under_prefix(segs[:len(self.prefix)]):
            return
        inner = segs[len(self.prefix):]
        key, key_id = self.hive.root, "\\".join(self.prefix)
        for i, seg in enumerate(inner):
            pattern = i == len(inner) - 1 and entity.is_pattern
            try:
                if pattern:
                    matches = [sub for sub in self.hive.subkeys(key) if last.match(sub.name)]
                else:
                    found = self._child(key, seg, first=i == 0)
            except HiveError as exc:
                self.unreadable[key_id if pattern else f"{key_id}\\{seg}"] = str(exc)
                return
            if pattern:
                for sub in matches:
                    yield sub, f"{key_id}\\{sub.name}", entity.depth
                return
            if found is None:
                return
            key, key_id = found[0], f"{key_id}\\{found[1]}"
        yield key, key_id, entity.depth

    def _under_prefix(self, segs: list[str]) -> bool:
        return _prefix_matches(segs, self.prefix)

    def _child(self, key: RegKey, name: str, first: bool) -> tuple[RegKey, str] | None:
        """The subkey and its id spelling; ``CurrentControlSet`` at the top is resolved."""
        sub = self.hive.subkey(key, name)
        if sub is not None:
            return sub, sub.name
        if first and name.upper() == _CCS.upper():
            if self._ccs is None:
                self._ccs = resolve_current_control_set(self.hive)
            sub = self.hive.subkey(key, self._ccs)
            if sub is not None:
                return sub, _CCS
        return None

    # -- walking --

    def walk(self, entity: PolicyEntity, root: RegKey, root_id: str, depth: int | None,
             excluded: list[list[re.Pattern[str]]]) -> None:
        wanted = frozenset(v.upper() for v in entity.values)
        policies = (entity.name,)  # shared by every entity this walk creates
        subkeys, emit_key, emit_values = self.hive.subkeys, self._emit_key, self._emit_values
        stack = [(root, root_id, depth)]
        seen: set[int] = set()
        while stack:
            key, kid, left = stack.pop()
            if key.offset in seen:  # a corrupt subkey list pointing back up the tree
                self.unreadable[kid] = f"key cell 0x{key.offset:x} appears twice (a cycle)"
                continue
            seen.add(key.offset)
            if excluded and _is_excluded(kid, excluded):
                continue
            try:
                if not wanted:
                    emit_key(key, kid, policies)
                if key.value_count:
                    emit_values(key, kid, wanted, policies)
                if key.subkey_count and (left is None or left > 0):
                    nxt = None if left is None else left - 1
                    base = kid + "\\"
                    stack.extend([(sub, base + sub.name, nxt)
                                  for sub in reversed(subkeys(key))])
            except HiveError as exc:
                self.unreadable[kid] = str(exc)

    def _merge(self, known: RegistryEntity, policy: str) -> None:
        """A second entity covers an id already collected: add its name to the policies."""
        if policy not in known.policies:
            known.policies = tuple(sorted((*known.policies, policy)))

    def _emit_key(self, key: RegKey, kid: str, policies: tuple[str]) -> None:
        known = self.out.get(kid)
        if known is not None:
            self._merge(known, policies[0])
            return
        acl = self._acl.get(key.security_offset, "")
        if acl == "":
            raw = self.hive.security(key)
            try:
                acl = None if raw is None else sddl_from_descriptor(raw)
            except ValueError:
                acl = "0x" + raw.hex() if raw is not None else None
            self._acl[key.security_offset] = acl
        self.out[kid] = RegistryKeyEntity(kid, filetime_to_ns(key.last_write), acl,
                                          key.subkey_count, key.value_count, policies)

    def _emit_values(self, key: RegKey, kid: str, wanted: frozenset[str],
                     policies: tuple[str]) -> None:
        out, types, small, sha256 = self.out, self._types, self._small, hashlib.sha256
        prefix = value_id(kid, "")
        for name, vtype, data, error in self.hive.iter_values(key):
            if wanted and name.upper() not in wanted:
                continue
            vid = prefix + name
            if error is not None:  # its previous state is kept
                self.unreadable[vid] = error
                continue
            known = out.get(vid)
            if known is not None:
                self._merge(known, policies[0])
                continue
            tname = types.get(vtype)
            if tname is None:
                tname = types[vtype] = type_name(vtype)
            size = len(data)
            if size <= _SMALL_DATA:
                # DWORDs, QWORDs, short strings: few distinct ones, shared digest and preview
                both = small.get((vtype, data))
                if both is None:
                    both = (sha256(data).hexdigest(), preview(vtype, data))
                    if len(small) < _SMALL_CACHE:
                        small[(vtype, data)] = both
                digest, text = both
            else:
                digest, text = sha256(data).hexdigest(), preview(vtype, data)
            out[vid] = RegistryValueEntity(kid, name, tname, size, digest, text, policies)


def _is_excluded(kid: str, excluded: list[list[re.Pattern[str]]]) -> bool:
    segs = _segments(kid)
    return any(len(pats) <= len(segs) and all(p.match(s) for p, s in zip(pats, segs,
                                                                          strict=False))
               for pats in excluded)


def collect(hive: Hive, mount_prefix: str, entities: Iterable[PolicyEntity],
            ) -> tuple[dict[str, RegistryEntity], dict[str, str]]:
    """Walk the enabled WINDOWS_REGISTRY entities that lie in this hive.

    ``mount_prefix`` is where the hive is mounted (``HKLM\\SOFTWARE``). Returns the entities
    by id (see the module docstring) and ``{id: reason}`` for keys that could not be read.
    A monitored key that does not exist yields nothing and no error.

    The cyclic garbage collector is paused during the walk (and restored after): a big hive
    makes hundreds of thousands of entities and no reference cycles, and the collector's
    repeated full passes over the growing heap were a fifth of the time.
    """
    prefix = _segments(mount_prefix)
    if not prefix:
        raise ValueError("empty mount prefix")
    col = _Collector(hive, prefix)
    walking = _walking(entities)
    paused = gc.isenabled()
    gc.disable()
    try:
        for entity in walking:
            excluded = [[_name_regex(s) for s in _segments(e)] for e in entity.excludes]
            for key, key_id, depth in list(col.roots(entity)):
                col.walk(entity, key, key_id, depth, excluded)
    finally:
        if paused:
            gc.enable()
    tag = hive_tag(hive, mount_prefix, walking) if col.out and not col.unreadable else None
    if tag is not None:
        for found in col.out.values():
            found.hive = tag
    return col.out, col.unreadable


def _walking(entities: Iterable[PolicyEntity]) -> list[PolicyEntity]:
    return [e for e in entities if e.enabled and e.kind is EntityKind.WINDOWS_REGISTRY]


def hive_tag(hive: Hive, mount_prefix: str, entities: Iterable[PolicyEntity]) -> HiveTag | None:
    """The tag (mount and digest) :func:`collect` gives the entities of this hive when its
    walk reads every key, computed without walking; None when the hive was not read whole
    (dirty, replayed in part), so its entities carry none. A walk is a function of what the
    digest covers: a stored digest equal to this one stands for exactly the entities the walk
    would yield (:mod:`scanner.registry.unchanged`)."""
    if hive.status not in _WHOLE:
        return None
    prefix = _segments(mount_prefix)
    if not prefix:
        raise ValueError("empty mount prefix")
    return HiveTag("\\".join(prefix), hive_digest(hive, prefix, _walking(entities)))


def hive_digest(hive: Hive, prefix: list[str], walking: Iterable[PolicyEntity]) -> str:
    """What the entities of a hive are made from, as one SHA-256: :data:`RULES`, the mount
    prefix, the enabled registry entities (name, path, depth, values, excludes), the bounds
    a walk reads within (a value past one is unreadable) and the hive's bytes."""
    limits = hive.limits
    bounds = (limits.value_bytes, limits.hive_cells_per_value, limits.subkey_list_entries,
              limits.values_per_key)
    described = repr((RULES, prefix, sorted(
        (e.name, e.path, e.depth, e.values, e.excludes) for e in walking), bounds))
    return hashlib.sha256(f"{described}\n{hive.content_sha256()}".encode(
        "utf-8", "surrogatepass")).hexdigest()
