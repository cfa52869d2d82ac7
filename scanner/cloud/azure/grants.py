"""Read access to snapshots (a SAS URL of the snapshot's VHD page blob), granted for a bounded
duration and revoked as soon as the reader is done.

Azure allows at most :data:`MAX_PER_DISK` snapshots of one disk (its "family") to be open for
reading at a time. This process keeps one grant per snapshot, shared by its readers (the scan's
block source and the page-range diff against the parent both use the snapshot's one grant),
revoked when the last of them lets go; it refuses a grant that would exceed the family's limit
(:class:`~scanner.errors.GrantLimitReached`, transient) instead of asking Azure for it. One scan
of a machine at a time holds at most two grants per disk (the snapshot and its parent).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from scanner.cloud.azure.faults import finish, translate
from scanner.cloud.azure.session import AzureAccount, compute
from scanner.cloud.azure.settings import AzureSettings
from scanner.cloud.azure.snapshots import parse_id
from scanner.errors import GrantLimitReached, SnapfimError, SourceError
from scanner.forksafe import reset_in_child

log = logging.getLogger(__name__)

MAX_PER_DISK = 5
MAX_URL = 8192


@dataclass
class _Grant:
    url: str
    family: str
    users: int = 1


@dataclass
class _Table:
    grants: dict[str, _Grant] = field(default_factory=dict)     # by snapshot id (lower case)
    families: dict[str, int] = field(default_factory=dict)      # open grants by disk id
    lock: threading.Lock = field(default_factory=threading.Lock)


_table = _Table()


def _new_table_after_fork() -> None:
    """A forked hash worker holds no grant (it reads through the URL it was given)."""
    global _table
    _table = _Table()


def open_grants(family: str | None = None) -> int:
    """How many grants this process holds (of one disk's snapshots, if given)."""
    if family is None:
        return len(_table.grants)
    return _table.families.get(family.lower(), 0)


def acquire(account: AzureAccount, snap_id: str, family: str) -> str:
    """A read SAS URL of the snapshot (this process's grant, shared); ``family`` is the
    id of the disk it copies. Every acquire is paired with a :func:`release`."""
    reset_in_child(_new_table_after_fork)
    key, fam = snap_id.lower(), family.lower()
    with _table.lock:
        held = _table.grants.get(key)
        if held is not None:
            held.users += 1
            return held.url
        if _table.families.get(fam, 0) >= MAX_PER_DISK:
            raise GrantLimitReached(f"{parse_id(family)[2]}: {MAX_PER_DISK} snapshots of the "
                                    "disk are open for reading already (Azure's limit); "
                                    "retrying later")
        _table.families[fam] = _table.families.get(fam, 0) + 1  # reserved while granting
    try:
        url = _grant(account, snap_id)
    except BaseException:
        with _table.lock:
            _table.families[fam] -= 1
        raise
    with _table.lock:
        _table.grants[key] = _Grant(url, fam)
    return url


def release(account: AzureAccount, snap_id: str) -> None:
    """Let go of the snapshot's grant; the last user revokes it (a failed revoke is logged:
    the grant then ends with its duration)."""
    key = snap_id.lower()
    with _table.lock:
        held = _table.grants.get(key)
        if held is None:
            return
        held.users -= 1
        if held.users > 0:
            return
        del _table.grants[key]
    try:
        _revoke_quietly(account, snap_id)
    finally:
        with _table.lock:
            _table.families[held.family] = max(0, _table.families.get(held.family, 1) - 1)


def _grant(account: AzureAccount, snap_id: str) -> str:
    """Ask Azure for a read SAS; once Azure accepted the request, any failure (polling
    refused or cut, the operation stuck past its bound, an unusable URL) revokes it, best
    effort, before the error goes up."""
    from azure.mgmt.compute.models import GrantAccessData

    _sub, group, name = parse_id(snap_id)
    what = f"granting read access to {name}"
    seconds = AzureSettings.from_env().grant_seconds
    try:
        poller = compute(account).snapshots.begin_grant_access(
            group, name, GrantAccessData(access="Read", duration_in_seconds=seconds))
    except Exception as exc:
        raise translate(exc, what) from exc   # not accepted: nothing to revoke
    try:
        access = finish(poller, what)
        url = str(getattr(access, "access_sas", "") or "")
        if not url.startswith("https://") or len(url) > MAX_URL or any(
                c.isspace() for c in url):
            raise SourceError(f"{what}: Azure returned no usable https SAS URL")
    except BaseException:
        _revoke_quietly(account, snap_id)
        raise
    return url


def _revoke_quietly(account: AzureAccount, snap_id: str) -> None:
    try:
        revoke(account, snap_id)
    except SnapfimError as exc:
        log.warning("revoking read access to %s failed (it expires by itself): %s",
                    parse_id(snap_id)[2], exc)


def revoke(account: AzureAccount, snap_id: str) -> None:
    """End read access to the snapshot (waits until Azure is done, within a bound)."""
    _sub, group, name = parse_id(snap_id)
    what = f"revoking read access to {name}"
    try:
        poller = compute(account).snapshots.begin_revoke_access(group, name)
    except Exception as exc:
        raise translate(exc, what) from exc
    finish(poller, what)
