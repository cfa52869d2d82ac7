"""The one exception tree of snapfim, by layer.

Third-party errors (pytsk3 ``IOError``, SQLAlchemy, botocore, azure) are translated into this
tree at the boundary where they occur, with ``raise ... from``. The CLI prints ``str(error)``
of any :class:`SnapfimError` as one line; anything else is a bug.

::

    SnapfimError
    ├── ConfigError                 bad settings or arguments
    │   └── AccountAccessError      a cloud account refuses us (AccessDenied, KMS, missing role)
    ├── SourceError                 block sources (image files, cloud snapshots)
    │   ├── SourceNotFound
    │   └── SourceReadError         a read failed or returned short (truncated image)
    │       └── TransientSourceError  (+ TransientError) throttled, or a block failed its check
    ├── DiskError                   volume system / filesystem layer
    │   ├── NoFilesystemError       nothing scannable on the disk
    │   ├── UnsupportedFilesystem
    │   ├── CorruptFilesystem       superblock or structures unreadable, truncated volume
    │   └── ScanMemoryError         the scan needed more memory than its bound
    ├── PolicyError                 invalid monitored entity or pattern
    ├── StorageError                database layer
    │   └── NotFound                 a named machine / scan / entity does not exist
    ├── DeliveryError               a sink (syslog, webhook, file) did not accept a batch
    └── TransientError (mixin)      marks what a retry can fix (throttling, broker or DB away)
"""

from __future__ import annotations


class SnapfimError(Exception):
    """Base of every error snapfim raises on purpose."""


class TransientError(SnapfimError):
    """A failure that retrying later may fix (throttling, a database or broker briefly away)."""


class ConfigError(SnapfimError):
    """Settings or command-line arguments that cannot work."""


class AccountAccessError(ConfigError):
    """A cloud account refuses what snapfim needs (AccessDenied, a KMS key it may not use, a
    role that cannot be assumed): the account is unhealthy until its owner fixes the grant;
    its other machines' work is not retried meanwhile, other accounts go on."""


class SourceError(SnapfimError):
    """A block source cannot be opened or read."""


class SourceNotFound(SourceError):
    """The image file, snapshot or blob does not exist."""


class SourceReadError(SourceError):
    """A read failed, or returned fewer bytes than the source claims to hold."""


class TransientSourceError(SourceReadError, TransientError):
    """A read a retry may fix: the service throttled it, or a block's bytes did not match
    their checksum or length in transit."""


class DiskError(SnapfimError):
    """The volume system or a filesystem on the disk cannot be used."""


class NoFilesystemError(DiskError):
    """No volume of the disk holds a filesystem snapfim can scan."""


class UnsupportedFilesystem(DiskError):
    """A filesystem type snapfim does not read (yet); ``name`` says which."""

    def __init__(self, message: str, name: str = "unknown") -> None:
        super().__init__(message)
        self.name = name


class ScanMemoryError(DiskError):
    """Reading the disk needed more memory than ``SNAPFIM_MAX_SCAN_MEMORY_MB`` allows."""


class CorruptFilesystem(DiskError):
    """A filesystem whose structures are damaged or cut short."""


class PolicyError(SnapfimError):
    """An invalid monitored entity, path or pattern."""


class StorageError(SnapfimError):
    """The database refused or failed an operation."""


class TransientStorageError(StorageError, TransientError):
    """The database was unreachable or the transaction lost a race; retry."""


class NotFound(StorageError):
    """A named machine, scan or policy entity does not exist."""


class DeliveryError(SnapfimError):
    """A sink did not accept a batch (refused, unreachable, timed out); it is retried."""
