"""Committing a scan and emitting its events: the one path `snapfim scan` and the fleet share.

:func:`commit_scan` writes what a read of the disk found, in the caller's transaction: the scan
row, the machine's new state, the change events, the machine's OS family, and one delivery
row per event and registered sink (the outbox), so nothing committed can miss a sink.
:func:`emit_scan` then delivers what is pending and marks the scan emitted once every sink
has its events. The command line (:func:`scanner.runner.run_scan`) and the fleet's cycle
(:func:`scanner.cycle.scan_cycle`, :func:`scanner.cycle.emit`) differ only in how they find
the machine and the scan row, and in who waits for the delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from scanner.diff import FileDiff
from scanner.emitters.delivery import DeliveryReport, SinkReport, deliver
from scanner.emitters.settings import DeliveryConfig
from scanner.errors import SnapfimError
from scanner.gcbatch import fewer_collections
from scanner.storage import outbox
from scanner.storage.hives import confirm_unchanged
from scanner.storage.repository import Repository

if TYPE_CHECKING:
    from scanner.pipeline import ScanOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommittedScan:
    """A scan written by :func:`commit_scan`: its id, what the diff found, its status."""

    id: int
    diff: FileDiff
    status: str
    entities: int


def commit_scan(repo: Repository, conn: Connection, machine_id: int, outcome: ScanOutcome, *,
                started: datetime, source: Mapping[str, Any], sinks: Sequence[str] = (),
                scan_id: int | None = None) -> CommittedScan:
    """Diff a scan's outcome against the machine's state and write it in ``conn``'s
    transaction: the machine is locked (its scans are serialised), the configured ``sinks``
    are registered, the scan row (``scan_id``: the fleet's row, else a new one), the state and
    the events are written, the machine's OS family recorded, and every event queued for every
    registered sink. Rolled back with the caller's transaction, nothing of it remains."""
    finished = datetime.now(UTC)
    repo.lock_machine(conn, machine_id)
    previous = repo.previous_scan(conn, machine_id)
    # hives the scan did not walk: still what the state was read from? (else unreadable)
    confirm_unchanged(conn, machine_id, previous is not None, outcome.unchanged_hives,
                      outcome.coverage.unreadable)
    outbox.register_sinks(conn, sinks, finished)
    with fewer_collections():  # the rows it builds hold no cycles; see scanner.gcbatch
        written, diff = repo.commit_scan(
            conn, machine_id, entities=outcome.entities.values(),
            registry=outcome.registry.values(), unchanged_hives=outcome.unchanged_hives,
            unreadable=list(outcome.unreadable),
            previous=previous, started_at=started, finished_at=finished,
            status=outcome.coverage.status, source=dict(source),
            coverage=outcome.coverage.to_dict(), policies=outcome.coverage.policies,
            scan_id=scan_id, os_family=outcome.os_family, inventory=outcome.inventory)
    outbox.enqueue_scan_events(conn, written, finished)
    return CommittedScan(written, diff, outcome.coverage.status, outcome.coverage.entities)


def emit_scan(repo: Repository, config: DeliveryConfig, scan_id: int, *,
              waiting: bool = False) -> DeliveryReport:
    """Deliver every configured sink's pending rows (the scan's events were queued at its
    commit, behind anything older) and mark the scan emitted once every registered sink
    accepted its events. A sink that fails keeps its rows pending, retried with backoff.

    ``waiting``: someone waits for the scan (the command line). Backoff is ignored (the run
    is the retry), delivery stops after three send timeouts, and an error of the database
    after the commit is logged instead of raised: delivery never fails a committed scan.
    Otherwise (the fleet) sinks backing off are left alone and errors propagate, transient
    ones to be retried by the task.
    """
    if not waiting:
        return _emit(repo, config, scan_id, respect_backoff=True, deadline=None)
    try:
        return _emit(repo, config, scan_id, respect_backoff=False,
                     deadline=time.monotonic() + 3 * config.alerts.timeout)
    except SnapfimError as exc:  # the database went away after the commit: retried next time
        log.warning("delivery postponed: %s", exc)
        return DeliveryReport([SinkReport("all", error=str(exc))])


def _emit(repo: Repository, config: DeliveryConfig, scan_id: int, *, respect_backoff: bool,
          deadline: float | None) -> DeliveryReport:
    report = deliver(repo, config, respect_backoff=respect_backoff, deadline=deadline)
    with repo.transaction() as conn:
        outbox.mark_emitted(conn, datetime.now(UTC), scan_id)
    return report
