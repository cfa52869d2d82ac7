"""The sweeper's rule, shared by the cloud providers: which tagged snapshots left behind are
ours to delete, and deleting them one by one (a failure logged and skipped, refused access
propagated: the account is unhealthy)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from scanner.cloud.provider import ACCOUNT_TAG, SNAPFIM_TAG
from scanner.errors import AccountAccessError, SnapfimError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Leftover:
    """A snapshot as the cloud lists it: its id, tags and when it was started."""

    cloud_id: str
    tags: dict[str, str]
    started: datetime | None


def is_ours(snap: Leftover, older_than: datetime, scans: Collection[str],
            account: str | None) -> bool:
    """Started before ``older_than``, tagged with one of ``scans`` (the scan ids the service
    knows: a snapshot that merely carries the tag key is never ours) and, when the account's
    id is known, with that account's tag."""
    if snap.tags.get(SNAPFIM_TAG) not in scans:
        return False
    if account is not None and snap.tags.get(ACCOUNT_TAG) != account:
        return False
    return isinstance(snap.started, datetime) and snap.started < older_than


def sweep_leftovers(found: Iterable[Leftover], older_than: datetime, scans: Collection[str],
                    account: str | None, delete: Callable[[str], None],
                    deleted: Callable[[str], None]) -> list[str]:
    """Delete (``delete``) the snapshots of ``found`` that :func:`is_ours` accepts, in id
    order; ``deleted`` is called with each id once gone. One that cannot be deleted is
    logged and skipped; :class:`AccountAccessError` propagates. Returns the deleted ids."""
    gone = []
    for snap in sorted(found, key=lambda s: s.cloud_id):
        if not is_ours(snap, older_than, scans, account):
            continue
        try:
            delete(snap.cloud_id)
        except AccountAccessError:
            raise
        except SnapfimError as exc:
            log.warning("sweep: %s not deleted: %s", snap.cloud_id, exc)
            continue
        deleted(snap.cloud_id)
        gone.append(snap.cloud_id)
    return gone
