"""Package version ordering, as the package managers order them (pure): dpkg's
(``epoch:upstream-revision``, ``~`` before anything, letters before other characters) and
rpm's ``rpmvercmp`` (alternating digit and letter segments, ``~`` before and ``^`` after).
Used to say whether a version change is an upgrade or a downgrade."""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_VERSION_CHARS = 512


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i, j = i + 1, j + 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def _split_dpkg(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch[:18]), upstream, revision


def _compare(a: str, b: str, part: Callable[[str, str], int]) -> int:
    """Epochs as numbers, then the upstream versions, then the revisions by ``part``."""
    ea, ua, ra = _split_dpkg(a[:MAX_VERSION_CHARS])
    eb, ub, rb = _split_dpkg(b[:MAX_VERSION_CHARS])
    if ea != eb:
        return -1 if ea < eb else 1
    return part(ua, ub) or part(ra, rb)


def dpkg_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg orders versions ``a`` and ``b``."""
    return _compare(a, b, _verrevcmp)


_SEGMENT = re.compile(r"~|\^|\d+|[A-Za-z]+")


def _rpmvercmp(a: str, b: str) -> int:
    sa, sb = _SEGMENT.findall(a), _SEGMENT.findall(b)
    for x, y in zip(sa, sb, strict=False):
        if x != y and "~" in (x, y):
            return -1 if x == "~" else 1
        if x != y and "^" in (x, y):
            return 1 if x == "^" else -1
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        if x.isdigit():
            x, y = x.lstrip("0") or "0", y.lstrip("0") or "0"
            if len(x) != len(y):
                return -1 if len(x) < len(y) else 1
        if x != y:
            return -1 if x < y else 1
    if len(sa) == len(sb):
        return 0
    longer, sign = (sa, 1) if len(sa) > len(sb) else (sb, -1)
    nxt = longer[min(len(sa), len(sb))]
    if nxt == "~":
        return -sign
    return sign


def rpm_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as rpm orders ``[epoch:]version-release`` strings ``a`` and ``b``."""
    return _compare(a, b, _rpmvercmp)


def compare(source: str, a: str, b: str) -> int:
    """Versions of ``source``'s packages compared (rpm's rule for rpm, dpkg's otherwise)."""
    return rpm_compare(a, b) if source == "rpm" else dpkg_compare(a, b)
