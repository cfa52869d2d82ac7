"""Thin Celery tasks: load ids, call :mod:`scanner.cycle`, chain the next step.

Messages carry database ids only. Every task is idempotent (the scan row decides what is
left to do), retried with backoff for transient errors only, and acked late.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from scanner import cycle
from scanner.errors import TransientError
from scanner.settings import FleetSettings, Settings
from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository
from workers.app import app

log = get_task_logger(__name__)
RETRY = {"autoretry_for": (TransientError,), "retry_backoff": True, "retry_backoff_max": 600,
         "retry_jitter": True, "max_retries": 10}
MAX_WAIT_POLLS = 2000  # a snapshot that is not ready after this many polls fails the scan


@functools.cache
def _services() -> tuple[Repository, FleetSettings]:
    """One engine per worker process (built on first use, after the fork)."""
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return Repository(engine), settings.fleet()


@app.task(bind=True, **RETRY)
def plan_cycle(self: Task) -> list[int]:
    """Discover accounts that are due, open cycles for due machines, start their snapshots."""
    repo, settings = _services()
    for account_id in cycle.accounts_to_discover(repo, settings):
        cycle.discover(repo, account_id)
    scans = cycle.plan(repo, settings)
    for scan_id in scans:
        snapshot_machine.delay(scan_id)
    if scans:
        log.info("planned %d scans: %s", len(scans), scans)
    return scans


@app.task(bind=True, **RETRY)
def snapshot_machine(self: Task, scan_id: int) -> None:
    """Start the snapshots of one cycle, then wait for them."""
    repo, _ = _services()
    if cycle.take_snapshots(repo, scan_id):
        wait_snapshots.delay(scan_id, 0)


@app.task(bind=True, **RETRY)
def wait_snapshots(self: Task, scan_id: int, polls: int) -> str:
    """Poll the cycle's snapshots; re-poll later with a countdown (never sleep in a worker)."""
    repo, _ = _services()
    state = cycle.poll_snapshots(repo, scan_id)
    if state == "ready":
        scan_machine.delay(scan_id)
    elif state == "waiting":
        if polls >= MAX_WAIT_POLLS:
            cycle.fail(repo, scan_id, f"snapshots not ready after {polls} polls")
            return "failed"
        wait_snapshots.apply_async((scan_id, polls + 1), countdown=min(5 * 2 ** polls, 60))
    return state


@app.task(bind=True, **RETRY)
def scan_machine(self: Task, scan_id: int) -> dict[str, Any] | None:
    """Read the snapshots and commit the scan (scan queue: one per worker process)."""
    repo, settings = _services()
    try:
        diff = cycle.scan_cycle(repo, scan_id, settings, reraise=(SoftTimeLimitExceeded,))
    except SoftTimeLimitExceeded:
        cycle.fail(repo, scan_id, "the scan exceeded SNAPFIM_SCAN_TIME_LIMIT")
        diff = None
    finish_cycle.delay(scan_id)
    return None if diff is None else diff.counts()


@app.task(bind=True, **RETRY)
def finish_cycle(self: Task, scan_id: int) -> None:
    """Deliver what is pending (the scan's events were queued at its commit, a failed scan's
    alert at its failure) and delete snapshots past the retention."""
    repo, settings = _services()
    cycle.emit(repo, scan_id, settings)
    cycle.cleanup(repo, scan_id, settings)


@app.task(bind=True, **RETRY)
def sweep_cycle(self: Task) -> list[int]:
    """Fail scans stuck in flight (their tasks were lost); delete tagged snapshots older
    than the retention in every cloud account."""
    repo, settings = _services()
    stuck = cycle.sweep(repo, settings)
    cycle.sweep_snapshots(repo, settings)
    return stuck


@app.task(bind=True, **RETRY)
def deliver(self: Task) -> dict[str, Any]:
    """Beat's delivery round: stale-machine alerts, then pending deliveries past their
    backoff (a sink that failed is retried here), then scans marked emitted."""
    repo, settings = _services()
    report = cycle.deliver_round(repo, settings)
    return {"delivered": report.delivered, "errors": report.errors}
