"""Bounds on what a scanned disk can make the scanner do.

Every byte of a scanned disk belongs to whoever controls the machine, so each structure
read from it is bounded: exceeding a bound is a coverage entry and a ``partial`` scan, never a
traceback, an endless loop or an unbounded allocation. The defaults are generous for real
systems (a real disk never comes near them); each can be changed with the environment
variable named beside it (``Limits.from_env``).

| field                  | env variable                   | default                          |
|------------------------|--------------------------------|----------------------------------|
| ``path_depth``         | ``SNAPFIM_MAX_PATH_DEPTH``     | 256 components below a mount     |
| ``names_per_directory``| ``SNAPFIM_MAX_DIR_ENTRIES``    | 1,000,000                        |
| ``link_length``        | ``SNAPFIM_MAX_LINK_BYTES``     | 4,096 bytes (PATH_MAX)           |
| ``xattr_bytes``        | ``SNAPFIM_MAX_XATTR_BYTES``    | 1 MiB, names + values, per file  |
| ``hole_bytes``         | ``SNAPFIM_MAX_HOLE_BYTES``     | 1 MiB of holes hashed as zeros   |
| ``value_bytes``        | ``SNAPFIM_MAX_VALUE_BYTES``    | 64 MiB for one registry value    |
| ``hive_cells_per_value``| ``SNAPFIM_MAX_VALUE_CELLS``   | 4,096 big-data segments          |
| ``subkey_list_entries``| ``SNAPFIM_MAX_SUBKEYS``        | 1,000,000 subkeys of one key     |
| ``values_per_key``     | ``SNAPFIM_MAX_VALUES``         | 100,000 values of one key        |
| ``log_pages``          | ``SNAPFIM_MAX_LOG_PAGES``      | 262,144 dirty pages (1 GiB)      |
| ``lvm_text_bytes``     | ``SNAPFIM_MAX_LVM_TEXT_BYTES`` | 1 MiB of LVM metadata text       |
| ``lvm_nesting``        | ``SNAPFIM_MAX_LVM_NESTING``    | 32 levels of sections            |
| ``scan_memory_mb``     | ``SNAPFIM_MAX_SCAN_MEMORY_MB`` | 4,096 MiB                        |
| ``hash_stall_seconds`` | ``SNAPFIM_MAX_HASH_STALL_SECONDS`` | 900 s without progress |
| ``content_bytes``      | ``SNAPFIM_MAX_CONTENT_BYTES``  | 1 MiB: a text file's content kept |

``content_bytes``: change tracking keeps the content of a monitored small text file (for its
diff) up to this size; a larger file is hashed (hashing has no size cap) but gets no diff.

``hole_bytes``: a file's holes are hashed as zeros (plain SHA-256) while they add up to no
more than its allocated data or than this bound; past both, the file gets the sparse-aware
digest (extent map + allocated data, attributes ``sparse``), so no file costs more than its
real data justifies (see :func:`scanner.collectors.hashing.hash_node`).

``hash_stall_seconds``: a hash worker process that hashes nothing for this long (no chunk of
any file: a read that never returns) is stopped; the file it was on becomes an unreadable
path of a ``partial`` scan, its other files are hashed by the scanning process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from scanner.envreader import EnvReader

_ENV = {
    "path_depth": "SNAPFIM_MAX_PATH_DEPTH",
    "names_per_directory": "SNAPFIM_MAX_DIR_ENTRIES",
    "link_length": "SNAPFIM_MAX_LINK_BYTES",
    "xattr_bytes": "SNAPFIM_MAX_XATTR_BYTES",
    "hole_bytes": "SNAPFIM_MAX_HOLE_BYTES",
    "value_bytes": "SNAPFIM_MAX_VALUE_BYTES",
    "hive_cells_per_value": "SNAPFIM_MAX_VALUE_CELLS",
    "subkey_list_entries": "SNAPFIM_MAX_SUBKEYS",
    "values_per_key": "SNAPFIM_MAX_VALUES",
    "log_pages": "SNAPFIM_MAX_LOG_PAGES",
    "lvm_text_bytes": "SNAPFIM_MAX_LVM_TEXT_BYTES",
    "lvm_nesting": "SNAPFIM_MAX_LVM_NESTING",
    "scan_memory_mb": "SNAPFIM_MAX_SCAN_MEMORY_MB",
    "hash_stall_seconds": "SNAPFIM_MAX_HASH_STALL_SECONDS",
    "content_bytes": "SNAPFIM_MAX_CONTENT_BYTES",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of one scan (see the module docstring for each one's meaning)."""

    path_depth: int = 256
    names_per_directory: int = 1_000_000
    link_length: int = 4096
    xattr_bytes: int = 1 << 20
    hole_bytes: int = 1 << 20
    value_bytes: int = 64 << 20
    hive_cells_per_value: int = 4096
    subkey_list_entries: int = 1_000_000
    values_per_key: int = 100_000
    log_pages: int = 262_144
    lvm_text_bytes: int = 1 << 20
    lvm_nesting: int = 32
    scan_memory_mb: int = 4096
    hash_stall_seconds: int = 900
    content_bytes: int = 1 << 20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by the ``SNAPFIM_MAX_*`` variables that are set.

        Raises ``ConfigError`` naming the variable when a value is not a positive whole number.
        """
        read = EnvReader(os.environ if environ is None else environ)
        defaults = cls()
        return cls(**{f.name: read.number(_ENV[f.name], int, getattr(defaults, f.name), minimum=1)
                      for f in fields(cls)})
