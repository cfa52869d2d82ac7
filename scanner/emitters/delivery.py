"""Delivering the outbox: each configured sink takes its pending rows in order, in bounded
batches, and marks them delivered only once the sink accepted the batch.

One batch = one transaction that locks the sink's row (so two deliverers never send the same
rows), reads the head of the sink's queue, sends it and records the outcome. A sink that
fails keeps its rows pending with the attempt counted and ``next_attempt_at`` pushed back
exponentially (``SNAPFIM_DELIVERY_RETRY_SECONDS`` doubling up to ``..._MAX_SECONDS``); nothing
behind its head is sent before it, so each sink sees every machine's records in order. A
process that dies mid-send rolls its transaction back: the batch is sent again (at least once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scanner.emitters.alerts import alert_ocsf, alert_record
from scanner.emitters.item import Outgoing, Sink
from scanner.emitters.ocsf import ocsf_record
from scanner.emitters.ocsf import severity_id as ocsf_severity
from scanner.emitters.records import event_record
from scanner.emitters.settings import DeliveryConfig
from scanner.errors import DeliveryError
from scanner.storage import outbox
from scanner.storage.repository import Repository

log = logging.getLogger(__name__)
SYSLOG_NOTICE, SYSLOG_WARNING, SYSLOG_ERROR = 5, 4, 3


@dataclass
class SinkReport:
    """What one delivery run did for one sink."""

    name: str
    delivered: int = 0
    error: str | None = None
    backing_off_until: datetime | None = None


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    sinks: list[SinkReport] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        """Records accepted by any sink in this run (counted once per sink)."""
        return sum(s.delivered for s in self.sinks)

    @property
    def errors(self) -> list[str]:
        """One line per sink that failed in this run."""
        return [f"{s.name}: {s.error}" for s in self.sinks if s.error]


def event_item(delivery_id: int, row: dict[str, Any], fmt: str) -> Outgoing:
    """A stored change event as an outgoing record."""
    record = ocsf_record(row) if fmt == "ocsf" else event_record(row)
    privileged = row["entity_type"] == "file" and ocsf_severity(row) == 3
    path = row["path"] if row.get("value_name") is None else f"{row['path']}\\{row['value_name']}"
    return Outgoing(delivery_id, record, row["detected_at"], row["category"],
                    SYSLOG_WARNING if privileged else SYSLOG_NOTICE,
                    {"id": row["id"], "machine": row["machine"], "account": row.get("account"),
                     "scan": row["scan_id"], "entity": row["entity_type"],
                     "category": row["category"], "path": path})


def alert_item(delivery_id: int, row: dict[str, Any], fmt: str) -> Outgoing:
    """An alert as an outgoing record."""
    record = alert_ocsf(row) if fmt == "ocsf" else alert_record(row)
    failed = row["kind"] == "scan_failed"
    return Outgoing(delivery_id, record, row["created_at"], row["kind"].replace("_", "-"),
                    SYSLOG_ERROR if failed else SYSLOG_WARNING,
                    {"alert": row["id"], "machine": row["machine"], "account": row.get("account"),
                     "scan": row.get("scan_id"), "kind": row["kind"]})


def _items(conn: Any, batch: Sequence[outbox.Pending], fmt: str) -> list[Outgoing]:
    events = outbox.event_rows(conn, [p.event_id for p in batch if p.event_id is not None])
    alerts = outbox.alert_rows(conn, [p.alert_id for p in batch if p.alert_id is not None])
    items = []
    for p in batch:  # a record deleted meanwhile (its machine removed) takes its row with it
        if p.event_id is not None and p.event_id in events:
            items.append(event_item(p.id, events[p.event_id], fmt))
        elif p.alert_id is not None and p.alert_id in alerts:
            items.append(alert_item(p.id, alerts[p.alert_id], fmt))
    return items


def deliver_sink(repo: Repository, config: DeliveryConfig, sink: Sink, *,
                 now: datetime | None = None, respect_backoff: bool = True,
                 deadline: float | None = None) -> SinkReport:
    """Send the sink's pending rows, batch by batch, until none is left, the sink fails or
    is backing off, or ``deadline`` (``time.monotonic()``) passes."""
    report = SinkReport(sink.name)
    when = now or datetime.now(UTC)
    with repo.transaction() as conn:
        outbox.register_sinks(conn, [sink.name], when)
    while deadline is None or time.monotonic() < deadline:
        when = now or datetime.now(UTC)
        with repo.transaction() as conn:
            outbox.lock_sink(conn, sink.name, when)
            batch = outbox.pending_batch(conn, sink.name, config.alerts.batch)
            if not batch:
                break
            head = batch[0]
            if respect_backoff and head.next_attempt_at is not None and head.next_attempt_at > when:
                report.backing_off_until = head.next_attempt_at
                break
            ids = [p.id for p in batch]
            items = _items(conn, batch, config.fmt)
            try:
                if items:
                    sink.send(items)
            except DeliveryError as exc:
                retry_at = when + config.backoff(head.attempts + 1)
                outbox.mark_failed(conn, sink.name, ids, str(exc), retry_at)
                report.error, report.backing_off_until = str(exc), retry_at
                log.warning("delivery to %s failed (%d records pending, retried after %s): %s",
                            sink.name, len(ids), retry_at.strftime("%H:%M:%S"), exc)
                break
            outbox.mark_delivered(conn, sink.name, ids, when)
            report.delivered += len(ids)
    return report


def deliver(repo: Repository, config: DeliveryConfig, *, now: datetime | None = None,
            respect_backoff: bool = True, deadline: float | None = None) -> DeliveryReport:
    """Deliver every configured sink's pending rows (see :func:`deliver_sink`)."""
    report = DeliveryReport()
    for sink in config.sinks():
        report.sinks.append(deliver_sink(repo, config, sink, now=now,
                                         respect_backoff=respect_backoff, deadline=deadline))
    return report

