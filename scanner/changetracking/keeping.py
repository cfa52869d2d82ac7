"""Which files' content is kept for diffs (pure, no I/O): the built-in opt-in places
(:data:`KEPT_PREFIXES`), the policy's content settings (:class:`ContentRules`) and the
secrets that are never kept (:func:`is_secret`).

A monitored entity of the policy may opt its path, and everything below it, in to content
keeping (``keep``) or out of it (``never``); ``default`` leaves it to the built-in list. For
a file, the most specific setting covering it decides (the one with the most path segments;
at the same depth ``never`` wins); where no setting covers it, the built-in list does. A
secret-looking path (:func:`is_secret`) is never kept, whatever the settings (and a file
holding a private key block is never kept either: that is checked on its content, where it
is read, :func:`scanner.changetracking.content.keep_contents`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from scanner.policy import ContentMode, EntityKind, PolicyEntity, segment_regex

# Content is kept by default only for these places (configuration, where a diff helps and
# secrets are the exception), and never for a path that looks secret there (the deny-list
# still applies: /etc holds shadow files, keys, VPN and Wi-Fi credentials). Paths are
# compared case-insensitively with either separator (Windows paths come as ``C:\\...``).
KEPT_PREFIXES: tuple[str, ...] = (
    "/etc/", "/usr/local/etc/", "/usr/lib/systemd/", "/lib/systemd/", "/boot/grub/",
    "c:/windows/system32/drivers/etc/")
_SECRET = re.compile(
    r"(^|/)(\.?netrc|\.pgpass|\.git-credentials|credentials[^/]*|\.htpasswd|opasswd"
    r"|[a-z]*passwd-|\.env(\.[^/]*)?|[^/]*\.(key|pem|p12|pfx|kdbx|jks|keystore|keytab|ovpn)"
    r"|id_[a-z0-9_-]+|ssh_host_[^/]*|debian\.cnf|unattend\.xml|sysprep\.xml|smbpasswd"
    r"|[^/]*secrets?[^/]*|[^/]*token[^/]*|[^/]*password[^/]*)$"
    r"|(^|/)g?shadow([.~-][^/]*|~)?$"          # shadow, shadow-, shadow~, shadow.dpkg-old
    r"|(^|/)(\.ssh|\.aws|\.gnupg|\.docker|ssl/private|pki/[^/]*private[^/]*|wireguard"
    r"|system-connections|letsencrypt|openvpn|ipsec\.d|krb5\.keytab)(/|$)"
    r"|^/root/|^[a-z]:/users/[^/]*/",          # home directories of root and Windows users
    re.IGNORECASE)


def _normal(path: str) -> str:
    return path.replace("\\", "/")


def is_secret(path: str) -> bool:
    """Whether a path looks like it holds secrets (its content is never kept)."""
    return _SECRET.search(_normal(path)) is not None


class ContentRule(NamedTuple):
    """One content setting of the policy: a path (Linux ``/...`` or Windows ``C:\\...``,
    wildcards in its last segment) and whether what lies at and below it is kept."""

    path: str
    keep: bool


@dataclass(frozen=True, slots=True)
class ContentRules:
    """The content settings in force (none: the built-in list alone)."""

    rules: tuple[ContentRule, ...] = ()
    # per rule: Linux or not, keep, its literal head (lower-case on Windows: a cheap first
    # test), its segments' patterns
    _compiled: tuple[tuple[bool, bool, str, tuple[re.Pattern[str], ...]], ...] = field(
        default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = []
        for rule in self.rules:
            linux = rule.path.startswith("/")
            segments = [s for s in _normal(rule.path).split("/") if s]
            literal = []
            for segment in segments:
                if any(c in "*?" for c in segment):
                    break
                literal.append(segment)
            head = ("/" if linux else "") + "/".join(literal)
            compiled.append((linux, rule.keep, head if linux else head.lower(),
                             tuple(segment_regex(s, case_sensitive=linux) for s in segments)))
        object.__setattr__(self, "_compiled", tuple(compiled))

    def kept(self, path: str) -> bool:
        """Whether the content of the file at ``path`` may be kept."""
        normal = _normal(path)
        decided = self.setting(normal) if self.rules else None
        if decided is None:
            decided = normal.lower().startswith(KEPT_PREFIXES)
        return decided and not is_secret(normal)

    def setting(self, path: str) -> bool | None:
        """What the most specific setting covering ``path`` says (at the same depth,
        ``never`` wins); None when none covers it."""
        linux = path.startswith("/")
        folded = path if linux else path.lower()
        parts: list[str] | None = None
        best, keep = -1, True
        for rule_linux, rule_keep, head, regexes in self._compiled:
            if rule_linux != linux or len(regexes) < best or not folded.startswith(head):
                continue
            if parts is None:
                parts = [s for s in _normal(path).split("/") if s]
            if len(regexes) > len(parts) or not all(
                    r.match(p) for r, p in zip(regexes, parts, strict=False)):
                continue
            if len(regexes) > best:
                best, keep = len(regexes), rule_keep
            else:
                keep = keep and rule_keep
        return None if best < 0 else keep

    def to_json(self) -> str | None:
        """The settings as stored with a machine (None: none)."""
        if not self.rules:
            return None
        return json.dumps([[r.path, "keep" if r.keep else "never"] for r in self.rules])

    @classmethod
    def from_json(cls, text: str | None) -> ContentRules:
        """The settings :meth:`to_json` stored (anything unreadable: none)."""
        try:
            data = json.loads(text) if text else []
            return cls(tuple(ContentRule(str(p), m == "keep") for p, m in data))
        except (ValueError, TypeError):
            return DEFAULT_RULES


DEFAULT_RULES = ContentRules()


def content_rules(entities: Iterable[PolicyEntity]) -> ContentRules:
    """The content settings of a policy's enabled file entities (sorted, de-duplicated)."""
    rules = {ContentRule(e.path, e.content is ContentMode.KEEP) for e in entities
             if e.enabled and e.content is not ContentMode.DEFAULT
             and e.kind is not EntityKind.WINDOWS_REGISTRY}
    return ContentRules(tuple(sorted(rules)))


def is_kept(path: str, rules: ContentRules = DEFAULT_RULES) -> bool:
    """Whether a file's content may be kept under ``rules`` (default: the built-in list,
    :data:`KEPT_PREFIXES`), never for a secret-looking path (:func:`is_secret`)."""
    return rules.kept(path)
