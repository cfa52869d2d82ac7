"""One scan, end to end: read the disk (no transaction open), then diff and commit atomically,
queueing the scan's events for the registered sinks in the same transaction; a command-line
scan then delivers them (bounded, never failing the scan)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from scanner.diff import FileDiff
from scanner.pipeline import ScanOptions, ScanOutcome, scan_sources
from scanner.sources.base import BlockSource
from scanner.sources.machine import machine_locator
from scanner.storage import outbox
from scanner.storage.policies import ensure_recommended, load_policy
from scanner.storage.repository import PreviousScan, Repository, ScanRecord

if TYPE_CHECKING:
    from scanner.emitters.delivery import DeliveryConfig


def run_scan(repo: Repository, source: BlockSource, machine_name: str,
             options: ScanOptions | None = None, source_name: str | None = None,
             account_id: int | None = None,
             delivery: DeliveryConfig | None = None) -> ScanRecord:
    """Scan ``source`` as the next state of ``machine_name`` and record the changes (a
    machine with one disk: :func:`run_machine_scan`)."""
    return run_machine_scan(repo, [source], machine_name, options,
                            None if source_name is None else [source_name], account_id,
                            delivery)


def run_machine_scan(repo: Repository, sources: Sequence[BlockSource], machine_name: str,
                     options: ScanOptions | None = None, names: Sequence[str] | None = None,
                     account_id: int | None = None,
                     delivery: DeliveryConfig | None = None) -> ScanRecord:
    """Scan the disks ``sources`` (in order) as the next state of ``machine_name`` and record
    the changes.

    Reading errors that leave nothing scannable raise before anything is written; per-volume
    and per-path failures make a ``partial`` scan whose unreadable paths keep their state.
    With ``delivery``, the committed events then go to its sinks (at most a few send
    timeouts; what a sink did not accept stays pending for the next run).
    """
    started = datetime.now(UTC)
    with repo.transaction() as conn:
        ensure_recommended(conn)
        policy = load_policy(conn)
    outcome = scan_sources(sources, policy, options, names)
    locator = machine_locator([source.locator for source in sources])
    record = commit_outcome(repo, outcome, machine_name, started, locator, account_id,
                            sinks=delivery.names if delivery else ())
    if delivery is not None and delivery.names:
        from scanner.emitters.delivery import deliver_quietly

        deliver_quietly(repo, delivery, timeout=3 * delivery.alerts.timeout)
    return record


def commit_outcome(repo: Repository, outcome: ScanOutcome, machine_name: str,
                   started: datetime, locator: dict[str, object],
                   account_id: int | None = None, sinks: Sequence[str] = ()) -> ScanRecord:
    """Diff a scan outcome against the machine's state and commit it in one transaction
    (with the events' deliveries to ``sinks`` and the sinks registered before)."""
    finished = datetime.now(UTC)
    with repo.transaction() as conn:
        machine_id = repo.machine_id(conn, machine_name, create=True,
                                     os_family=outcome.os_family, account_id=account_id)
        repo.lock_machine(conn, machine_id)
        previous = repo.previous_scan(conn, machine_id)
        scan_id, diff = write_outcome(repo, conn, machine_id, outcome, previous=previous,
                                      started=started, finished=finished, source=dict(locator),
                                      sinks=sinks)
    return ScanRecord(id=scan_id, machine=machine_name, status=outcome.coverage.status,
                      baseline=diff.baseline, entities=outcome.coverage.entities,
                      events=diff.events, **diff.counts())


def write_outcome(repo: Repository, conn: Connection, machine_id: int, outcome: ScanOutcome, *,
                  previous: PreviousScan | None, started: datetime, finished: datetime,
                  source: dict[str, Any], scan_id: int | None = None,
                  sinks: Sequence[str] = ()) -> tuple[int, FileDiff]:
    """Diff an outcome's files and registry entities and write the scan, in ``conn``'s
    transaction (the caller holds the machine's lock); queue its events for delivery to
    every registered sink, ``sinks`` (the caller's configured ones) registered first."""
    outbox.register_sinks(conn, sinks, finished)
    written, diff = repo.commit_scan(
        conn, machine_id, entities=outcome.entities.values(),
        registry=outcome.registry.values(), unreadable=list(outcome.unreadable),
        previous=previous, started_at=started, finished_at=finished,
        status=outcome.coverage.status, source=source, coverage=outcome.coverage.to_dict(),
        policies=outcome.coverage.policies, scan_id=scan_id)
    outbox.enqueue_scan_events(conn, written, finished)
    return written, diff
