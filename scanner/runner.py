"""One command-line scan, end to end: read the disk (no transaction open), then commit and
emit through the path the fleet shares (:mod:`scanner.commit`): diff and commit atomically
with the events queued for the registered sinks, then deliver them (bounded, never failing
the scan)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from scanner.commit import commit_scan, emit_scan
from scanner.emitters.settings import DeliveryConfig
from scanner.incremental import ChangedRanges, Reuse, locator_key, mount_layout
from scanner.pipeline import ScanOptions, ScanOutcome, scan_sources
from scanner.redact import redact_url
from scanner.sources.base import BlockSource, follow_parent
from scanner.sources.machine import disk_locators, machine_locator
from scanner.storage.hives import previous_hives
from scanner.storage.policies import ensure_recommended, load_policy, previous_content_rules
from scanner.storage.repository import Repository, ScanRecord


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
    With ``delivery``, the scan's events are queued for its sinks in the commit and then
    emitted as the fleet emits them (:func:`scanner.commit.emit_scan`, waited for: at most a
    few send timeouts; what a sink did not accept stays pending for the next run).
    """
    started = datetime.now(UTC)
    with repo.transaction() as conn:
        ensure_recommended(conn)
        policy = load_policy(conn)
    if names is not None:  # a SAS URL's signature is never recorded
        names = [redact_url(name) for name in names]
    options = replace(options or ScanOptions(),
                      previous_digests=lambda: repo.file_digests(machine_name, account_id),
                      previous_parses=lambda: repo.package_parses(machine_name, account_id),
                      previous_content=lambda: previous_content_rules(repo, machine_name,
                                                                      account_id),
                      previous_hive_digests=lambda: previous_hives(repo, machine_name,
                                                                   account_id))
    outcome = scan_sources(sources, policy, options, names)
    locator = machine_locator([source.locator for source in sources])
    record = commit_outcome(repo, outcome, machine_name, started, locator, account_id,
                            sinks=delivery.names if delivery else ())
    if delivery is not None:
        emit_scan(repo, delivery, record.id, waiting=True)
    return record


def same_snapshot(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two locators name the same snapshot (a cloud snapshot by kind and id; anything
    else by the whole locator)."""
    if a.get("snapshot") is not None or b.get("snapshot") is not None:
        return bool(a.get("kind") == b.get("kind") and a.get("snapshot") == b.get("snapshot"))
    return locator_key(a) == locator_key(b)


def prepare_reuse(repo: Repository, machine_id: int | None, parents: Sequence[dict[str, Any]],
                  changed: dict[str, list[tuple[int, int]]]) -> Reuse | None:
    """What an incremental scan may keep: the machine's file state, when its last completed
    scan succeeded in full and read every one of ``parents`` (its state is then exactly
    those snapshots'); None otherwise (the scan reads everything). ``changed``: the changed
    byte ranges of each disk since its parent, by :func:`scanner.incremental.locator_key` of
    the disk source's locator (a disk not listed is read in full)."""
    if machine_id is None or not parents:
        return None
    with repo.transaction() as conn:
        last = repo.last_completed_scan(conn, machine_id)
        if last is None or last.status != "succeeded":
            return None
        read = disk_locators(last.source)
        if not all(any(same_snapshot(r, p) for r in read) for p in parents):
            return None
        state = repo.load_file_state(conn, machine_id)
    volumes = last.coverage.get("volumes") or []
    layout = mount_layout((str(v.get("volume")), v.get("mountpoint"), v.get("uuid"))
                          for v in volumes if isinstance(v, dict))
    return Reuse(state, {key: ChangedRanges(ranges) for key, ranges in changed.items()},
                 layout=layout)


Diff = Callable[[dict[str, Any], dict[str, Any]], list[tuple[int, int]] | None]


@dataclass(frozen=True, slots=True)
class Disk:
    """One disk of an incremental scan: its open source, the locator its snapshot is
    compared under (the stored snapshot's, or the source's), and the parents it may have."""

    source: BlockSource
    locator: dict[str, Any]
    parents: Sequence[dict[str, Any]]


@dataclass(slots=True)
class IncrementalPlan:
    """What :func:`incremental_reuse` found: the reuse (None: every file is read), the
    parents that are of some disk's lineage, and the disks none of whose parents is."""

    reuse: Reuse | None
    used: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[Disk] = field(default_factory=list)


def incremental_reuse(repo: Repository, machine_id: int | None, disks: Sequence[Disk],
                      diff: Diff) -> IncrementalPlan:
    """The one way an incremental scan is set up (`snapfim scan --parent` and the fleet's
    cycle): each disk takes the first of its parents ``diff`` can compare it with (the
    changed byte ranges; None: not of one lineage), its source is told that parent and
    those ranges (:func:`scanner.sources.base.follow_parent`: blocks outside them are served
    from the parent's kept blocks, whatever the machine's last scan was), and the machine's
    previous state is kept for the files on no changed range (:func:`prepare_reuse`)."""
    plan = IncrementalPlan(None)
    changed: dict[str, list[tuple[int, int]]] = {}
    for disk in disks:
        for parent in disk.parents:
            ranges = diff(parent, disk.locator)
            if ranges is not None:
                plan.used.append(parent)
                changed[locator_key(disk.source.locator)] = ranges
                follow_parent(disk.source, parent, ranges)
                break
        else:
            plan.unmatched.append(disk)
    plan.reuse = prepare_reuse(repo, machine_id, plan.used, changed)
    return plan


def commit_outcome(repo: Repository, outcome: ScanOutcome, machine_name: str,
                   started: datetime, locator: Mapping[str, Any],
                   account_id: int | None = None, sinks: Sequence[str] = ()) -> ScanRecord:
    """Commit a scan outcome as the next scan of the machine named ``machine_name`` (created
    on its first scan) in one transaction (:func:`scanner.commit.commit_scan`), its events
    queued for ``sinks`` and the sinks registered before."""
    with repo.transaction() as conn:
        machine_id = repo.machine_id(conn, machine_name, create=True,
                                     os_family=outcome.os_family, account_id=account_id)
        done = commit_scan(repo, conn, machine_id, outcome, started=started, source=locator,
                           sinks=sinks)
    return ScanRecord(id=done.id, machine=machine_name, status=done.status,
                      baseline=done.diff.baseline, entities=done.entities,
                      events=done.diff.events, **done.diff.counts())
