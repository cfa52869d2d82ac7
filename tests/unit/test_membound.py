"""The memory bound of a scan (``SNAPFIM_MAX_SCAN_MEMORY_MB``, scanner.membound)."""

from __future__ import annotations

import resource
from typing import Any

import pytest

from scanner.errors import ScanMemoryError
from scanner.limits import Limits
from scanner.membound import mapped_bytes, memory_bound
from scanner.pipeline import ScanOptions, scan_source, scan_sources
from scanner.sources.memory import MemorySource

MIB = 1 << 20


def test_allocations_past_the_bound_fail_and_the_limit_is_put_back() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with memory_bound(64) as limit:
        now = mapped_bytes()
        assert limit is not None and now is not None and limit <= now + 64 * MIB
        with pytest.raises(MemoryError):
            bytearray(256 * MIB)
        small = bytearray(MIB)  # under the bound: fine
        assert len(small) == MIB
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(bytearray(256 * MIB)) == 256 * MIB


def test_a_limit_already_in_force_is_never_raised() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    now = mapped_bytes()
    assert now is not None
    resource.setrlimit(resource.RLIMIT_AS, (now + 128 * MIB, hard))
    try:
        with memory_bound(4096) as limit:
            assert limit == now + 128 * MIB
        assert resource.getrlimit(resource.RLIMIT_AS) == (now + 128 * MIB, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _GreedySource(MemorySource):
    """A block source that needs 512 MiB once the scan looks at it (as a hostile structure
    might make a reader allocate)."""

    @property
    def locator(self) -> dict[str, Any]:
        self.buffer = bytearray(512 * MIB)
        return super().locator


def test_a_scan_past_its_bound_is_one_clean_error() -> None:
    source = _GreedySource(bytes(1 << 20))
    with pytest.raises(ScanMemoryError) as raised:
        scan_source(source, [], ScanOptions(1, limits=Limits(scan_memory_mb=64)))
    assert str(raised.value) == ("reading the disk needed more than 64 MiB of memory, the "
                                 "bound (SNAPFIM_MAX_SCAN_MEMORY_MB)")
    assert len(bytearray(512 * MIB)) == 512 * MIB  # the bound is gone with the scan


def test_the_bound_covers_every_disk_of_a_machine() -> None:
    """A machine's scan is bounded as a whole: a greedy second disk fails it cleanly."""
    with pytest.raises(ScanMemoryError):
        scan_sources([MemorySource(bytes(1 << 20)), _GreedySource(bytes(1 << 20))], [],
                     ScanOptions(1, limits=Limits(scan_memory_mb=64)), ["a", "b"])
    assert len(bytearray(512 * MIB)) == 512 * MIB
