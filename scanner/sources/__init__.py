"""Block sources: the one seam between snapfim and where disk bytes live.

A source is anything with ``size`` and ``read_at(offset, length)``. Volumes, filesystems and
collectors never know whether the bytes come from a local image, a cloud snapshot or memory.
"""

from scanner.sources.base import BlockSource, SliceSource
from scanner.sources.local import LocalFileSource, open_local
from scanner.sources.memory import MemorySource

__all__ = ["BlockSource", "LocalFileSource", "MemorySource", "SliceSource", "open_local"]
