"""Alpine's package database: ``/lib/apk/db/installed``, stanzas of one-letter fields
(``P:`` name, ``V:`` version, ``A:`` architecture, ``F:`` a directory, ``R:`` a file in the
last ``F:`` directory, ``Z:`` that file's checksum: ``Q1`` + base64 SHA-1). Pure parsing,
bounded as :mod:`scanner.changetracking.dpkg`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from scanner.changetracking.model import MAX_ITEMS_PER_SOURCE, MAX_PACKAGED_FILES, clip
from scanner.errors import InventoryError

MAX_INSTALLED_BYTES = 256 << 20
MAX_LINE_CHARS = 64 << 10


@dataclass(slots=True)
class ApkPackage:
    """One installed package: name, version, architecture, origin and its files' SHA-1."""

    name: str
    version: str | None = None
    architecture: str | None = None
    origin: str | None = None
    files: dict[str, str | None] = field(default_factory=dict)  # "/path" -> sha1 hex


def _sha1(value: str) -> str | None:
    if not value.startswith("Q1"):
        return None
    try:
        raw = base64.b64decode(value[2:], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 20 else None


def parse_installed(data: bytes) -> tuple[list[ApkPackage], int]:
    """The packages of an ``installed`` file and the number of stanzas skipped as damaged.
    Raises :class:`InventoryError` past the size, package or file bounds."""
    if len(data) > MAX_INSTALLED_BYTES:
        raise InventoryError(f"installed file of {len(data)} bytes: larger than "
                             f"{MAX_INSTALLED_BYTES}, the bound")
    packages: list[ApkPackage] = []
    skipped = files = 0
    current: ApkPackage | None = None
    directory = ""
    last_file: str | None = None
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", "surrogateescape")[:MAX_LINE_CHARS]
        if not line.strip():
            current, directory, last_file = None, "", None
            continue
        key, sep, value = line.partition(":")
        if not sep or len(key) != 1:
            continue
        if key == "P":
            if not value or "/" in value:
                skipped += 1
                current = None
                continue
            if len(packages) >= MAX_ITEMS_PER_SOURCE:
                raise InventoryError(f"more than {MAX_ITEMS_PER_SOURCE} packages: the bound")
            current = ApkPackage(clip(value))
            packages.append(current)
            continue
        if current is None:
            continue
        if key == "V":
            current.version = clip(value)
        elif key == "A":
            current.architecture = clip(value)
        elif key == "o":
            current.origin = clip(value)
        elif key == "F":
            directory, last_file = value.strip("/"), None
        elif key == "R" and value and "/" not in value:
            files += 1
            if files > MAX_PACKAGED_FILES:
                raise InventoryError(f"more than {MAX_PACKAGED_FILES} files: the bound")
            last_file = f"/{directory}/{value}" if directory else f"/{value}"
            current.files[last_file] = None
        elif key == "Z" and last_file is not None:
            current.files[last_file] = _sha1(value)
    return packages, skipped
