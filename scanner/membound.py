"""The memory bound of one scan (``Limits.scan_memory_mb``, ``SNAPFIM_MAX_SCAN_MEMORY_MB``).

While a scan reads a disk, the process's address space may grow by at most the bound
(``RLIMIT_AS`` is lowered to what the process has mapped now plus the bound, never above a
limit already in force, and put back afterwards). Hash workers forked during the scan inherit
it. An allocation past the bound raises ``MemoryError`` inside the scan, which
:func:`scanner.pipeline.scan_source` turns into a one-line :class:`ScanMemoryError`: the
scan fails cleanly and the machine's state is untouched, instead of the host swapping or the
kernel's OOM killer ending the worker.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager

_MIB = 1 << 20


def mapped_bytes() -> int | None:
    """The process's current address-space size (``VmSize``), or None where unknown."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@contextmanager
def memory_bound(megabytes: int) -> Iterator[int | None]:
    """Lower ``RLIMIT_AS`` to the current address space plus ``megabytes`` MiB for the
    duration of the block; yields the limit in force (None when it could not be set)."""
    now = mapped_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if now is None:
        yield None
        return
    wanted = now + megabytes * _MIB
    for ceiling in (soft, hard):
        if ceiling != resource.RLIM_INFINITY:
            wanted = min(wanted, ceiling)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (ValueError, OSError):
        yield None
        return
    try:
        yield wanted
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
