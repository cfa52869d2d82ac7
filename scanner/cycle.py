"""The fleet's scan cycle, one step per function: plan -> snapshot -> wait -> scan ->
(commit) -> emit -> clean up, plus discovery, sweeps, and the delivery round (alerts for
stale machines, pending deliveries retried).

Each step takes database ids, reads what it needs through :mod:`scanner.storage` (typed rows:
no SQL here), does its work and records the outcome; the Celery tasks in ``workers/`` only
call these and chain them. A scan is committed and emitted by :mod:`scanner.commit`, the path
`snapfim scan` takes too. ``FleetSettings`` lives in :mod:`scanner.settings` (re-exported
here). Every step is idempotent: running it twice (a redelivered task) changes nothing the
first run did not.

One machine's failure stays that machine's: any error while snapshotting, reading or storing
one machine (our own errors, and anything unforeseen a hostile disk provokes) becomes that
scan's ``failed`` status with a one-line reason, and the other machines' steps go on. Only
transient errors (database or broker away, throttling) propagate, to be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from scanner.cloud.provider import SNAPFIM_TAG, Provider, SnapshotInfo, provider_for
from scanner.commit import commit_scan, emit_scan
from scanner.diff import FileDiff
from scanner.emitters.delivery import DeliveryReport, deliver
from scanner.errors import (
    AccountAccessError,
    SnapfimError,
    SourceError,
    StorageError,
    TransientError,
)
from scanner.incremental import Reuse
from scanner.lifecycle import SCAN_DONE
from scanner.pipeline import ScanOptions, ScanOutcome, scan_sources
from scanner.policy import PolicyEntity
from scanner.runner import Disk, incremental_reuse
from scanner.schedule import due_machines
from scanner.settings import FleetSettings
from scanner.sources.base import BlockSource
from scanner.sources.machine import machine_locator
from scanner.sources.unavailable import UnavailableSource
from scanner.storage import fleet, outbox
from scanner.storage.fleet import AccountRow, DiskRow, SnapshotRow
from scanner.storage.hives import previous_hives
from scanner.storage.policies import load_policy, previous_content_rules
from scanner.storage.repository import Repository, utc

__all__ = ["FleetSettings", "accounts_to_discover", "alert_stale", "cleanup", "deliver_round",
           "discover", "emit", "fail", "plan", "poll_snapshots", "raise_failed_alert",
           "scan_cycle", "sweep", "sweep_snapshots", "take_snapshots"]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _provider(acct: AccountRow) -> Provider:
    return provider_for(acct.cloud, acct.config)


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong, for a scan or snapshot that failed on it: the
    message of our errors, the exception's type and message for anything else."""
    text = str(exc) if isinstance(exc, SnapfimError) else f"{type(exc).__name__}: {exc}"
    line = " ".join(text.split()) or type(exc).__name__
    return line if len(line) <= 500 else line[:499] + "…"


def _unhealthy(repo: Repository, account_id: int, exc: AccountAccessError) -> None:
    """The account refused access: `snapfim account list` shows why until discovery works."""
    with repo.transaction() as conn:
        fleet.set_account_error(conn, account_id, _reason(exc))
    log.warning("account %s is unhealthy: %s", account_id, exc)


# -- discovery and planning -------------------------------------------------------------------
def discover(repo: Repository, account_id: int) -> int:
    """Discover an account's machines and disks; returns how many are present. A cloud that
    refuses or throttles shows why in the account's health (0 machines); a throttled account
    stays due, so the next planning round tries again."""
    with repo.transaction() as conn:
        acct = fleet.account_by_id(conn, account_id)
    now = _now()
    try:
        found = _provider(acct).discover()
    except StorageError:
        raise
    except TransientError as exc:  # throttled: retried next round; the other accounts go on
        with repo.transaction() as conn:
            fleet.set_account_error(conn, account_id, _reason(exc))
        log.warning("discovery of account %s deferred: %s", acct.name, exc)
        return 0
    except SnapfimError as exc:
        with repo.transaction() as conn:
            fleet.record_discovery(conn, account_id, now, str(exc))
        log.warning("discovery of account %s failed: %s", acct.name, exc)
        return 0
    try:
        with repo.transaction() as conn:
            fleet.sync_machines(conn, account_id, found, now)
            fleet.record_discovery(conn, account_id, now)
    except TransientError:
        raise
    except StorageError as exc:  # rolled back: the account shows why, the others go on
        with repo.transaction() as conn:
            fleet.record_discovery(conn, account_id, now, f"storing the machines: {exc}")
        log.warning("storing the machines of account %s failed: %s", acct.name, exc)
        return 0
    return len(found)


def accounts_to_discover(repo: Repository, settings: FleetSettings) -> list[int]:
    """Enabled, onboarded accounts whose discovery is older than the discovery interval
    (the built-in account of `snapfim scan` machines has no provider and is skipped)."""
    now = _now()
    with repo.transaction() as conn:
        accounts = fleet.list_accounts(conn)
    return [a.id for a in accounts
            if a.enabled and (a.cloud != "local" or "images" in a.config)
            and (a.last_discovered_at is None
                 or (utc(a.last_discovered_at) or now) <= now - settings.discovery_interval)]


def plan(repo: Repository, settings: FleetSettings) -> list[int]:
    """Open a scan cycle for every due machine; returns the new scan ids."""
    now = _now()
    with repo.transaction() as conn:
        due = due_machines(fleet.schedules(conn), now, settings.cadence, settings.max_new_scans,
                           settings.retry_failed_after)
        opened = [fleet.open_cycle(conn, int(m.key), now) for m in due]
    return [scan_id for scan_id in opened if scan_id is not None]


# -- snapshots --------------------------------------------------------------------------------
def take_snapshots(repo: Repository, scan_id: int) -> bool:
    """Start one snapshot set of every disk of the scan's machine (one provider call per
    machine: the disks at one instant) and record all its snapshots together; False if the
    scan is not snapshotting any more (already handled by an earlier delivery). A
    redelivered task gets the set the first delivery made (the provider finds it by its
    scan tag); a disk the set lacks is a failed snapshot (the scan fails, the next cycle
    takes a complete set: a second set would mix two instants)."""
    with repo.transaction() as conn:
        cyc = fleet.lock_cycle(conn, scan_id)
        existing = {s.disk_id for s in fleet.snapshots_of(conn, scan_id)}
    if cyc.scan.status != "snapshotting":
        return False
    if not cyc.disks:
        fail(repo, scan_id, "the machine has no disks")
        return False
    if all(d.id in existing for d in cyc.disks):
        return True
    provider = _provider(cyc.account)
    info = cyc.machine_info()
    try:
        made = provider.create_snapshots(info, {SNAPFIM_TAG: str(scan_id)})
        snaps = {d.id: made.get(d.resource_id) or SnapshotInfo(
            "", "failed", {}, f"{d.resource_id} is not in the machine's snapshot set "
            "(attached after it was taken?)") for d in cyc.disks}
    except TransientError:
        raise
    except Exception as exc:  # this machine's snapshot fails; the cycle goes on
        if not isinstance(exc, SnapfimError):
            log.exception("snapshot of scan %s failed", scan_id)
        if isinstance(exc, AccountAccessError):
            _unhealthy(repo, cyc.account.id, exc)
        failed = SnapshotInfo("", "failed", {}, _reason(exc))
        snaps = {d.id: failed for d in cyc.disks}
    with repo.transaction() as conn:
        for disk_id, snap in snaps.items():
            fleet.add_snapshot(conn, scan_id, disk_id, snap, _now())
    return True


def poll_snapshots(repo: Repository, scan_id: int) -> str:
    """Refresh pending snapshots: ``ready`` (scan queued), ``waiting`` or ``failed``."""
    with repo.transaction() as conn:
        cyc = fleet.lock_cycle(conn, scan_id)
        snaps = fleet.snapshots_of(conn, scan_id)
    if cyc.scan.status == "queued":
        return "ready"
    if cyc.scan.status != "snapshotting":
        return cyc.scan.status
    provider = _provider(cyc.account)
    states = []
    for snap in snaps:
        info = snap.info()
        if snap.state in ("requested", "pending"):
            try:
                info = provider.refresh(info)
            except TransientError:
                raise
            except Exception as exc:  # this machine's snapshot fails; the cycle goes on
                if not isinstance(exc, SnapfimError):
                    log.exception("refreshing a snapshot of scan %s failed", scan_id)
                info = SnapshotInfo(info.cloud_id, "failed", info.locator, _reason(exc))
            with repo.transaction() as conn:
                fleet.set_snapshot_state(conn, snap.id, info.state, error=info.error, now=_now())
        states.append((info.state, info.error))
    failed = [e or "snapshot failed" for s, e in states if s == "failed"]
    if failed:
        fail(repo, scan_id, "; ".join(failed))
        return "failed"
    if all(s == "ready" for s, _ in states):
        with repo.transaction() as conn:
            fleet.set_scan_status(conn, scan_id, "queued")
        return "ready"
    return "waiting"


# -- the scan ---------------------------------------------------------------------------------
def scan_cycle(repo: Repository, scan_id: int, settings: FleetSettings, *,
               reraise: tuple[type[BaseException], ...] = ()) -> FileDiff | None:
    """Read the snapshots (every disk of the machine, in one scan: :func:`_read_disks`), diff
    and commit atomically. None when there was nothing to do
    (the scan was committed or failed by an earlier delivery of the same task).

    Any error of this machine fails its scan (see the module docstring), except transient
    ones and those in ``reraise`` (the caller's own: a task's time limit), which propagate."""
    passthrough: tuple[type[BaseException], ...] = (TransientError, *reraise)
    with repo.transaction() as conn:
        cyc = fleet.lock_cycle(conn, scan_id)
        row, mach, acct = cyc.scan, cyc.machine, cyc.account
        if row.status in SCAN_DONE:
            return None
        gave_up = row.attempts >= settings.max_attempts
        if not gave_up:
            fleet.set_scan_status(conn, scan_id, "running", count_attempt=True)
        snaps = fleet.snapshots_of(conn, scan_id)
        policy = load_policy(conn, mach.account_id)
        for snap in snaps:
            if not gave_up:
                fleet.set_snapshot_state(conn, snap.id, "scanning")
    if gave_up:  # each earlier delivery died (worker killed, out of memory, time limit)
        fail(repo, scan_id, f"gave up after {row.attempts} attempts that did not finish")
        return None
    provider = _provider(acct)
    locator = machine_locator([dict(snap.locator or {}) for snap in snaps])
    started = _now()
    try:
        outcome = _read_disks(provider, snaps, {d.id: d for d in cyc.disks}, mach.name, policy,
                              ScanOptions(settings.hash_workers, limits=settings.limits,
                                          previous_digests=lambda: repo.file_digests(
                                              mach.name, mach.account_id),
                                          previous_parses=lambda: repo.package_parses(
                                              mach.name, mach.account_id),
                                          previous_content=lambda: previous_content_rules(
                                              repo, mach.name, mach.account_id),
                                          previous_hive_digests=lambda: previous_hives(
                                              repo, mach.name, mach.account_id)),
                              passthrough, lambda pairs: _reuse(repo, provider, mach.id, pairs))
    except passthrough:
        raise
    except Exception as exc:  # a disk we cannot read fails this machine's scan, no other
        if not isinstance(exc, SnapfimError):
            log.exception("scan %s of %s failed", scan_id, mach.name)
        if isinstance(exc, AccountAccessError):
            _unhealthy(repo, acct.id, exc)
        fail(repo, scan_id, _reason(exc))
        return None
    try:
        with repo.transaction() as conn:
            if fleet.lock_scan(conn, scan_id).status in SCAN_DONE:  # committed meanwhile
                return None
            committed = commit_scan(repo, conn, mach.id, outcome, started=started,
                                    source=locator, scan_id=scan_id,
                                    sinks=settings.delivery.names)
            for snap in snaps:
                fleet.set_snapshot_state(conn, snap.id, "scanned")
    except passthrough:
        raise
    except Exception as exc:  # rolled back: the machine's state is untouched
        if not isinstance(exc, SnapfimError):
            log.exception("storing scan %s of %s failed", scan_id, mach.name)
        fail(repo, scan_id, "could not store the scan: " + _reason(exc))
        return None
    return committed.diff


def _reuse(repo: Repository, provider: Provider, machine_id: int,
           pairs: list[tuple[SnapshotRow, BlockSource]]) -> Reuse | None:
    """An incremental scan's reuse (:func:`scanner.runner.incremental_reuse`) when the
    provider can diff the disks' snapshots against their parents (the snapshots the
    machine's last scan read, still there); None: the scan reads everything. A disk whose
    diff is unavailable (another lineage, an error) is read in full; a diff that fails is
    never an error of the scan."""
    diff_ranges = getattr(provider, "changed_ranges", None)
    if diff_ranges is None:
        return None
    disks: list[Disk] = []
    for snap, source in pairs:
        parent = None
        if snap.parent_id is not None:
            with repo.transaction() as conn:
                parent = fleet.snapshot_by_id(conn, snap.parent_id)
        usable = parent is not None and parent.state == "scanned" and bool(parent.locator)
        disks.append(Disk(source, dict(snap.locator or {}),
                          [dict(parent.locator)] if parent is not None and usable else []))

    def diff(previous: dict[str, Any], current: dict[str, Any]
             ) -> list[tuple[int, int]] | None:
        try:
            ranges: list[tuple[int, int]] | None = diff_ranges(previous, current)
        except TransientError:
            raise
        except SnapfimError as exc:
            log.warning("changed blocks of %s unavailable (%s): full read",
                        current.get("snapshot"), exc)
            return None
        if ranges is None:
            log.info("%s is not of its parent's lineage: full read", current.get("snapshot"))
        return ranges

    return incremental_reuse(repo, machine_id, disks, diff).reuse


Incremental = Callable[[list[tuple[SnapshotRow, BlockSource]]], Reuse | None]


def _read_disks(provider: Provider, snaps: list[SnapshotRow], disks: dict[int, DiskRow],
                machine_name: str, policy: list[PolicyEntity], options: ScanOptions,
                passthrough: tuple[type[BaseException], ...],
                incremental: Incremental | None = None) -> ScanOutcome:
    """Open every snapshot of the machine (in disk order), scan them as one machine, close
    them, and check that each snapshot read is still the snapshot it was.

    A snapshot that cannot be opened is a failed disk of a ``partial`` scan when another one
    opened; when none opens, the first error is raised (the scan fails)."""
    if not snaps:
        raise SourceError("the scan has no snapshots to read")
    sources: list[BlockSource] = []
    opened: list[tuple[BlockSource, dict[str, object]]] = []
    pairs: list[tuple[SnapshotRow, BlockSource]] = []
    first_error: Exception | None = None
    try:
        for snap in snaps:
            locator = dict(snap.locator or {})
            try:
                source = provider.open_source(locator)
            except passthrough:
                raise
            except Exception as exc:  # this disk is missing from the scan, not the others
                if not isinstance(exc, SnapfimError):
                    log.exception("opening a snapshot of %s failed", machine_name)
                first_error = first_error or exc
                disk = disks.get(snap.disk_id)
                size = disk.size_bytes or 0 if disk is not None else 0
                sources.append(UnavailableSource(locator, _reason(exc), size))
                continue
            sources.append(source)
            opened.append((source, locator))
            pairs.append((snap, source))
        if not opened and first_error is not None:
            raise first_error
        if incremental is not None:  # the snapshots that opened, with their sources
            options.reuse = incremental(pairs)
        names = ([machine_name] if len(snaps) == 1 else
                 [_disk_name(disks.get(s.disk_id), s.disk_id) for s in snaps])
        outcome = scan_sources(sources, policy, options, names)
    finally:
        for source, _locator in opened:
            source.close()
    for _source, locator in opened:
        provider.check(locator)  # the data read must still be the snapshot it was
    return outcome


def _disk_name(disk: DiskRow | None, disk_id: int) -> str:
    """How a disk of a machine with several is named in its coverage report."""
    return disk.resource_id if disk is not None else f"disk {disk_id}"


def fail(repo: Repository, scan_id: int, reason: str) -> None:
    """Record a failed scan with its reason (its machine's state is untouched), and its alert
    (queued for the registered sinks) in the same transaction."""
    with repo.transaction() as conn:
        row = fleet.lock_scan(conn, scan_id)
        if row.status in SCAN_DONE:
            return
        now = _now()
        fleet.set_scan_status(conn, scan_id, "failed", error=reason, finished_at=now)
        raise_failed_alert(conn, scan_id, now)
        for snap in fleet.snapshots_of(conn, scan_id):
            if snap.state not in ("failed", "deleted", "scanned"):
                fleet.set_snapshot_state(conn, snap.id, "failed")
    log.warning("scan %s failed: %s", scan_id, reason)


# -- after the scan ---------------------------------------------------------------------------
def emit(repo: Repository, scan_id: int, settings: FleetSettings) -> int:
    """Deliver what is pending (this scan's events were queued when it committed) and mark
    the scan emitted once every sink accepted its events (:func:`scanner.commit.emit_scan`,
    as a command-line scan does); returns how many records went out."""
    return emit_scan(repo, settings.delivery, scan_id).delivered


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def raise_failed_alert(conn: Connection, scan_id: int, now: datetime) -> int | None:
    """The alert of a failed scan (once per scan), queued in ``conn``'s transaction."""
    ctx = outbox.scan_alert_context(conn, scan_id)
    if ctx is None:
        return None
    detail = {"status": ctx.status, "error": ctx.error, "attempts": ctx.attempts,
              "started_at": _iso(ctx.started_at), "finished_at": _iso(ctx.finished_at),
              "last_success_scan_id": ctx.last_success_scan_id,
              "last_success_at": _iso(ctx.last_success_at)}
    return outbox.raise_alert(conn, machine_id=ctx.machine_id, kind="scan_failed",
                              dedupe_key=f"scan_failed:{scan_id}", scan_id=scan_id,
                              detail=detail, now=now)


def alert_stale(repo: Repository, settings: FleetSettings) -> list[int]:
    """Raise one alert per machine whose last successful scan is older than
    ``stale_machine_after`` (once per last successful scan); returns the new alert ids."""
    now = _now()
    after = settings.stale_machine_after
    raised = []
    with repo.transaction() as conn:
        for m in outbox.stale_machines(conn, now - after):
            detail = {"last_success_scan_id": m.scan_id,
                      "last_success_at": _iso(m.finished_at),
                      "stale_hours": after.total_seconds() / 3600}
            alert_id = outbox.raise_alert(
                conn, machine_id=m.machine_id, kind="scan_stale",
                dedupe_key=f"scan_stale:{m.machine_id}:{m.scan_id or 0}",
                scan_id=m.scan_id, detail=detail, now=now)
            if alert_id is not None:
                raised.append(alert_id)
    return raised


def deliver_round(repo: Repository, settings: FleetSettings) -> DeliveryReport:
    """Beat's delivery round: alerts for stale machines, then every pending delivery whose
    backoff has passed, then ``emitted_at`` for the scans now fully delivered."""
    with repo.transaction() as conn:  # sinks configured here are registered before alerts
        outbox.register_sinks(conn, settings.delivery.names, _now())
    alert_stale(repo, settings)
    report = deliver(repo, settings.delivery)
    with repo.transaction() as conn:
        outbox.mark_emitted(conn, _now())
    return report


def cleanup(repo: Repository, scan_id: int, settings: FleetSettings) -> int:
    """Delete the machine's snapshots beyond the newest ``keep_snapshots`` per disk."""
    with repo.transaction() as conn:
        row = fleet.get_scan(conn, scan_id)
        if row is None:
            return 0
        mach, _disks = fleet.machine_info(conn, row.machine_id)
        acct = fleet.account_by_id(conn, mach.account_id)
        expired = fleet.expired_snapshots(conn, mach.id, settings.keep_snapshots)
    provider = _provider(acct)
    for snap in expired:
        provider.delete_snapshot(SnapshotInfo(snap.cloud_id or "", snap.state,
                                              dict(snap.locator)))
        with repo.transaction() as conn:
            fleet.set_snapshot_state(conn, snap.id, "deleted", now=_now())
    return len(expired)


def sweep_snapshots(repo: Repository, settings: FleetSettings) -> dict[str, list[str]]:
    """Delete the snapshots this service tagged that are older than the retention, in every
    enabled cloud account (what a crashed cleanup left behind); returns their ids by account.
    An account that refuses is marked unhealthy; the others go on."""
    with repo.transaction() as conn:
        accounts = [a for a in fleet.list_accounts(conn) if a.enabled and a.cloud != "local"]
    older_than = _now() - settings.snapshot_retention
    swept: dict[str, list[str]] = {}
    for acct in accounts:
        with repo.transaction() as conn:
            ours = fleet.scan_ids_of_account(conn, acct.id)

        def deleted(cloud_id: str, account_id: int = acct.id) -> None:
            with repo.transaction() as conn:
                fleet.mark_snapshots_deleted(conn, account_id, [cloud_id], _now())

        try:
            gone = _provider(acct).sweep(older_than, {str(n) for n in ours}, deleted)
        except AccountAccessError as exc:
            _unhealthy(repo, acct.id, exc)
            continue
        except SnapfimError as exc:  # transient or not: the next sweep tries again
            log.warning("sweeping the snapshots of account %s failed: %s", acct.name, exc)
            continue
        if gone:
            log.info("swept %d snapshots of account %s", len(gone), acct.name)
        swept[acct.name] = gone
    return swept


def sweep(repo: Repository, settings: FleetSettings) -> list[int]:
    """Fail scans stuck in flight for too long (their tasks were lost); returns their ids."""
    with repo.transaction() as conn:
        stuck = fleet.stale_scans(conn, _now() - settings.stale_after)
    for scan_id in stuck:
        fail(repo, scan_id, f"no progress for {settings.stale_after}; swept")
    return stuck
