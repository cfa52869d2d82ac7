"""Events and alerts through a real Celery worker to a real HTTPS receiver: the finish step
sends, a refused batch stays pending, beat's `deliver` task retries it and raises stale-machine
alerts (PostgreSQL, Redis, the local provider)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from scanner.storage.fleet import add_account
from scanner.storage.repository import Repository
from scanner.storage.tables import delivery, scan
from tests.fleet.conftest import WorkerProcess, wait_for
from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.tools import copy_image
from tests.ocsf_schema import validate_ocsf
from tests.receivers import HttpsReceiver, make_ca_and_server_cert, records

PLAN, DELIVER = "workers.tasks.plan_cycle", "workers.tasks.deliver"


def _scans(repo: Repository) -> list[Any]:
    with repo.transaction() as conn:
        return list(conn.execute(select(scan).order_by(scan.c.id)))


def _deliveries(repo: Repository) -> list[Any]:
    with repo.transaction() as conn:
        return list(conn.execute(select(delivery).order_by(delivery.c.id)))


def _finished(repo: Repository, count: int) -> bool:
    rows = _scans(repo)
    return len(rows) == count and all(r.status in ("succeeded", "failed") for r in rows)


def test_worker_delivers_retries_from_beat_and_alerts(
        fleet_repo: Repository, worker_env: dict[str, str], send: Any, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    base = linux_image(tmp_path / "build")
    for name in ("web-01", "web-02"):
        copy_image(base, images / f"{name}.img")
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    receiver = HttpsReceiver(cert, key, script=[500])          # the first batch is refused
    env = {**worker_env, "SNAPFIM_WEBHOOK_URL": receiver.url,
           "SNAPFIM_WEBHOOK_CA_BUNDLE": str(ca), "SNAPFIM_EVENTS_FORMAT": "ocsf",
           "SNAPFIM_DELIVERY_RETRY_SECONDS": "3600", "SNAPFIM_STALE_HOURS": "1"}
    env.pop("SNAPFIM_EVENTS_JSONL")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        with fleet_repo.transaction() as conn:
            add_account(conn, "lab", "local", {"images": str(images)})
        send(PLAN)
        wait_for(lambda: _finished(fleet_repo, 2), what="baselines", log=worker.log)
        debugfs(images / "web-01.img", "sif /etc/a.conf uid 1000")
        (images / "web-02.img").write_bytes(b"not a disk\n" * 1000)
        time.sleep(2)                                          # the test cadence is 1.8 s
        send(PLAN)
        wait_for(lambda: _finished(fleet_repo, 4) and len(_deliveries(fleet_repo)) == 2
                 and receiver.requests, what="second cycle and its first POST", log=worker.log)
        # both finish steps ran; the refused batch and what queued behind it wait (backoff)
        wait_for(lambda: succeeded(worker, "finish_cycle") == 4, what="four finish steps",
                 log=worker.log)
        assert [r.answered for r in receiver.requests] == [500]
        pending = _deliveries(fleet_repo)
        assert all(d.delivered_at is None for d in pending)
        assert [(d.event_id is not None, d.alert_id is not None) for d in pending] in (
            [(True, False), (False, True)], [(False, True), (True, False)])
        # time passes: beat's deliver task retries and everything goes, in order
        with fleet_repo.transaction() as conn:
            conn.execute(update(delivery).values(
                next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
        send(DELIVER)
        wait_for(lambda: all(d.delivered_at is not None for d in _deliveries(fleet_repo)),
                 what="delivery by the deliver task", log=worker.log)
        assert [r.answered for r in receiver.requests] == [500, 200]
        sent = list(records(receiver.requests[1:]))
        assert receiver.requests[0].json == sent[:len(receiver.requests[0].json)]
        assert sorted((x["class_uid"], x["device"]["hostname"]) for x in sent) == [
            (1001, "web-01"), (6007, "web-02")]
        for record in sent:
            validate_ocsf(record)
        web01 = next(x for x in sent if x["class_uid"] == 1001)
        assert (web01["file"]["path"], web01["unmapped"]["fields_changed"]) == (
            "/etc/a.conf", ["uid"])
        web02 = next(x for x in sent if x["class_uid"] == 6007)
        assert "no readable filesystem" in web02["status_detail"]
        wait_for(lambda: all(r.emitted_at is not None for r in _scans(fleet_repo)
                             if r.status == "succeeded"), what="scans marked emitted")
        # web-02 has not been scanned successfully for more than SNAPFIM_STALE_HOURS
        baseline = min(r.id for r in _scans(fleet_repo) if r.machine_id == web_id(fleet_repo))
        with fleet_repo.transaction() as conn:
            conn.execute(update(scan).where(scan.c.id == baseline).values(
                finished_at=datetime.now(UTC) - timedelta(hours=2)))
        send(DELIVER)
        send(DELIVER)                                          # raised once, sent once
        wait_for(lambda: len(receiver.requests) == 3, what="the stale alert", log=worker.log)
        wait_for(lambda: succeeded(worker, "deliver") == 3, what="three deliver tasks done",
                 log=worker.log)
        assert len(receiver.requests) == 3
        [stale] = receiver.requests[2].json
        validate_ocsf(stale)
        assert (stale["class_uid"], stale["activity_name"], stale["device"]["hostname"]) == (
            6007, "Overdue", "web-02")
        assert stale["unmapped"]["last_success_scan_id"] == baseline
    finally:
        worker.stop()
        receiver.close()


def web_id(repo: Repository) -> int:
    with repo.transaction() as conn:
        return int(repo.machine_id(conn, "web-02"))


def succeeded(worker: WorkerProcess, task: str) -> int:
    """How many runs of ``workers.tasks.<task>`` the worker's log reports as succeeded."""
    return len(re.findall(rf"Task workers\.tasks\.{task}\[[^\]]+\] succeeded",
                          worker.log.read_text()))
