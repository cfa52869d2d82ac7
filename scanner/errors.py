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
    │   ├── SourceReadError         a read failed or returned short (truncated image)
    │   │   └── TransientSourceError  (+ TransientError) throttled, or a block failed its check
    │   │       └── GrantLimitReached  a disk's snapshots hold as many read grants as allowed
    │   ├── LineageError            two snapshots that cannot be compared block by block
    │   └── SnapshotGone            the snapshot's data changed or vanished after it was taken
    ├── DiskError                   volume system / filesystem layer
    │   ├── NoFilesystemError       nothing scannable on the disk
    │   ├── UnsupportedFilesystem
    │   ├── CorruptFilesystem       superblock or structures unreadable, truncated volume
    │   │   ├── LvmError            an LVM physical volume's label or metadata is damaged
    │   │   ├── XattrLimitExceeded  one inode's extended attributes exceed the scan's bound
    │   │   └── DirectoryInconsistent  a directory's blocks do not list consistently
    │   ├── UnlistableDirectory     a directory the walk will not list (a bound exceeded)
    │   └── ScanMemoryError         the scan needed more memory than its bound
    ├── HiveError                   a registry hive file is truncated, corrupt or not a hive
    ├── InventoryError              a package database or unit file is damaged or past a bound
    ├── PolicyError                 invalid monitored entity or pattern
    ├── StorageError                database layer
    │   ├── NotFound                a named machine / scan / entity does not exist
    │   └── TransientStorageError   (also TransientError) database away, lost a race
    ├── IllegalTransition           a scan or snapshot state change the lifecycle forbids
    ├── DeliveryError               a sink (syslog, webhook, file) did not accept a batch
    └── TransientError              marks what a retry can fix (throttling, broker or DB away)

Errors from a disk's content are caught as close to where they occur as the reader can
still go on: a file, directory or hive that cannot be read (``DirectoryInconsistent``,
``UnlistableDirectory``, ``XattrLimitExceeded``, ``HiveError``) becomes an unreadable path
(its previous state kept) or a coverage note, a volume a coverage note; what leaves nothing
scannable fails the scan. Every class lives here, never in the module that raises it
(``tests/unit/test_layering.py`` checks).
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


class GrantLimitReached(TransientSourceError):
    """A disk's snapshots already hold as many open read grants (SAS) as the cloud allows
    (Azure: 5 per disk family); one more waits until one is revoked."""


class SnapshotGone(SourceError):
    """The snapshot's data changed or disappeared after it was taken (a local image
    replaced mid-cycle): scanning it would record content that is not the snapshot."""


class LineageError(SourceError):
    """Two snapshots that are not of one volume's lineage cannot be compared block by block
    (an incremental scan then reads everything)."""


class DiskError(SnapfimError):
    """The volume system or a filesystem on the disk cannot be used."""


class NoFilesystemError(DiskError):
    """No volume of the disk holds a filesystem snapfim can scan."""


class UnsupportedFilesystem(DiskError):
    """A filesystem type snapfim does not read (yet); ``name`` says which."""

    def __init__(self, message: str, name: str = "unknown") -> None:
        super().__init__(message)
        self.name = name


class CorruptFilesystem(DiskError):
    """A filesystem whose structures are damaged or cut short."""


class LvmError(CorruptFilesystem):
    """A physical volume whose label or metadata cannot be read."""


class XattrLimitExceeded(CorruptFilesystem):
    """The extended attributes of one inode add up to more than the scan's bound."""


class DirectoryInconsistent(CorruptFilesystem):
    """A directory that cannot be listed completely and consistently (the reason); the
    filesystem readers re-raise it as a :class:`CorruptFilesystem` naming the inode."""


class UnlistableDirectory(DiskError):
    """A directory the walk will not list (a bound exceeded); the message is the reason."""


class ScanMemoryError(DiskError):
    """Reading the disk needed more memory than ``SNAPFIM_MAX_SCAN_MEMORY_MB`` allows."""


class HiveError(SnapfimError):
    """A registry hive (or one of its cells) is truncated, corrupt or not a hive."""


class InventoryError(SnapfimError):
    """A package database (dpkg, rpm, apk), service list or unit file on the disk is damaged
    or beyond a bound: a coverage note, that source's previous state kept. ``path``: the
    file or directory that could not be read, when known (the coverage names it)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PolicyError(SnapfimError):
    """An invalid monitored entity, path or pattern."""


class StorageError(SnapfimError):
    """The database refused or failed an operation."""


class TransientStorageError(StorageError, TransientError):
    """The database was unreachable or the transaction lost a race; retry."""


class NotFound(StorageError):
    """A named machine, scan or policy entity does not exist."""


class IllegalTransition(SnapfimError):
    """A scan or snapshot state change the lifecycle does not allow (a bug or a lost race)."""


class DeliveryError(SnapfimError):
    """A sink did not accept a batch (refused, unreachable, timed out); it is retried."""
