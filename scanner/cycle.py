"""The fleet's scan cycle, one step per function: plan -> snapshot -> wait -> scan ->
(commit) -> emit -> clean up, plus discovery, sweeps, and the delivery round (alerts for
stale machines, pending deliveries retried).

Each step takes database ids, reads what it needs from the database, does its work and records
the outcome; the Celery tasks in ``workers/`` only call these and chain them. Every step is
idempotent: running it twice (a redelivered task) changes nothing the first run did not.

One machine's failure stays that machine's: any error while snapshotting, reading or storing
one machine (our own errors, and anything unforeseen a hostile disk provokes) becomes that
scan's ``failed`` status with a one-line reason, and the other machines' steps go on. Only
transient errors (database or broker away, throttling) propagate, to be retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from scanner.cloud.provider import DiskInfo, MachineInfo, Provider, SnapshotInfo, provider_for
from scanner.diff import FileDiff
from scanner.emitters.delivery import DeliveryConfig, DeliveryReport, deliver
from scanner.emitters.settings import AlertSettings
from scanner.errors import NotFound, SnapfimError, SourceError, TransientError
from scanner.lifecycle import SCAN_DONE
from scanner.limits import Limits
from scanner.pipeline import ScanOptions, ScanOutcome, scan_sources
from scanner.policy import PolicyEntity
from scanner.runner import write_outcome
from scanner.schedule import due_machines
from scanner.sources.base import BlockSource
from scanner.sources.machine import machine_locator
from scanner.sources.unavailable import UnavailableSource
from scanner.storage import fleet, outbox
from scanner.storage.policies import load_policy
from scanner.storage.repository import Repository, utc
from scanner.storage.tables import account, machine, scan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """Knobs of the fleet service (see :class:`scanner.settings.Settings`)."""

    cadence: timedelta = timedelta(hours=24)
    discovery_interval: timedelta = timedelta(minutes=30)
    max_new_scans: int = 100           # per planning round
    keep_snapshots: int = 1            # per disk, as parents for incremental scans
    stale_after: timedelta = timedelta(hours=9)  # in flight longer: swept as failed
    max_attempts: int = 3              # deliveries of one scan before it is given up
    retry_failed_after: timedelta = timedelta(hours=1)
    hash_workers: int = 1
    jsonl_path: str | None = None
    output_format: str = "configchange"
    limits: Limits = Limits()
    alerts: AlertSettings = AlertSettings()

    @property
    def delivery(self) -> DeliveryConfig:
        """The sinks events and alerts go to."""
        return DeliveryConfig(self.jsonl_path, self.output_format, self.alerts)

    @property
    def stale_machine_after(self) -> timedelta:
        """A machine without a successful scan for this long is alerted (default 2 cadences)."""
        if self.alerts.stale_hours is not None:
            return timedelta(hours=self.alerts.stale_hours)
        return 2 * self.cadence


def _now() -> datetime:
    return datetime.now(UTC)


def _provider(acct: Any) -> Provider:
    return provider_for(acct.cloud, dict(acct.config or {}))


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong, for a scan or snapshot that failed on it: the
    message of our errors, the exception's type and message for anything else."""
    text = str(exc) if isinstance(exc, SnapfimError) else f"{type(exc).__name__}: {exc}"
    line = " ".join(text.split()) or type(exc).__name__
    return line if len(line) <= 500 else line[:499] + "…"


# -- discovery and planning -------------------------------------------------------------------
def discover(repo: Repository, account_id: int) -> int:
    """Discover an account's machines and disks; returns how many are present."""
    with repo.transaction() as conn:
        acct = conn.execute(account.select().where(account.c.id == account_id)).first()
    if acct is None:
        raise NotFound(f"no account with id {account_id}")
    now = _now()
    try:
        found = _provider(acct).discover()
    except TransientError:
        raise
    except SnapfimError as exc:
        with repo.transaction() as conn:
            fleet.record_discovery(conn, account_id, now, str(exc))
        log.warning("discovery of account %s failed: %s", acct.name, exc)
        return 0
    with repo.transaction() as conn:
        fleet.sync_machines(conn, account_id, found, now)
        fleet.record_discovery(conn, account_id, now)
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
def _cycle(conn: Any, scan_id: int) -> tuple[Any, Any, list[Any], Any]:
    row = fleet.lock_scan(conn, scan_id)
    mach, disks = fleet.machine_info(conn, row.machine_id)
    acct = conn.execute(account.select().where(account.c.id == mach.account_id)).first()
    return row, mach, disks, acct


def _machine_info(mach: Any, disks: list[Any]) -> MachineInfo:
    return MachineInfo(mach.resource_id, mach.name,
                       tuple(DiskInfo(d.resource_id, d.device, d.size_bytes) for d in disks),
                       mach.os, mach.region, mach.state, dict(mach.tags or {}))


def take_snapshots(repo: Repository, scan_id: int) -> bool:
    """Start a snapshot of every disk of the scan's machine; False if the scan is not
    snapshotting any more (already handled by an earlier delivery)."""
    with repo.transaction() as conn:
        row, mach, disks, acct = _cycle(conn, scan_id)
        existing = {s.disk_id for s in fleet.snapshots_of(conn, scan_id)}
    if row.status != "snapshotting":
        return False
    if not disks:
        fail(repo, scan_id, "the machine has no disks")
        return False
    provider = _provider(acct)
    info = _machine_info(mach, disks)
    for d, disk_info in zip(disks, info.disks, strict=True):
        if d.id in existing:
            continue
        try:
            snap = provider.create_snapshot(info, disk_info, {"snapfim:scan": str(scan_id)})
        except TransientError:
            raise
        except Exception as exc:  # this machine's snapshot fails; the cycle goes on
            if not isinstance(exc, SnapfimError):
                log.exception("snapshot of scan %s failed", scan_id)
            snap = SnapshotInfo("", "failed", {}, _reason(exc))
        with repo.transaction() as conn:
            fleet.add_snapshot(conn, scan_id, d.id, snap, _now())
    return True


def poll_snapshots(repo: Repository, scan_id: int) -> str:
    """Refresh pending snapshots: ``ready`` (scan queued), ``waiting`` or ``failed``."""
    with repo.transaction() as conn:
        row, _mach, _disks, acct = _cycle(conn, scan_id)
        snaps = fleet.snapshots_of(conn, scan_id)
    if row.status == "queued":
        return "ready"
    if row.status != "snapshotting":
        return row.status
    provider = _provider(acct)
    states = []
    for snap in snaps:
        info = SnapshotInfo(snap.cloud_id or "", snap.state, dict(snap.locator or {}), snap.error)
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
    """Read the snapshots, diff and commit atomically. None when there was nothing to do
    (the scan was committed or failed by an earlier delivery of the same task).

    Any error of this machine fails its scan (see the module docstring), except transient
    ones and those in ``reraise`` (the caller's own: a task's time limit), which propagate."""
    passthrough: tuple[type[BaseException], ...] = (TransientError, *reraise)
    with repo.transaction() as conn:
        row, mach, disks, acct = _cycle(conn, scan_id)
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
        outcome = _read_disks(provider, snaps, {d.id: d for d in disks}, mach.name, policy,
                              ScanOptions(settings.hash_workers, limits=settings.limits),
                              passthrough)
    except passthrough:
        raise
    except Exception as exc:  # a disk we cannot read fails this machine's scan, no other
        if not isinstance(exc, SnapfimError):
            log.exception("scan %s of %s failed", scan_id, mach.name)
        fail(repo, scan_id, _reason(exc))
        return None
    try:
        with repo.transaction() as conn:
            row = fleet.lock_scan(conn, scan_id)
            if row.status in SCAN_DONE:  # another delivery committed meanwhile
                return None
            previous = repo.previous_scan(conn, mach.id)
            _scan_id, diff = write_outcome(repo, conn, mach.id, outcome, previous=previous,
                                           started=started, finished=_now(), source=locator,
                                           scan_id=scan_id, sinks=settings.delivery.names)
            conn.execute(machine.update().where(machine.c.id == mach.id)
                         .values(os=outcome.os_family))
            for snap in snaps:
                fleet.set_snapshot_state(conn, snap.id, "scanned")
    except passthrough:
        raise
    except Exception as exc:  # rolled back: the machine's state is untouched
        if not isinstance(exc, SnapfimError):
            log.exception("storing scan %s of %s failed", scan_id, mach.name)
        fail(repo, scan_id, "could not store the scan: " + _reason(exc))
        return None
    return diff


def _read_disks(provider: Provider, snaps: list[Any], disks: dict[int, Any], machine_name: str,
                policy: list[PolicyEntity], options: ScanOptions,
                passthrough: tuple[type[BaseException], ...]) -> ScanOutcome:
    """Open every snapshot of the machine (in disk order), scan them as one machine, close
    them, and check that each local snapshot is still what was snapshotted.

    A snapshot that cannot be opened is a failed disk of a ``partial`` scan when another one
    opened; when none opens, the first error is raised (the scan fails)."""
    if not snaps:
        raise SourceError("the scan has no snapshots to read")
    sources: list[BlockSource] = []
    opened: list[tuple[BlockSource, dict[str, Any]]] = []
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
                size = getattr(disks.get(snap.disk_id), "size_bytes", None) or 0
                sources.append(UnavailableSource(locator, _reason(exc), size))
                continue
            sources.append(source)
            opened.append((source, locator))
        if not opened and first_error is not None:
            raise first_error
        names = ([machine_name] if len(snaps) == 1 else
                 [str(getattr(disks.get(s.disk_id), "resource_id", s.disk_id)) for s in snaps])
        outcome = scan_sources(sources, policy, options, names)
    finally:
        for source, _locator in opened:
            source.close()
    check = getattr(provider, "check", None)
    if check is not None:
        for _source, locator in opened:
            check(locator)  # each image must still be the snapshot it was
    return outcome


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
    the scan emitted once every sink accepted its events; returns how many records went out."""
    report = deliver(repo, settings.delivery)
    with repo.transaction() as conn:
        outbox.mark_emitted(conn, _now(), scan_id)
    return report.delivered


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def raise_failed_alert(conn: Any, scan_id: int, now: datetime) -> int | None:
    """The alert of a failed scan (once per scan), queued in ``conn``'s transaction."""
    ctx = outbox.scan_alert_context(conn, scan_id)
    if ctx is None:
        return None
    detail = {"status": ctx["status"], "error": ctx["error"], "attempts": ctx["attempts"],
              "started_at": _iso(ctx["started_at"]), "finished_at": _iso(ctx["finished_at"]),
              "last_success_scan_id": ctx["last_success_scan_id"],
              "last_success_at": _iso(ctx["last_success_at"])}
    return outbox.raise_alert(conn, machine_id=ctx["machine_id"], kind="scan_failed",
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
            detail = {"last_success_scan_id": m["scan_id"],
                      "last_success_at": _iso(m["finished_at"]),
                      "stale_hours": after.total_seconds() / 3600}
            alert_id = outbox.raise_alert(
                conn, machine_id=m["machine_id"], kind="scan_stale",
                dedupe_key=f"scan_stale:{m['machine_id']}:{m['scan_id'] or 0}",
                scan_id=m["scan_id"], detail=detail, now=now)
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
        row = conn.execute(scan.select().where(scan.c.id == scan_id)).first()
        if row is None:
            return 0
        mach, _disks = fleet.machine_info(conn, row.machine_id)
        acct = conn.execute(account.select().where(account.c.id == mach.account_id)).first()
        expired = fleet.expired_snapshots(conn, mach.id, settings.keep_snapshots)
    provider = _provider(acct)
    for snap in expired:
        provider.delete_snapshot(SnapshotInfo(snap.cloud_id or "", snap.state,
                                              dict(snap.locator or {})))
        with repo.transaction() as conn:
            fleet.set_snapshot_state(conn, snap.id, "deleted", now=_now())
    return len(expired)


def sweep(repo: Repository, settings: FleetSettings) -> list[int]:
    """Fail scans stuck in flight for too long (their tasks were lost); returns their ids."""
    with repo.transaction() as conn:
        stuck = fleet.stale_scans(conn, _now() - settings.stale_after)
    for scan_id in stuck:
        fail(repo, scan_id, f"no progress for {settings.stale_after}; swept")
    return stuck
