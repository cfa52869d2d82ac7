"""Monitored entities: the recommended defaults from the seeds, validation and matching (pure).

Rules (as the seeds describe, plus what we add):

- A path names a file or a directory; a directory entity monitors its tree to ``depth`` levels
  (``None`` = unlimited, ``0`` = the entry itself only).
- Wildcards ``*`` and ``?`` are allowed in the last path segment only (``/etc/*.conf``); they
  match names within that one directory, never across ``/``. Pattern entities default to
  depth 0 (each matching entry itself).
- Excludes are absolute paths whose segments may hold wildcards; an excluded directory takes
  its whole tree with it.
- Windows paths and registry keys are matched case-insensitively.
- A file entity may opt its path and everything below it in to content keeping (``keep``: the
  content of small text files is kept for diffs) or out of it (``never``); ``default`` leaves
  it to the built-in list (:mod:`scanner.changetracking.keeping`). Registry keys and
  ``%variable%`` paths take no content setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from scanner.content_mode import ContentMode
from scanner.errors import PolicyError


class EntityKind(StrEnum):
    """What an entity monitors."""

    LINUX_FILE = "linux_file"
    WINDOWS_FILE = "windows_file"
    WINDOWS_REGISTRY = "windows_registry"


class EntitySource(StrEnum):
    """Where an entity comes from."""

    RECOMMENDED = "recommended"
    CUSTOM = "custom"


WILDCARDS = frozenset("*?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class PolicyEntity:
    """One monitored entity (a path, a pattern, or a registry key)."""

    name: str
    kind: EntityKind
    path: str
    depth: int | None = None
    excludes: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    enabled: bool = True
    source: EntitySource = EntitySource.CUSTOM
    content: ContentMode = ContentMode.DEFAULT

    @property
    def is_pattern(self) -> bool:
        """True when the last segment holds a wildcard."""
        return any(ch in WILDCARDS for ch in last_segment(self.path, self.kind))

    @property
    def case_sensitive(self) -> bool:
        """Linux paths are case-sensitive; Windows paths and registry keys are not."""
        return self.kind is EntityKind.LINUX_FILE


def last_segment(path: str, kind: EntityKind) -> str:
    """The last segment of a path in the entity's own separator."""
    if kind is EntityKind.LINUX_FILE:
        return path.rstrip("/").rsplit("/", 1)[-1]
    if kind is EntityKind.WINDOWS_REGISTRY:  # "/" is legal in a key name
        return path.rstrip("\\").rsplit("\\", 1)[-1]
    # Windows file names hold neither separator; the walker sees them in posix form.
    return re.split(r"[\\/]", path.rstrip("\\/"))[-1]


# -- validation ----------------------------------------------------------------------------

def validate_linux_path(path: str, *, allow_wildcards: bool = True,
                        wildcard_anywhere: bool = False) -> str:
    """Check and normalise a Linux path; raise :class:`PolicyError` with the reason."""
    if not path or not path.strip():
        raise PolicyError("empty path")
    if _CONTROL.search(path):
        raise PolicyError(f"{path!r}: control characters are not allowed in a path")
    if not path.startswith("/"):
        raise PolicyError(f"{path!r}: Linux paths must be absolute (start with /)")
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise PolicyError(f"{path!r}: '.' and '..' segments are not allowed")
    for i, segment in enumerate(segments):
        if any(ch in WILDCARDS for ch in segment):
            if not allow_wildcards:
                raise PolicyError(f"{path!r}: wildcards are not allowed here")
            if i != len(segments) - 1 and not wildcard_anywhere:
                raise PolicyError(f"{path!r}: wildcards are allowed in the last path segment "
                                  "only (like /etc/*.conf)")
    return "/" + "/".join(segments)


def validate_windows_path(path: str) -> str:
    """Check a Windows path (drive letter or %variable% first, wildcards in the last segment)."""
    if not path or not path.strip():
        raise PolicyError("empty path")
    if _CONTROL.search(path):
        raise PolicyError(f"{path!r}: control characters are not allowed in a path")
    norm = path.replace("/", "\\").rstrip("\\")
    if not re.match(r"^([A-Za-z]:|%[A-Za-z_][A-Za-z0-9_()]*%)(\\|$)", norm):
        raise PolicyError(f"{path!r}: Windows paths start with a drive letter (C:\\) "
                          "or a variable (%windir%)")
    segments = norm.split("\\")
    for i, segment in enumerate(segments):
        if any(ch in WILDCARDS for ch in segment) and i != len(segments) - 1:
            raise PolicyError(f"{path!r}: wildcards are allowed in the last path segment only")
        if segment in (".", ".."):
            raise PolicyError(f"{path!r}: '.' and '..' segments are not allowed")
    return norm


def validate_registry_key(path: str) -> str:
    """Check a registry key path (``HKLM\\...`` or ``HKU\\...``), wildcards in the last segment."""
    if not path or not path.strip():
        raise PolicyError("empty registry key")
    if _CONTROL.search(path):
        raise PolicyError(f"{path!r}: control characters are not allowed in a key")
    norm = path.strip().rstrip("\\")
    head = norm.split("\\", 1)[0].upper()
    if head not in ("HKLM", "HKEY_LOCAL_MACHINE", "HKU", "HKEY_USERS"):
        raise PolicyError(f"{path!r}: registry keys start with HKLM\\ or HKU\\")
    segments = norm.split("\\")
    if any(not s for s in segments):
        raise PolicyError(f"{path!r}: empty key name")
    per_user = head in ("HKU", "HKEY_USERS")
    for i, segment in enumerate(segments):
        if any(ch in WILDCARDS for ch in segment) and i != len(segments) - 1 \
                and not (per_user and i == 1):
            raise PolicyError(f"{path!r}: wildcards are allowed in the last key segment "
                              "(and in the user of HKU\\<user>\\...) only")
    return norm


def make_entity(path: str, *, kind: EntityKind | None = None, name: str | None = None,
                depth: int | None = None, excludes: tuple[str, ...] = (),
                values: tuple[str, ...] = (), source: EntitySource = EntitySource.CUSTOM,
                enabled: bool = True, content: ContentMode = ContentMode.DEFAULT
                ) -> PolicyEntity:
    """Build a validated entity; the kind is inferred from the path when not given."""
    if kind is None:
        kind = infer_kind(path)
    check_content(path, kind, content)
    if depth is not None and depth < 0:
        raise PolicyError(f"depth must be 0 or more, not {depth}")
    if values and kind is not EntityKind.WINDOWS_REGISTRY:
        raise PolicyError(f"{path!r}: value names apply to registry keys only")
    if any(_CONTROL.search(v) for v in values):
        raise PolicyError(f"{path!r}: invalid value name in {list(values)!r}")
    if kind is EntityKind.LINUX_FILE:
        norm = validate_linux_path(path)
        clean_excludes = tuple(validate_linux_path(e, wildcard_anywhere=True) for e in excludes)
    elif kind is EntityKind.WINDOWS_FILE:
        norm = validate_windows_path(path)
        clean_excludes = tuple(validate_windows_path(e) for e in excludes)
    else:
        norm = validate_registry_key(path)
        clean_excludes = tuple(validate_registry_key(e) for e in excludes)
    entity = PolicyEntity(name=name or norm, kind=kind, path=norm, depth=depth,
                          excludes=clean_excludes, values=tuple(values), enabled=enabled,
                          source=source, content=content)
    if entity.is_pattern and depth is None:
        entity = replace(entity, depth=0)
    if not entity.name.strip() or _CONTROL.search(entity.name):
        raise PolicyError(f"invalid entity name {entity.name!r}")
    return entity


def check_content(path: str, kind: EntityKind, content: ContentMode) -> None:
    """Raise :class:`PolicyError` when an entity of ``kind`` at ``path`` cannot take the
    content setting ``content`` (registry keys hold no files; a ``%variable%`` path names
    different places on different machines: give it with its drive letter)."""
    if content is ContentMode.DEFAULT:
        return
    if kind is EntityKind.WINDOWS_REGISTRY:
        raise PolicyError(f"{path!r}: registry keys hold no file content to keep")
    if kind is EntityKind.WINDOWS_FILE and "%" in path:
        raise PolicyError(f"{path!r}: a content setting needs a path with its drive letter "
                          "(C:\\...), not a %variable%")


def infer_kind(path: str) -> EntityKind:
    """Kind from the path: ``/...`` Linux file, ``HKLM\\...`` registry key, else Windows file."""
    stripped = path.strip()
    if not stripped:
        raise PolicyError("empty path")
    if stripped.startswith("/"):
        return EntityKind.LINUX_FILE
    if stripped.upper().split("\\", 1)[0] in ("HKLM", "HKEY_LOCAL_MACHINE", "HKU", "HKEY_USERS"):
        return EntityKind.WINDOWS_REGISTRY
    if re.match(r"^([A-Za-z]:|%)", stripped):
        return EntityKind.WINDOWS_FILE
    raise PolicyError(f"{path!r}: not an absolute Linux path, Windows path or registry key")


# -- matching ------------------------------------------------------------------------------

def segment_regex(segment: str, case_sensitive: bool = True) -> re.Pattern[str]:
    """Compile one path segment with ``*`` and ``?`` (never matching ``/``); all else literal."""
    parts = []
    for ch in segment:
        if ch == "*":
            parts.append("[^/]*")
        elif ch == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts) + r"\Z", 0 if case_sensitive else re.IGNORECASE)


@dataclass(slots=True)
class ExcludeMatcher:
    """Decides whether a path (or one of its ancestors) is excluded."""

    patterns: tuple[str, ...]
    case_sensitive: bool = True
    _compiled: list[list[re.Pattern[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._compiled = [[segment_regex(s, self.case_sensitive) for s in p.split("/") if s]
                          for p in self.patterns]

    def excluded(self, path: str) -> bool:
        """True when ``path`` or an ancestor matches an exclude pattern."""
        if not self._compiled:
            return False
        segments = [s for s in path.split("/") if s]
        for regexes in self._compiled:
            if len(regexes) <= len(segments) and all(
                    r.match(s) for r, s in zip(regexes, segments, strict=False)):
                return True
        return False


# -- the recommended lists (both versions of the seeds' table) ------------------------------

RECOMMENDED_LINUX = (
    "/bin", "/bin/login", "/bin/passwd", "/boot", "/etc/*.conf", "/etc/cron.daily",
    "/etc/cron.hourly", "/etc/cron.monthly", "/etc/cron.weekly", "/etc/crontab", "/etc/init.d",
    "/opt/bin", "/opt/sbin", "/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin", "/usr/sbin",
)

RECOMMENDED_WINDOWS_FILES = (
    "C:\\autoexec.bat", "C:\\boot.ini", "C:\\config.sys", "C:\\Windows\\system.ini",
    "C:\\Windows\\win.ini", "C:\\Windows\\regedit.exe", "C:\\Windows\\System32\\userinit.exe",
    "C:\\Windows\\explorer.exe",
    "C:\\Program Files\\Microsoft Security Client\\msseces.exe",
)

_HKLM_SW = "HKLM\\SOFTWARE\\"
_OID_SIP = ("Microsoft\\Cryptography\\OID\\EncodingType 0\\CryptSIPDllRemoveSignedDataMsg\\"
            "{C689AAB8-8E78-11D0-8C47-00C04FC295EE}",
            "Microsoft\\Cryptography\\OID\\EncodingType 0\\CryptSIPDllRemoveSignedDataMsg\\"
            "{603BCC1F-4B59-4E08-B724-D2C6297EF351}")
_SW_KEYS = (
    "Microsoft\\Windows NT\\CurrentVersion\\IniFileMapping\\SYSTEM.ini\\boot",
    "Microsoft\\Windows NT\\CurrentVersion\\Windows",
    "Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
    "Microsoft\\Windows\\CurrentVersion\\Explorer\\Shell Folders",
    "Microsoft\\Windows\\CurrentVersion\\Explorer\\User Shell Folders",
    "Microsoft\\Windows\\CurrentVersion\\Run",
    "Microsoft\\Windows\\CurrentVersion\\RunOnce",
    "Microsoft\\Windows\\CurrentVersion\\RunOnceEx",
    "Microsoft\\Windows\\CurrentVersion\\RunServices",
    "Microsoft\\Windows\\CurrentVersion\\RunServicesOnce",
)
# The older table monitors these keys whole; the newer one names a few of their values only.
# The union of both monitors the whole key, so the older form wins.
RECOMMENDED_REGISTRY: tuple[str, ...] = (
    *(_HKLM_SW + k for k in _OID_SIP),
    *(_HKLM_SW + k for k in _SW_KEYS),
    *(_HKLM_SW + "WOW6432Node\\" + k for k in _OID_SIP),
    *(_HKLM_SW + "WOW6432Node\\" + k for k in _SW_KEYS),
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\hivelist",
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\KnownDLLs",
    *("HKLM\\SYSTEM\\CurrentControlSet\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\"
      + p for p in ("DomainProfile", "PublicProfile", "StandardProfile")),
    "HKLM\\SECURITY\\POLICY\\SECRETS",
)
# How deep each recommended key is walked: deep enough to catch what an attacker changes there.
# Most hold their content in values (depth 0: the key and its values). These hold it in
# subkeys (README, "Registry": the table):
# - Policy\Secrets: one subkey per LSA secret, its data in CurrVal/OldVal/... subkeys (the
#   default value of each): an added secret is Secrets\<name>\CurrVal, two levels down.
# - Winlogon: GPExtensions\{guid} and Notify\<package> register DLLs (DllName), and
#   SpecialAccounts\UserList hides accounts from the logon screen: two levels down.
# - RunOnceEx: its entries are subkeys (0001, with Depend below) holding the commands.
# - FirewallPolicy\<profile>: AuthorizedApplications\List and GloballyOpenPorts\List hold the
#   exceptions (besides the profile's own values such as EnableFirewall).
RECOMMENDED_REGISTRY_DEPTHS: dict[str, int] = {
    "HKLM\\SECURITY\\POLICY\\SECRETS": 2,
    **{_HKLM_SW + w + "Microsoft\\Windows NT\\CurrentVersion\\Winlogon": 2
       for w in ("", "WOW6432Node\\")},
    **{_HKLM_SW + w + "Microsoft\\Windows\\CurrentVersion\\RunOnceEx": 2
       for w in ("", "WOW6432Node\\")},
    **{"HKLM\\SYSTEM\\CurrentControlSet\\Services\\SharedAccess\\Parameters\\FirewallPolicy\\"
       + p: 2 for p in ("DomainProfile", "PublicProfile", "StandardProfile")},
}
# The newer table's wildcards over all OIDs: every encoding type's whole tree (a new SIP or
# trust provider is registered a few levels down), which the seeds' product cannot recurse.
RECOMMENDED_REGISTRY_TREES: tuple[str, ...] = (
    "HKLM\\SOFTWARE\\Microsoft\\Cryptography\\OID\\*",
    "HKLM\\SOFTWARE\\WOW6432Node\\Microsoft\\Cryptography\\OID\\*",
)
# Not in the seeds: each user's Run and RunOnce keys (NTUSER.DAT of every profile, and the
# default profile's hive), a common persistence place.
RECOMMENDED_USER_REGISTRY: tuple[str, ...] = (
    "HKU\\*\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
    "HKU\\*\\Software\\Microsoft\\Windows\\CurrentVersion\\RunOnce",
)


def recommended_entities() -> list[PolicyEntity]:
    """The default policy: the union of both versions of the seeds' recommended tables."""
    rec = EntitySource.RECOMMENDED
    entities = [make_entity(p, kind=EntityKind.LINUX_FILE, source=rec) for p in RECOMMENDED_LINUX]
    entities += [make_entity(p, kind=EntityKind.WINDOWS_FILE, source=rec)
                 for p in RECOMMENDED_WINDOWS_FILES]
    entities += [make_entity(p, kind=EntityKind.WINDOWS_REGISTRY, source=rec,
                             depth=RECOMMENDED_REGISTRY_DEPTHS.get(p, 0))
                 for p in (*RECOMMENDED_REGISTRY, *RECOMMENDED_USER_REGISTRY)]
    entities += [replace(make_entity(p, kind=EntityKind.WINDOWS_REGISTRY, source=rec),
                         depth=None)  # whole trees (patterns default to depth 0)
                 for p in RECOMMENDED_REGISTRY_TREES]
    return entities


def active(entities: list[PolicyEntity], kind: EntityKind) -> list[PolicyEntity]:
    """Enabled entities of one kind, in a stable order."""
    return sorted((e for e in entities if e.enabled and e.kind is kind), key=lambda e: e.name)


def path_matcher(pattern: str) -> tuple[Callable[[str], bool], str]:
    """``(matches, literal_prefix)`` for ``changes --path``.

    The pattern is a path whose segments may hold ``*`` and ``?`` (within one segment, as in
    policy excludes; ``[`` is literal); it matches that path and everything below it (an
    NTFS stream ``file:s`` lies below ``file``, a registry value below its key). Linux paths
    (``/...``) are case-sensitive, Windows paths and registry keys are not. The prefix before
    the first wildcard narrows the query in SQL.
    """
    linux = pattern.startswith("/")
    sep = "/" if linux else "\\"
    segments = [s for s in pattern.split(sep) if s]
    regexes = [segment_regex(s, case_sensitive=linux) for s in segments]
    head = re.split(r"[*?]", pattern, maxsplit=1)[0]
    prefix = head if head == pattern else head[:head.rfind(sep) + 1]

    streams = re.match(r"[A-Za-z]:\\", pattern) is not None  # NTFS: file:stream

    def matches(path: str) -> bool:
        parts = [s for s in path.split(sep) if s]
        if len(parts) < len(regexes):
            return False
        for i, (regex, part) in enumerate(zip(regexes, parts, strict=False)):
            if regex.match(part):
                continue
            stream_of = streams and 0 < i == len(regexes) - 1 and ":" in part
            if not (stream_of and regex.match(part.split(":", 1)[0])):
                return False
        return True

    return matches, prefix
