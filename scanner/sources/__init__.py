"""Block sources: the one seam between snapfim and where disk bytes live.

A source is anything with ``size`` and ``read_at(offset, length)``. Volumes, filesystems and
collectors never know whether the bytes come from a local image, a cloud snapshot or memory.
Locators reopen sources through one table (:mod:`scanner.sources.locators`); slow stores sit
behind the caching layer (:mod:`scanner.sources.cache`).
"""

from scanner.sources.base import (
    BlockSource,
    LocalFile,
    SliceSource,
    disk_offset,
    local_file,
    whole_local_path,
)
from scanner.sources.local import LocalFileSource, open_local
from scanner.sources.locators import open_locator, reopenable
from scanner.sources.memory import MemorySource

__all__ = ["BlockSource", "LocalFile", "LocalFileSource", "MemorySource", "SliceSource",
           "disk_offset", "local_file", "open_local", "open_locator", "reopenable",
           "whole_local_path"]
