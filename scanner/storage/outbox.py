"""The outbox: registered sinks, alert records, and one delivery row per (record, sink).

Rows are created in the transaction that creates their record (a scan's commit, a scan's
failure), so nothing committed can miss its deliveries; a row is marked delivered only after
its sink accepted the batch holding it. Each sink takes its pending rows in id order, which is
commit order per machine (a machine's scans are serialised).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError

from scanner.storage.repository import utc
from scanner.storage.tables import account, alert, change_event, delivery, machine, scan, sink
from scanner.textsafe import storable

DONE_WITH_EVENTS = ("succeeded", "partial")


@dataclass(frozen=True, slots=True)
class Pending:
    """One delivery row waiting for its sink."""

    id: int
    event_id: int | None
    alert_id: int | None
    attempts: int
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """What ``snapfim deliver --status`` shows of one sink."""

    name: str
    pending: int
    delivered: int
    oldest_pending: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    last_delivered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class StaleMachine:
    """A machine without a recent successful scan: its last one (None if it never had one)."""

    machine_id: int
    scan_id: int | None
    finished_at: datetime | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailedScan:
    """What a failed-scan alert says: the scan's machine, times, error, and the machine's last
    successful scan."""

    machine_id: int
    status: str
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    last_success_scan_id: int | None
    last_success_at: datetime | None


def register_sinks(conn: Connection, names: Iterable[str], now: datetime) -> None:
    """Register sinks not registered yet (records committed from now on are queued for them)."""
    wanted = set(names)
    if not wanted:
        return
    known = set(conn.execute(select(sink.c.name).where(sink.c.name.in_(wanted))).scalars())
    for name in sorted(wanted - known):
        try:
            with conn.begin_nested():
                conn.execute(insert(sink).values(name=name, registered_at=now))
        except IntegrityError:
            pass  # registered by a concurrent transaction


def registered_sinks(conn: Connection) -> list[str]:
    """Names of the registered sinks."""
    return sorted(conn.execute(select(sink.c.name)).scalars())


def enqueue_scan_events(conn: Connection, scan_id: int, now: datetime) -> int:
    """Queue every event of a scan for every registered sink; returns the rows added."""
    stamp = literal(now, delivery.c.created_at.type)
    rows = (select(sink.c.name, change_event.c.id, literal(0), stamp)
            .select_from(change_event).join(sink, true())
            .where(change_event.c.scan_id == scan_id)
            .order_by(change_event.c.id, sink.c.name))
    result = conn.execute(insert(delivery).from_select(
        ["sink", "event_id", "attempts", "created_at"], rows))
    return int(result.rowcount or 0)


def raise_alert(conn: Connection, *, machine_id: int, kind: str, dedupe_key: str,
                scan_id: int | None, detail: dict[str, Any], now: datetime) -> int | None:
    """Record an alert once per ``dedupe_key`` and queue it for every registered sink;
    returns its id, None when it existed already."""
    if conn.execute(select(alert.c.id).where(alert.c.dedupe_key == dedupe_key)).first():
        return None
    try:
        with conn.begin_nested():
            result = conn.execute(insert(alert).values(
                machine_id=machine_id, scan_id=scan_id, kind=kind, dedupe_key=dedupe_key,
                created_at=now, detail=detail))
    except IntegrityError:
        return None  # raised by a concurrent transaction
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the alert insert returned no id")
    alert_id = int(key[0])
    rows = (select(sink.c.name, literal(alert_id), literal(0),
                   literal(now, delivery.c.created_at.type)).order_by(sink.c.name))
    conn.execute(insert(delivery).from_select(["sink", "alert_id", "attempts", "created_at"],
                                              rows))
    return alert_id


def lock_sink(conn: Connection, name: str, now: datetime) -> bool:
    """Take the sink's row lock for this transaction (one deliverer per sink at a time; on
    SQLite the write takes the database's write lock); False if it is not registered."""
    result = conn.execute(update(sink).where(sink.c.name == name).values(locked_at=now))
    return bool(result.rowcount)


def pending_batch(conn: Connection, name: str, limit: int) -> list[Pending]:
    """The sink's oldest pending deliveries, in order."""
    query = (select(delivery.c.id, delivery.c.event_id, delivery.c.alert_id,
                    delivery.c.attempts, delivery.c.next_attempt_at)
             .where(delivery.c.sink == name, delivery.c.delivered_at.is_(None))
             .order_by(delivery.c.id).limit(limit))
    return [Pending(int(r.id), r.event_id, r.alert_id, int(r.attempts), utc(r.next_attempt_at))
            for r in conn.execute(query)]


def event_rows(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Change events by id, shaped like ``Repository.changes`` (plus ``account``)."""
    if not ids:
        return {}
    query = (select(change_event, machine.c.name.label("machine"),
                    account.c.name.label("account"))
             .join(machine, machine.c.id == change_event.c.machine_id)
             .join(account, account.c.id == machine.c.account_id)
             .where(change_event.c.id.in_(ids)))
    rows = {}
    for r in conn.execute(query):
        row = dict(r._mapping)
        for key in ("detected_at", "window_start", "window_end"):
            row[key] = utc(row[key])
        rows[int(row["id"])] = row
    return rows


def alert_rows(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Alerts by id with their machine's and account's names."""
    if not ids:
        return {}
    query = (select(alert, machine.c.name.label("machine"), account.c.name.label("account"))
             .join(machine, machine.c.id == alert.c.machine_id)
             .join(account, account.c.id == machine.c.account_id)
             .where(alert.c.id.in_(ids)))
    rows = {}
    for r in conn.execute(query):
        row = dict(r._mapping)
        row["created_at"] = utc(row["created_at"])
        rows[int(row["id"])] = row
    return rows


def mark_delivered(conn: Connection, name: str, ids: Sequence[int], now: datetime) -> None:
    """The sink accepted these rows."""
    conn.execute(update(delivery).where(delivery.c.id.in_(ids)).values(
        delivered_at=now, attempts=delivery.c.attempts + 1, last_error=None,
        next_attempt_at=None))
    conn.execute(update(sink).where(sink.c.name == name).values(last_delivered_at=now,
                                                               last_error=None))


def mark_failed(conn: Connection, name: str, ids: Sequence[int], error: str,
                next_attempt_at: datetime) -> None:
    """The sink did not accept these rows: count the attempt, retry at ``next_attempt_at``.
    ``error`` may quote the receiver's reply: it is made storable (:mod:`scanner.textsafe`)."""
    error = storable(error)
    conn.execute(update(delivery).where(delivery.c.id.in_(ids)).values(
        attempts=delivery.c.attempts + 1, last_error=error, next_attempt_at=next_attempt_at))
    conn.execute(update(sink).where(sink.c.name == name).values(last_error=error))


def mark_emitted(conn: Connection, now: datetime, scan_id: int | None = None) -> list[int]:
    """Set ``emitted_at`` on committed scans whose events every sink has accepted."""
    pending = exists().where(delivery.c.event_id == change_event.c.id,
                             change_event.c.scan_id == scan.c.id,
                             delivery.c.delivered_at.is_(None))
    query = select(scan.c.id).where(scan.c.emitted_at.is_(None),
                                    scan.c.status.in_(DONE_WITH_EVENTS), ~pending)
    if scan_id is not None:
        query = query.where(scan.c.id == scan_id)
    ids = [int(i) for i in conn.execute(query).scalars()]
    if ids:
        conn.execute(update(scan).where(scan.c.id.in_(ids), scan.c.emitted_at.is_(None))
                     .values(emitted_at=now))
    return ids


def sink_status(conn: Connection) -> list[SinkStatus]:
    """Every registered sink with its backlog."""
    out = []
    for s in conn.execute(select(sink).order_by(sink.c.name)):
        counts = conn.execute(select(
            func.count().filter(delivery.c.delivered_at.is_(None)),
            func.count().filter(delivery.c.delivered_at.is_not(None)),
            func.min(delivery.c.created_at).filter(delivery.c.delivered_at.is_(None)))
            .where(delivery.c.sink == s.name)).one()
        head = conn.execute(select(delivery.c.attempts, delivery.c.next_attempt_at).where(
            delivery.c.sink == s.name, delivery.c.delivered_at.is_(None))
            .order_by(delivery.c.id).limit(1)).first()
        out.append(SinkStatus(s.name, int(counts[0]), int(counts[1]), utc(counts[2]),
                              int(head.attempts) if head else 0,
                              utc(head.next_attempt_at) if head else None,
                              utc(s.last_delivered_at), s.last_error))
    return out


def forget_sink(conn: Connection, name: str) -> int:
    """Unregister a sink and drop its pending and delivered rows; returns the rows dropped."""
    dropped = conn.execute(delete(delivery).where(delivery.c.sink == name)).rowcount
    conn.execute(delete(sink).where(sink.c.name == name))
    return int(dropped or 0)


def stale_machines(conn: Connection, older_than: datetime) -> list[StaleMachine]:
    """Present, discovered machines of enabled accounts whose last successful (or partial)
    scan finished before ``older_than`` (or that never had one and were created before)."""
    ok = (select(scan.c.machine_id, func.max(scan.c.id).label("scan_id"))
          .where(scan.c.status.in_(DONE_WITH_EVENTS)).group_by(scan.c.machine_id).subquery())
    last = scan.alias("last_ok")
    query = (select(machine.c.id, machine.c.created_at, last.c.id.label("scan_id"),
                    last.c.finished_at)
             .join(account, account.c.id == machine.c.account_id)
             .outerjoin(ok, ok.c.machine_id == machine.c.id)
             .outerjoin(last, last.c.id == ok.c.scan_id)
             .where(machine.c.present, machine.c.resource_id.is_not(None), account.c.enabled,
                    func.coalesce(last.c.finished_at, machine.c.created_at) < older_than)
             .order_by(machine.c.id))
    return [StaleMachine(int(r.id), None if r.scan_id is None else int(r.scan_id),
                         utc(r.finished_at), utc(r.created_at)) for r in conn.execute(query)]


def scan_alert_context(conn: Connection, scan_id: int) -> FailedScan | None:
    """What a failed-scan alert says: the scan's machine, times and error."""
    row = conn.execute(select(scan.c.machine_id, scan.c.status, scan.c.error, scan.c.started_at,
                              scan.c.finished_at, scan.c.attempts)
                       .where(scan.c.id == scan_id)).first()
    if row is None:
        return None
    last_ok = conn.execute(select(scan.c.id, scan.c.finished_at).where(
        and_(scan.c.machine_id == row.machine_id, scan.c.status.in_(DONE_WITH_EVENTS)))
        .order_by(scan.c.id.desc()).limit(1)).first()
    return FailedScan(int(row.machine_id), row.status, row.error, utc(row.started_at),
                      utc(row.finished_at), int(row.attempts),
                      None if last_ok is None else int(last_ok.id),
                      None if last_ok is None else utc(last_ok.finished_at))
