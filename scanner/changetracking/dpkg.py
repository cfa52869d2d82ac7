"""Debian's package database: ``/var/lib/dpkg/status`` (deb822 stanzas, one per package) and
``/var/lib/dpkg/info/<package>[:<arch>].md5sums`` (``<md5>  <path without leading />``).
Pure parsing of bytes read from a disk: every bound is checked (lines, stanzas, fields), a
damaged line is skipped and counted, never an exception past :class:`InventoryError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from scanner.changetracking.model import MAX_ITEMS_PER_SOURCE, clip
from scanner.errors import InventoryError

MAX_STATUS_BYTES = 256 << 20   # a status file of ~60,000 packages is ~100 MB
MAX_MD5SUMS_BYTES = 64 << 20   # one package's md5sums
MAX_LINE_CHARS = 64 << 10
# package states in which the package's files are on the disk
_PRESENT = frozenset({"installed", "half-configured", "unpacked", "half-installed",
                      "triggers-awaited", "triggers-pending"})
_MD5 = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]*")


@dataclass(slots=True)
class DpkgPackage:
    """One stanza of the status file whose package is on the disk."""

    name: str
    version: str | None
    architecture: str | None
    status: str
    conffiles: dict[str, str] = field(default_factory=dict)  # path -> md5 ("newconffile": None)

    @property
    def info_name(self) -> str:
        """The name of its files under ``info/`` without suffix (multi-arch: ``name:arch``)."""
        return self.name


def _lines(data: bytes) -> Iterator[str]:
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        yield line[:MAX_LINE_CHARS].rstrip("\r")


def parse_status(data: bytes) -> tuple[list[DpkgPackage], int]:
    """The packages on the disk that ``data`` (a status file) lists, and the number of
    stanzas skipped as damaged (no valid package name). Raises :class:`InventoryError`
    when the file is larger than its bound or lists more packages than one source may."""
    if len(data) > MAX_STATUS_BYTES:
        raise InventoryError(f"status file of {len(data)} bytes: larger than "
                             f"{MAX_STATUS_BYTES}, the bound")
    if b"\0" in data:
        raise InventoryError("status file holds binary data (NUL bytes): not a status file")
    packages: list[DpkgPackage] = []
    skipped = 0
    fields: dict[str, str] = {}
    conffiles: list[str] = []
    last = ""

    def finish() -> None:
        nonlocal skipped
        if not fields:
            return
        name = fields.get("package", "")
        state = fields.get("status", "").split()
        if not _NAME.fullmatch(name) or len(state) != 3:
            skipped += 1
            return
        if state[2] not in _PRESENT:
            return
        if len(packages) >= MAX_ITEMS_PER_SOURCE:
            raise InventoryError(f"more than {MAX_ITEMS_PER_SOURCE} packages: the bound")
        package = DpkgPackage(name, clip(fields["version"]) if "version" in fields else None,
                              clip(fields.get("architecture", "")) or None, state[2])
        for line in conffiles:
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith("/"):
                package.conffiles[parts[0]] = parts[1] if _MD5.fullmatch(parts[1]) else ""
        packages.append(package)

    for line in _lines(data):
        if not line.strip():
            finish()
            fields, conffiles, last = {}, [], ""
            continue
        if line[0] in " \t":  # continuation of the last field
            if last == "conffiles":
                conffiles.append(line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = name.strip().lower()
        if last not in fields:
            fields[last] = value.strip()
    finish()
    if skipped and not packages:
        raise InventoryError(f"none of its {skipped} entries is a valid package")
    return packages, skipped


_SUM_LINE = re.compile(rf"^([0-9a-f]{{32}})  /?([^\n]{{1,{MAX_LINE_CHARS}}})$", re.M)


def parse_md5sums(data: bytes, prefixes: tuple[str, ...] = ("",)
                  ) -> tuple[dict[str, str], int]:
    """``{"/path": md5}`` of a package's md5sums file (only paths starting with one of
    ``prefixes``, written without leading ``/``) and the number of lines skipped as
    damaged. Raises :class:`InventoryError` past the size bound."""
    if len(data) > MAX_MD5SUMS_BYTES:
        raise InventoryError(f"md5sums of {len(data)} bytes: larger than "
                             f"{MAX_MD5SUMS_BYTES}, the bound")
    text = data.decode("utf-8", "surrogateescape").replace("\r\n", "\n")
    found = _SUM_LINE.findall(text)
    lines = text.split("\n")
    skipped = len(lines) - lines.count("") - len(found)
    return {"/" + path: digest for digest, path in found if path.startswith(prefixes)}, \
        skipped
