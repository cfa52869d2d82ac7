"""Offline registry hives -> monitored key and value entities.

    hive = open_hive(software_bytes, log1=log1_bytes, log2=log2_bytes)
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
"""

from __future__ import annotations

import codecs
import gc
import hashlib
import io
import re
import struct
from collections.abc import Iterable
from typing import BinaryIO

from Registry.RegistryLog import RegistryLog
from Registry.RegistryParse import HvLEBlock

from scanner.collectors.sddl import sddl_from_descriptor
from scanner.entities import (
    RegistryEntity,
    RegistryKeyEntity,
    RegistryValueEntity,
    value_id,
)
from scanner.limits import Limits
from scanner.policy import EntityKind, PolicyEntity
from scanner.registry import (
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
    parse_header,
    type_name,
)

__all__ = [
    "HiveError", "Hive", "open_hive", "collect", "reaches", "resolve_current_control_set",
    "preview", "PREVIEW_CHARS", "check_log",
]

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


# -- opening -------------------------------------------------------------------------------

def _read(source: bytes | bytearray | memoryview | BinaryIO) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    return source.read()


def open_hive(data: bytes | BinaryIO, log1: bytes | BinaryIO | None = None,
              log2: bytes | BinaryIO | None = None, limits: Limits | None = None) -> Hive:
    """Open a primary hive (bytes or a binary file object), replaying its transaction logs
    when it is dirty.

    ``hive.status`` is ``'clean'``, ``'replayed'`` (dirty, brought up to date from LOG1/LOG2
    with python-registry's ``RegistryLog``, in a copy) or ``'dirty-not-replayed'`` (read as
    is: no usable log) or ``'replay-incomplete'`` (replayed in part: a log was refused, an
    entry of the flush is damaged, or a log starts after a gap; see :func:`_replay`: the hive
    may be part old, part new, so removals under it are not to be trusted);
    ``hive.status_reason`` says why. A log is checked before it is replayed
    (:func:`check_log`): one whose pages lie outside what the hive can grow to, or that holds
    more than ``limits.log_pages`` pages, is unusable (the reason is in ``status_reason``).

    Raises:
        HiveError: not a hive, truncated, unsupported version, or no readable root key.
    """
    limits = limits or Limits()
    raw = _read(data)
    header = parse_header(raw)
    if not header.dirty:
        return Hive(raw, limits=limits)
    why = (f"sequence numbers differ (primary {header.primary_sequence}, secondary "
           f"{header.secondary_sequence})" if header.checksum_ok
           else "base block checksum mismatch")
    logs = [(name, _read(log)) for name, log in (("LOG1", log1), ("LOG2", log2))
            if log is not None]
    if not logs:
        return Hive(raw, status="dirty-not-replayed",
                    status_reason=f"{why}; no transaction log given", limits=limits)
    try:
        replayed, detail, incomplete = _replay(raw, header.hbins_size, logs, limits)
    except Exception as exc:  # python-registry raises many kinds on bad logs
        return Hive(raw, status="dirty-not-replayed",
                    status_reason=f"{why}; replay failed: {type(exc).__name__}: {exc}",
                    limits=limits)
    if replayed is None:
        return Hive(raw, status="dirty-not-replayed", status_reason=f"{why}; {detail}",
                    limits=limits)
    if incomplete is not None:
        status, detail = "replay-incomplete", f"{detail}; replay incomplete: {incomplete}"
    else:
        status = "replayed"
    try:
        return Hive(replayed, status=status, status_reason=f"{why}; {detail}", limits=limits)
    except HiveError as exc:
        return Hive(raw, status="dirty-not-replayed",
                    status_reason=f"{why}; {detail}; replayed hive unreadable ({exc})",
                    limits=limits)


_LOG_ENTRY = struct.Struct("<4sIIIII")  # HvLE, size, flags, sequence, hbins size, page count
_PAGE = 4096


def check_log(log: bytes, hbins_size: int, limits: Limits, other_logs: int = 0
              ) -> str | None:
    """Why a new-format (``HvLE``) transaction log must not be replayed into a hive whose
    bins are ``hbins_size`` bytes, or None when its entries stay in bounds.

    Every entry is checked the way a replay would use it, before anything is written: its
    new bins size can grow the hive by no more than the logs hold (this one, and
    ``other_logs`` bytes of the other log replayed with it), each dirty page lies
    inside that size, and all entries together hold at most ``limits.log_pages`` pages.
    (python-registry writes each page at its offset into a growing buffer: a page claimed at
    0xFFFFE000 would make it allocate 4 GiB.)
    """
    most = hbins_size + len(log) + other_logs  # logs add no more than the pages they hold
    pages = 0
    at = 512
    while at + 40 <= len(log) and log[at:at + 4] == b"HvLE":
        _sig, size, _flags, sequence, bins, count = _LOG_ENTRY.unpack_from(log, at)
        if size <= 40 or size % 512 or bins % _PAGE:
            break  # python-registry stops at such an entry: nothing after it is replayed
        if at + size > len(log) or 40 + 8 * count > size:  # it would not stop: refuse
            return (f"entry {sequence} claims {size} bytes and {count} dirty pages, more "
                    "than the log holds")
        if bins == 0 or bins > most:
            return (f"entry {sequence} gives the hive 0x{bins:x} bytes of bins, impossible "
                    f"from 0x{hbins_size:x} with this log")
        for offset, length in struct.iter_unpack("<II", log[at + 40:at + 40 + 8 * count]):
            if offset % _PAGE or length == 0 or length % _PAGE or offset + length > bins:
                return (f"entry {sequence}: dirty page at 0x{offset:x} ({length} bytes) "
                        f"outside the 0x{bins:x} bytes of bins")
            pages += length // _PAGE
            if pages > limits.log_pages:
                return (f"more than {limits.log_pages} dirty pages, the bound "
                        "(SNAPFIM_MAX_LOG_PAGES)")
        at += size
    return None


def _stopped_early(log: bytes, first: int, last: int) -> str | None:
    """Why a log whose entries ``first``..``last`` were replayed holds more of the same
    flush that was not, or None when the replay used all of it.

    The entry that follows the replayed ones (python-registry stops at the first entry with
    an unexpected sequence number, a bad size or a bad hash) is a refused part of the flush
    when it has the next sequence number, or when its header hash is wrong (its sequence
    number cannot be trusted); an intact header with another sequence number is what is
    left of an older flush, where a replay rightly ends."""
    at = 512
    for _ in range(last - first + 1):
        if at + 40 > len(log) or log[at:at + 4] != b"HvLE":
            return None
        at += _LOG_ENTRY.unpack_from(log, at)[1]
    if at + 40 > len(log) or log[at:at + 4] != b"HvLE":
        return None
    entry = HvLEBlock(log, at, None)
    expected = (last + 1) & 0xFFFFFFFF
    if entry.hash_2() != entry.calculate_hash_2():
        return f"the entry after sequence {last} (at 0x{at:x}) has a damaged header"
    if entry.sequence() == expected:
        return f"entry {expected} (at 0x{at:x}) is damaged and was not replayed"
    return None


def _replay(raw: bytes, hbins_size: int, logs: list[tuple[str, bytes]], limits: Limits
            ) -> tuple[bytes | None, str, str | None]:
    """Replay the usable logs into a copy of ``raw``: (the replayed bytes or None, what was
    done, why the replay is incomplete or None). A replay is incomplete when a log was
    refused (:func:`check_log`) while another was replayed, when it stopped before the end
    of the flush its last log holds (:func:`_stopped_early`), or when a log that should
    continue it starts after a gap: the hive is then part old, part new."""
    primary = io.BytesIO(raw)
    opened = []
    skipped = []  # a log that cannot be parsed (empty, garbage) is left out, not fatal
    refused = []  # a log check_log refuses: what it holds is missing from the replay
    total = sum(len(log) for _, log in logs)
    for name, log in logs:
        problem = check_log(log, hbins_size, limits, total - len(log))
        if problem is not None:
            skipped.append(f"{name} unusable ({problem})")
            refused.append(name)
            continue
        primary.seek(0)
        try:
            parsed = RegistryLog(primary, io.BytesIO(log))
            usable = parsed.is_eligible_log()
        except Exception as exc:  # python-registry raises many kinds on bad logs
            skipped.append(f"{name} unusable ({type(exc).__name__})")
            continue
        if usable:
            opened.append((name, parsed, log))
        else:
            skipped.append(f"{name} older than the hive")
    eligible = opened
    if not eligible:
        return None, "no usable transaction log: " + ", ".join(skipped), None
    if len(eligible) == 2 and not eligible[0][1].is_starting_log(eligible[1][1]):
        eligible.reverse()
    (first_name, first, first_log), rest = eligible[0], eligible[1:]
    last = first.recover_hive()
    if last is None:
        return None, f"{first_name} has nothing to replay", None
    applied = [first_name]
    ended = (first_name, first_log, first.first_log_sequence())
    missing = [f"{name} was refused" for name in refused]
    for name, log, data in rest:
        start = log.first_log_sequence()
        more = log.recover_hive_continue(last + 1)
        if more is not None:
            last = more
            applied.append(name)
            ended = (name, data, start)
        elif start > last + 1:
            missing.append(f"{name} starts at sequence {start}, after a gap")
    stop = _stopped_early(ended[1], ended[2], last)
    if stop is not None:
        missing.insert(0, f"{ended[0]}: {stop}")
    note = f" ({', '.join(skipped)})" if skipped else ""
    return (primary.getvalue(), f"replayed {' then '.join(applied)} up to sequence {last}{note}",
            "; ".join(missing) or None)


# -- CurrentControlSet ---------------------------------------------------------------------

def resolve_current_control_set(system_hive: Hive) -> str:
    """The on-disk name of the current control set (``ControlSet001``) of a SYSTEM hive,
    from ``Select\\Current``; raise :class:`HiveError` when it cannot be resolved."""
    select = system_hive.find("Select")
    if select is None:
        raise HiveError("cannot resolve CurrentControlSet: no Select key")
    current = next((v for v in system_hive.values(select) if v.name.upper() == "CURRENT"), None)
    if current is None or current.type != REG_DWORD or len(current.data) != 4:
        raise HiveError("cannot resolve CurrentControlSet: no REG_DWORD Select\\Current")
    name = f"ControlSet{struct.unpack('<I', current.data)[0]:03d}"
    key = system_hive.subkey(system_hive.root, name)
    if key is None:
        raise HiveError(f"cannot resolve CurrentControlSet: {name} does not exist")
    return key.name


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
    paused = gc.isenabled()
    gc.disable()
    try:
        for entity in entities:
            if not entity.enabled or entity.kind is not EntityKind.WINDOWS_REGISTRY:
                continue
            excluded = [[_name_regex(s) for s in _segments(e)] for e in entity.excludes]
            for key, key_id, depth in list(col.roots(entity)):
                col.walk(entity, key, key_id, depth, excluded)
    finally:
        if paused:
            gc.enable()
    return col.out, col.unreadable
