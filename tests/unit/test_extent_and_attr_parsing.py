"""Pure parsing of what a disk claims: data runs of an extent map, XFS attribute forks.

Both read attacker-controlled bytes: the runs must come out canonical whatever the map says,
and the XFS attribute parsers must answer with pairs of bytes within the bound, or
:class:`CorruptFilesystem`, on any input (fixed-seed random and mutated forks).
"""

from __future__ import annotations

import random
import struct

import pytest

from scanner.disk import xfs_attrs
from scanner.disk.nodes import normalize_runs
from scanner.errors import CorruptFilesystem


def test_runs_are_clipped_sorted_and_merged() -> None:
    assert normalize_runs([], 10) == []
    assert normalize_runs([(0, 10)], 4) == [(0, 4)]
    assert normalize_runs([(8, 4), (0, 4)], 100) == [(0, 4), (8, 4)]
    assert normalize_runs([(0, 4), (4, 4)], 100) == [(0, 8)]            # adjacent
    assert normalize_runs([(0, 6), (2, 2), (5, 10)], 100) == [(0, 15)]  # overlapping
    assert normalize_runs([(-4, 8), (200, 8), (50, 0)], 100) == [(0, 4)]  # outside, empty


def _shortform(entries: list[tuple[int, bytes, bytes]]) -> bytes:
    body = b"".join(bytes([len(n), len(v), flags]) + n + v for flags, n, v in entries)
    return struct.pack(">HBB", 4 + len(body), len(entries), 0) + body


def test_shortform_names_are_bytes_with_their_namespace() -> None:
    fork = _shortform([(0, b"\xff", b"v"), (2, b"SGI_ACL_FILE", b"\x00\x00\x00\x00"),
                       (4, b"capability", b"\x01\x02"), (0x40, b"odd", b"")])
    pairs = xfs_attrs.shortform(fork, 1, 1 << 20)
    assert pairs == [(b"user.\xff", b"v"), (b"trusted.SGI_ACL_FILE", b"\x00" * 4),
                     (b"secure.capability", b"\x01\x02"), (b"xfs-flags-64.odd", b"")]
    assert xfs_attrs.linux_names(pairs) == {
        b"user.\xff": b"v", b"system.posix_acl_access": struct.pack("<I", 2),
        b"security.capability": b"\x01\x02", b"xfs-flags-64.odd": b""}
    with pytest.raises(CorruptFilesystem, match="SNAPFIM_MAX_XATTR_BYTES"):
        xfs_attrs.shortform(fork, 1, 10)


def _leaf_v4(entries: list[tuple[int, bytes, bytes]], size: int = 512) -> bytes:
    block = bytearray(size)
    struct.pack_into(">IIHH", block, 0, 0, 0, 0xFBEE, 0)
    struct.pack_into(">H", block, 12, len(entries))
    at = size
    for index, (flags, name, value) in enumerate(entries):
        record = struct.pack(">HB", len(value), len(name)) + name + value
        at -= len(record)
        block[at:at + len(record)] = record
        struct.pack_into(">IHBB", block, 32 + 8 * index, 0, at, flags | 0x1, 0)
    return bytes(block)


def test_leaf_block_with_local_values() -> None:
    block = _leaf_v4([(0, b"a\x1b", b"x"), (4, b"selinux", b"system_u")])

    def read(logical: int) -> bytes | None:
        return block if logical == 0 else None

    assert xfs_attrs.blocks(read, 512, 7, 1 << 20) == [(b"user.a\x1b", b"x"),
                                                       (b"secure.selinux", b"system_u")]


@pytest.mark.parametrize("seed", range(4))
def test_hostile_forks_never_raise_anything_else(seed: int) -> None:
    rng = random.Random(seed)
    good_short = _shortform([(0, b"name%d" % i, b"v" * i) for i in range(6)])
    good_leaf = _leaf_v4([(0, b"name%d" % i, b"v" * i) for i in range(6)])
    for case in range(300):
        if case % 3 == 0:
            fork = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            fork = bytearray(good_short if case % 3 == 1 else good_leaf)
            for _ in range(rng.randint(1, 6)):
                fork[rng.randrange(len(fork))] = rng.randrange(256)
            fork = bytes(fork)
        _check(fork)


def _check(fork: bytes) -> None:
    def read(logical: int) -> bytes | None:
        return fork if logical < 3 else None  # blocks may point at each other

    for parse in (lambda: xfs_attrs.shortform(fork, 1, 256),
                  lambda: xfs_attrs.blocks(read, 512, 1, 256)):
        try:
            pairs = parse()
        except CorruptFilesystem:
            continue
        assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in pairs)
