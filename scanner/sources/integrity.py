"""Checks of the bytes a remote store hands back, shared by the cloud block fetchers.

A block whose length is not the one asked for, or whose digest is not the one the store
announced, is a :class:`~scanner.errors.TransientSourceError`: the caching layer
(:mod:`scanner.sources.cache`) fetches it again a few times before giving up.
"""

from __future__ import annotations

import base64
import hashlib

from scanner.errors import SourceReadError, TransientSourceError

DIGESTS = {"SHA256": hashlib.sha256, "MD5": hashlib.md5}


def check_length(data: bytes, expected: int, what: str, announced: object = None) -> None:
    """Raise :class:`TransientSourceError` unless ``data`` has ``expected`` bytes (and the
    length the store ``announced``, when it announced one)."""
    if len(data) != expected or (announced is not None and int(str(announced)) != len(data)):
        raise TransientSourceError(f"{what}: {len(data)} bytes received, {announced} announced, "
                                   f"{expected} expected")


def check_digest(data: bytes, algorithm: str, announced: object, what: str) -> bytes:
    """The ``algorithm`` digest (SHA256, MD5) of ``data``, raw; :class:`TransientSourceError`
    unless its base64 is the ``announced`` one (a missing announcement fails too);
    :class:`SourceReadError` for an algorithm we do not know."""
    make = DIGESTS.get(algorithm.upper())
    if make is None:
        raise SourceReadError(f"{what}: unknown checksum algorithm {algorithm[:40]!r}")
    if not isinstance(announced, str) or not announced:
        raise TransientSourceError(f"{what}: the reply announced no {algorithm} checksum")
    raw = make(data).digest()
    digest = base64.b64encode(raw).decode()
    if digest != announced:
        raise TransientSourceError(f"{what}: checksum mismatch ({algorithm} received {digest}, "
                                   f"announced {announced[:64]})")
    return raw
