"""Fleet state in the database: accounts, discovered machines and disks, scan cycles and
their snapshots. The database, not the broker, is the source of truth for scan state.

What the fleet's cycle (:mod:`scanner.cycle`) reads comes back as typed rows (the frozen
dataclasses below), never as SQLAlchemy rows: the cycle does not know the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from scanner.cloud.provider import DiskInfo, MachineInfo, SnapshotInfo
from scanner.errors import NotFound, StorageError
from scanner.lifecycle import SCAN_ACTIVE, check_scan, check_snapshot
from scanner.schedule import MachineSchedule
from scanner.storage.policies import ensure_recommended
from scanner.storage.repository import utc
from scanner.storage.tables import account, disk, machine, scan, snapshot
from scanner.textsafe import storable


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An onboarded account."""

    id: int
    name: str
    cloud: str
    config: dict[str, Any]
    enabled: bool
    last_discovered_at: datetime | None
    discovery_error: str | None


@dataclass(frozen=True, slots=True)
class MachineRow:
    """A machine: discovered by its account's provider, or created by `snapfim scan`."""

    id: int
    account_id: int
    name: str
    resource_id: str | None
    os: str | None
    region: str | None
    state: str | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class DiskRow:
    """A present disk of a machine."""

    id: int
    machine_id: int
    resource_id: str
    device: str | None
    size_bytes: int | None

    def info(self) -> DiskInfo:
        """The disk as its provider described it."""
        return DiskInfo(self.resource_id, self.device, self.size_bytes)


@dataclass(frozen=True, slots=True)
class ScanRow:
    """A scan's lifecycle fields (its results are read by :class:`Repository`)."""

    id: int
    machine_id: int
    status: str
    attempts: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """A snapshot of one disk for one scan cycle."""

    id: int
    scan_id: int
    disk_id: int
    cloud_id: str | None
    state: str
    locator: dict[str, Any]
    error: str | None
    parent_id: int | None = None   # the disk's previous snapshot (incremental scans)

    def info(self) -> SnapshotInfo:
        """The snapshot as its provider reported it."""
        return SnapshotInfo(self.cloud_id or "", self.state, dict(self.locator), self.error)


@dataclass(frozen=True, slots=True)
class CycleRows:
    """What one step of a scan cycle reads: the scan (locked), its machine, the machine's
    present disks and its account."""

    scan: ScanRow
    machine: MachineRow
    disks: list[DiskRow]
    account: AccountRow

    def machine_info(self) -> MachineInfo:
        """The machine as its provider described it, with its present disks."""
        m = self.machine
        return MachineInfo(m.resource_id or "", m.name, tuple(d.info() for d in self.disks),
                           m.os, m.region, m.state, dict(m.tags))


def _account(row: Any) -> AccountRow:
    return AccountRow(row.id, row.name, row.cloud, dict(row.config or {}), bool(row.enabled),
                      row.last_discovered_at, row.discovery_error)


def _machine(row: Any) -> MachineRow:
    return MachineRow(int(row.id), int(row.account_id), row.name, row.resource_id, row.os,
                      row.region, row.state, dict(row.tags or {}))


def _disk(row: Any) -> DiskRow:
    return DiskRow(int(row.id), int(row.machine_id), row.resource_id, row.device,
                   row.size_bytes)


def _scan(row: Any) -> ScanRow:
    return ScanRow(int(row.id), int(row.machine_id), row.status, int(row.attempts or 0),
                   row.error, utc(row.started_at), utc(row.finished_at))


def _snapshot(row: Any) -> SnapshotRow:
    return SnapshotRow(int(row.id), int(row.scan_id), int(row.disk_id), row.cloud_id,
                       row.state, dict(row.locator or {}), row.error,
                       None if row.parent_id is None else int(row.parent_id))


# -- accounts ---------------------------------------------------------------------------------
def add_account(conn: Connection, name: str, cloud: str, config: dict[str, Any]) -> int:
    """Onboard an account and seed its policy with the recommended entities."""
    if conn.execute(select(account.c.id).where(account.c.name == name)).first() is not None:
        raise StorageError(f"an account named {name!r} exists already")
    result = conn.execute(insert(account).values(name=name, cloud=cloud, config=config,
                                                 enabled=True))
    key = result.inserted_primary_key
    assert key is not None
    account_id = int(key[0])
    ensure_recommended(conn, account_id)
    return account_id


def get_account(conn: Connection, name: str) -> AccountRow:
    """An account by name."""
    row = conn.execute(select(account).where(account.c.name == name)).first()
    if row is None:
        raise NotFound(f"no account named {name!r} (see `snapfim account list`)")
    return _account(row)


def account_by_id(conn: Connection, account_id: int) -> AccountRow:
    """An account by id."""
    row = conn.execute(select(account).where(account.c.id == account_id)).first()
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    return _account(row)


def list_accounts(conn: Connection) -> list[AccountRow]:
    """All accounts, by name."""
    return [_account(r) for r in conn.execute(select(account).order_by(account.c.name))]


def set_account_enabled(conn: Connection, name: str, enabled: bool) -> None:
    """Enable or disable an account (a disabled one is neither discovered nor scanned)."""
    if conn.execute(update(account).where(account.c.name == name)
                    .values(enabled=enabled)).rowcount == 0:
        raise NotFound(f"no account named {name!r}")


def remove_account(conn: Connection, name: str) -> None:
    """Delete an account with its machines, scans, state and events, and the stored
    content no other account's machine keeps."""
    from scanner.changetracking.content import purge_machine_content

    acct = get_account(conn, name)
    purge_machine_content(conn, list(conn.execute(
        select(machine.c.id).where(machine.c.account_id == acct.id)).scalars()))
    conn.execute(delete(account).where(account.c.id == acct.id))


def record_discovery(conn: Connection, account_id: int, now: datetime,
                     error: str | None = None) -> None:
    """Remember when discovery last ran for an account, and how it ended."""
    conn.execute(update(account).where(account.c.id == account_id)
                 .values(last_discovered_at=now,
                         discovery_error=None if error is None else storable(error)))


def set_account_error(conn: Connection, account_id: int, error: str) -> None:
    """Mark an account unhealthy (the cloud refused access) until its next good discovery."""
    conn.execute(update(account).where(account.c.id == account_id)
                 .values(discovery_error=storable(error)))


# -- machines and disks -----------------------------------------------------------------------
def unique_names(found: list[MachineInfo], current: dict[str, str],
                 held: set[str]) -> dict[str, str]:
    """Each discovered machine's name in the account, by resource id, all distinct (pure).

    ``current`` is the name each known resource id has now, ``held`` the names of the
    account's other machines (absent ones, `snapfim scan` ones), which keep them. A machine
    keeps its current name while that is still its discovered name (or that name qualified);
    a new one, or a renamed one, takes its discovered name when it is free and otherwise
    ``name (qualifier)`` (the qualifier: the provider's, else the resource id; then a
    number), the machines in resource id order: the same discovery names them the same."""
    taken = set(held)
    out: dict[str, str] = {}
    ordered = sorted(found, key=lambda m: m.resource_id)
    for info in ordered:
        now = current.get(info.resource_id)
        if now is not None and now not in taken and (
                now == info.name or now.startswith(f"{info.name} (")):
            out[info.resource_id] = now
            taken.add(now)
    for info in ordered:
        if info.resource_id in out:
            continue
        qualifier = info.qualifier or info.resource_id
        candidates = [info.name, f"{info.name} ({qualifier})", f"{info.name} ({info.resource_id})"]
        name = next((c for c in candidates if c not in taken), None)
        n = 2
        while name is None or name in taken:
            name = f"{info.name} ({info.resource_id}) #{n}"
            n += 1
        out[info.resource_id] = name
        taken.add(name)
    return out


def sync_machines(conn: Connection, account_id: int, found: list[MachineInfo],
                  now: datetime) -> None:
    """Upsert discovered machines and disks, keyed by resource id (each named as
    :func:`unique_names` says: a name two machines share never breaks discovery); machines
    no longer seen are marked absent."""
    rows = conn.execute(select(machine.c.id, machine.c.resource_id, machine.c.name)
                        .where(machine.c.account_id == account_id)).all()
    existing = {r.resource_id: r.id for r in rows if r.resource_id is not None}
    found_ids = {info.resource_id for info in found}
    names = unique_names(found, {r.resource_id: r.name for r in rows
                                 if r.resource_id in found_ids},
                         {r.name for r in rows if r.resource_id not in found_ids})
    renamed = [r.id for r in rows if r.resource_id in found_ids
               and names[r.resource_id] != r.name]
    for machine_id in renamed:  # free the old names first: renames may swap names
        conn.execute(update(machine).where(machine.c.id == machine_id)
                     .values(name=f"\x1frenaming {machine_id}"))
    seen: set[int] = set()
    for info in found:
        values = {"name": names[info.resource_id], "os": info.os, "region": info.region,
                  "state": info.state, "tags": info.tags, "present": True, "last_seen_at": now}
        machine_id = existing.get(info.resource_id)
        if machine_id is None:
            result = conn.execute(insert(machine).values(account_id=account_id,
                                                         resource_id=info.resource_id, **values))
            key = result.inserted_primary_key
            assert key is not None
            machine_id = int(key[0])
        else:
            conn.execute(update(machine).where(machine.c.id == machine_id).values(**values))
        seen.add(machine_id)
        known = {r.resource_id for r in conn.execute(
            select(disk.c.resource_id).where(disk.c.machine_id == machine_id))}
        for d in info.disks:
            if d.resource_id in known:
                conn.execute(update(disk).where(disk.c.machine_id == machine_id,
                                                disk.c.resource_id == d.resource_id)
                             .values(present=True, size_bytes=d.size_bytes, device=d.device))
            else:
                conn.execute(insert(disk).values(machine_id=machine_id, resource_id=d.resource_id,
                                                 device=d.device, size_bytes=d.size_bytes))
        gone = [d.resource_id for d in info.disks]
        conn.execute(update(disk).where(disk.c.machine_id == machine_id,
                                        disk.c.resource_id.not_in(gone)).values(present=False))
    missing = set(existing.values()) - seen
    if missing:
        conn.execute(update(machine).where(machine.c.id.in_(missing)).values(present=False))


def machine_info(conn: Connection, machine_id: int) -> tuple[MachineRow, list[DiskRow]]:
    """A machine and its present disks."""
    row = conn.execute(select(machine).where(machine.c.id == machine_id)).first()
    if row is None:
        raise NotFound(f"no machine with id {machine_id}")
    disks = conn.execute(select(disk).where(disk.c.machine_id == machine_id, disk.c.present)
                         .order_by(disk.c.id)).all()
    return _machine(row), [_disk(d) for d in disks]


def set_machine_os(conn: Connection, machine_id: int, os_family: str | None) -> None:
    """Record the operating system family a scan of the machine found."""
    conn.execute(update(machine).where(machine.c.id == machine_id).values(os=os_family))


def schedules(conn: Connection) -> list[MachineSchedule]:
    """What the planner needs of every present machine of every account."""
    last = (select(scan.c.machine_id, func.max(scan.c.started_at).label("last"))
            .group_by(scan.c.machine_id).subquery())
    active = exists().where(scan.c.machine_id == machine.c.id, scan.c.status.in_(SCAN_ACTIVE))
    # Discovered machines only (they have a resource id); `snapfim scan` machines are not
    # the scheduler's business.
    latest_status = (select(scan.c.status).where(scan.c.machine_id == machine.c.id)
                     .order_by(scan.c.id.desc()).limit(1).scalar_subquery())
    query = (select(machine.c.id, last.c.last, active.label("in_flight"), account.c.enabled,
                    latest_status.label("latest_status"))
             .join(account, account.c.id == machine.c.account_id)
             .outerjoin(last, last.c.machine_id == machine.c.id)
             .where(machine.c.present, machine.c.resource_id.is_not(None)))
    return [MachineSchedule(str(r.id), utc(r.last), bool(r.in_flight), bool(r.enabled),
                            last_failed=r.latest_status == "failed")
            for r in conn.execute(query)]


# -- scan cycles ------------------------------------------------------------------------------
def open_cycle(conn: Connection, machine_id: int, now: datetime) -> int | None:
    """Create the scan row of a new cycle (status ``snapshotting``); None when the machine
    already has a scan in flight (the unique index on active scans decides)."""
    try:
        with conn.begin_nested():
            result = conn.execute(insert(scan).values(machine_id=machine_id,
                                                      status="snapshotting", started_at=now))
    except IntegrityError:
        return None
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def lock_scan(conn: Connection, scan_id: int) -> ScanRow:
    """The scan, its row locked for update until the transaction ends."""
    row = conn.execute(select(scan).where(scan.c.id == scan_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"no scan with id {scan_id}")
    return _scan(row)


def get_scan(conn: Connection, scan_id: int) -> ScanRow | None:
    """The scan (not locked), None if there is none with this id."""
    row = conn.execute(select(scan).where(scan.c.id == scan_id)).first()
    return None if row is None else _scan(row)


def lock_cycle(conn: Connection, scan_id: int) -> CycleRows:
    """The scan cycle (its scan row locked until the transaction ends), its machine with
    the present disks, and its account."""
    row = lock_scan(conn, scan_id)
    mach, disks = machine_info(conn, row.machine_id)
    return CycleRows(row, mach, disks, account_by_id(conn, mach.account_id))


def set_scan_status(conn: Connection, scan_id: int, status: str, *, error: str | None = None,
                    finished_at: datetime | None = None, count_attempt: bool = False) -> None:
    """Move a scan along its lifecycle (checked)."""
    row = lock_scan(conn, scan_id)
    check_scan(row.status, status)
    values: dict[str, Any] = {"status": status}
    if error is not None:
        values["error"] = storable(error)  # reasons quote names from the disk
    if finished_at is not None:
        values["finished_at"] = finished_at
    if count_attempt:
        values["attempts"] = scan.c.attempts + 1
    conn.execute(update(scan).where(scan.c.id == scan_id).values(**values))


def add_snapshot(conn: Connection, scan_id: int, disk_id: int, info: SnapshotInfo,
                 now: datetime) -> int:
    """Record a snapshot of a disk for a scan (idempotent per scan and disk)."""
    existing = conn.execute(select(snapshot.c.id).where(
        snapshot.c.scan_id == scan_id, snapshot.c.disk_id == disk_id)).scalar()
    if existing is not None:
        return int(existing)
    parent = conn.execute(select(func.max(snapshot.c.id)).where(
        snapshot.c.disk_id == disk_id, snapshot.c.state.in_(("scanned", "ready")))).scalar()
    result = conn.execute(insert(snapshot).values(
        scan_id=scan_id, disk_id=disk_id, parent_id=parent, cloud_id=info.cloud_id,
        state=info.state, locator=info.locator,
        error=None if info.error is None else storable(info.error),
        ready_at=now if info.state == "ready" else None))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def snapshots_of(conn: Connection, scan_id: int) -> list[SnapshotRow]:
    """The snapshots of a scan cycle, by disk."""
    return [_snapshot(r) for r in conn.execute(select(snapshot).where(
        snapshot.c.scan_id == scan_id).order_by(snapshot.c.disk_id))]


def snapshot_by_id(conn: Connection, snapshot_id: int) -> SnapshotRow | None:
    """One snapshot (a parent, for an incremental scan), None if there is none."""
    row = conn.execute(select(snapshot).where(snapshot.c.id == snapshot_id)).first()
    return None if row is None else _snapshot(row)


def set_snapshot_state(conn: Connection, snapshot_id: int, state: str, *,
                       error: str | None = None, now: datetime | None = None) -> None:
    """Move a snapshot along its lifecycle (checked)."""
    current = conn.execute(select(snapshot.c.state).where(snapshot.c.id == snapshot_id)
                           .with_for_update()).scalar()
    if current is None:
        raise NotFound(f"no snapshot with id {snapshot_id}")
    if current == state:
        return
    check_snapshot(current, state)
    values: dict[str, Any] = {"state": state}
    if error is not None:
        values["error"] = storable(error)  # reasons quote names from the disk
    if state == "ready" and now is not None:
        values["ready_at"] = now
    if state == "deleted" and now is not None:
        values["deleted_at"] = now
    conn.execute(update(snapshot).where(snapshot.c.id == snapshot_id).values(**values))


def expired_snapshots(conn: Connection, machine_id: int, keep: int) -> list[SnapshotRow]:
    """Live snapshots of a machine's disks beyond the newest ``keep`` per disk."""
    rows = conn.execute(
        select(snapshot).join(disk, disk.c.id == snapshot.c.disk_id)
        .where(disk.c.machine_id == machine_id,
               snapshot.c.state.in_(("scanned", "failed", "ready")),
               ~exists().where(and_(scan.c.id == snapshot.c.scan_id,
                                    scan.c.status.in_(SCAN_ACTIVE))))
        .order_by(snapshot.c.disk_id, snapshot.c.id.desc())).all()
    out: list[SnapshotRow] = []
    per_disk: dict[int, int] = {}
    for row in rows:
        per_disk[row.disk_id] = per_disk.get(row.disk_id, 0) + 1
        if per_disk[row.disk_id] > keep:
            out.append(_snapshot(row))
    return out


def mark_snapshots_deleted(conn: Connection, account_id: int, cloud_ids: list[str],
                           now: datetime) -> int:
    """Record snapshots of an account's machines as deleted (by cloud id; a sweep found them)."""
    if not cloud_ids:
        return 0
    ids = select(snapshot.c.id).join(disk, disk.c.id == snapshot.c.disk_id).join(
        machine, machine.c.id == disk.c.machine_id).where(
        machine.c.account_id == account_id, snapshot.c.cloud_id.in_(cloud_ids),
        snapshot.c.state != "deleted")
    return int(conn.execute(update(snapshot).where(snapshot.c.id.in_(ids))
                            .values(state="deleted", deleted_at=now)).rowcount or 0)


def scan_ids_of_account(conn: Connection, account_id: int) -> set[int]:
    """The ids of every scan of the account's machines (what its snapshots' scan tag may
    say when the snapshot is ours)."""
    return {int(r) for r in conn.execute(
        select(scan.c.id).join(machine, machine.c.id == scan.c.machine_id)
        .where(machine.c.account_id == account_id)).scalars()}


def stale_scans(conn: Connection, older_than: datetime) -> list[int]:
    """Active scans started before ``older_than`` (stuck: their tasks were lost)."""
    return [int(r) for r in conn.execute(select(scan.c.id).where(
        scan.c.status.in_(SCAN_ACTIVE), scan.c.started_at < older_than)).scalars()]
