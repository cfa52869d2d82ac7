"""The fleet service end to end: PostgreSQL, Redis, a real Celery worker process, the local
provider (a directory of real ext4 images)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import func, select

from scanner import cycle
from scanner.storage import fleet
from scanner.storage.fleet import add_account
from scanner.storage.repository import Repository
from scanner.storage.tables import change_event, file_state, scan, snapshot
from tests.fleet.conftest import WorkerProcess, wait_for
from tests.imaging.ext4 import build_ext4, debugfs, linux_image
from tests.imaging.tools import copy_image
from tests.imaging.trees import linux_tree

PLAN = "workers.tasks.plan_cycle"


def scans_of(repo: Repository) -> list[dict[str, Any]]:
    with repo.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(select(scan).order_by(scan.c.id))]


def done(repo: Repository, count: int) -> bool:
    rows = scans_of(repo)
    return len(rows) >= count and all(r["status"] in ("succeeded", "partial", "failed")
                                      and (r["status"] == "failed" or r["emitted_at"])
                                      for r in rows)


def events(repo: Repository, machine: str) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(r["category"], r["path"], tuple(r["fields_changed"]))
            for r in repo.changes(machine_name=machine)]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A directory with three machines' images (identical deterministic Linux trees)."""
    base = linux_image(tmp_path / "build")
    directory = tmp_path / "images"
    directory.mkdir()
    for name in ("web-01", "web-02", "web-03"):
        copy_image(base, directory / f"{name}.img")
    return directory


def onboard(repo: Repository, images: Path) -> None:
    with repo.transaction() as conn:
        add_account(conn, "lab", "local", {"images": str(images)})


def next_cycle(send: Any, repo: Repository, worker: WorkerProcess, total_scans: int) -> None:
    time.sleep(2)  # the test cadence is 1.8 s: every machine is due again
    send(PLAN)
    wait_for(lambda: done(repo, total_scans), what=f"{total_scans} scans", log=worker.log)


def test_three_machines_two_cycles(fleet_repo: Repository, images: Path, worker: WorkerProcess,
                                   send: Any, worker_env: dict[str, str]) -> None:
    onboard(fleet_repo, images)
    send(PLAN)
    wait_for(lambda: done(fleet_repo, 3), what="3 baseline scans", log=worker.log)
    first = scans_of(fleet_repo)
    assert [(r["status"], r["baseline"], r["entities"]) for r in first] == [
        ("succeeded", True, first[0]["entities"])] * 3
    assert first[0]["entities"] > 20

    debugfs(images / "web-02.img", "sif /usr/bin/tool mode 0104755")
    debugfs(images / "web-03.img", "rm /etc/crontab")
    next_cycle(send, fleet_repo, worker, 6)
    second = scans_of(fleet_repo)[3:]
    assert [(r["status"], r["baseline"]) for r in second] == [("succeeded", False)] * 3
    assert events(fleet_repo, "web-01") == []
    assert events(fleet_repo, "web-02") == [("modified", "/usr/bin/tool", ("mode",))]
    [mode] = fleet_repo.changes(machine_name="web-02")
    assert (mode["previous"]["mode"], mode["current"]["mode"]) == (0o755, 0o4755)
    assert events(fleet_repo, "web-03") == [("removed", "/etc/crontab", ())]
    # emitted once, as JSON lines
    lines = [json.loads(x) for x in Path(worker_env["SNAPFIM_EVENTS_JSONL"]).read_text()
             .splitlines()]
    assert sorted((x["Computer"], x["ChangeCategory"], x["FileSystemPath"]) for x in lines) == [
        ("web-02", "Modified", "/usr/bin/tool"), ("web-03", "Removed", "/etc/crontab")]
    # snapshots: the older cycle's were deleted by cleanup, the newest kept per disk
    with fleet_repo.transaction() as conn:
        states = conn.execute(select(snapshot.c.scan_id, snapshot.c.state)
                              .order_by(snapshot.c.id)).all()
    assert [s for _, s in states] == ["deleted"] * 3 + ["scanned"] * 3


def slow_machine(tmp_path: Path, name: str = "big-01") -> tuple[Path, Path]:
    """A directory holding one machine whose scan takes seconds (2 GiB of sparse data to
    hash), so that a test can act while it runs; returns (directory, image)."""
    root = linux_tree(tmp_path / "src")
    with open(root / "usr/bin/huge", "wb") as handle:
        handle.truncate(2 << 30)
        handle.seek(1 << 30)
        handle.write(b"middle")
    directory = tmp_path / "images"
    directory.mkdir()
    return directory, build_ext4(root, directory / f"{name}.img", size_mb=2400)


def queue_scan(repo: Repository, machine: str) -> int:
    """Open the next cycle of ``machine`` and bring it to ``queued`` (what plan_cycle,
    snapshot_machine and wait_snapshots do), without sending the scan task."""
    with repo.transaction() as conn:
        scan_id = fleet.open_cycle(conn, repo.machine_id(conn, machine), datetime.now(UTC))
    assert scan_id is not None
    assert cycle.take_snapshots(repo, scan_id)
    assert cycle.poll_snapshots(repo, scan_id) == "ready"
    return scan_id


def scan_row(repo: Repository, scan_id: int) -> dict[str, Any]:
    with repo.transaction() as conn:
        return dict(conn.execute(select(scan).where(scan.c.id == scan_id)).one()._mapping)


def test_a_scan_delivered_twice_at_once_commits_once(
        fleet_repo: Repository, tmp_path: Path, worker: WorkerProcess, worker_env: dict[str, str],
        broker: str) -> None:
    """Two deliveries of one scan task run the whole scan side by side (the first is frozen
    mid-scan while a second worker runs the second); exactly one commits its result, and
    redelivered follow-up tasks change nothing."""
    directory, image = slow_machine(tmp_path)
    onboard(fleet_repo, directory)
    app = Celery("snapfim-test", broker=broker)
    try:
        app.send_task(PLAN, queue="control")
        wait_for(lambda: done(fleet_repo, 1), what="the baseline", log=worker.log)
        debugfs(image, "sif /etc/crontab uid 1000")
        scan_id = queue_scan(fleet_repo, "big-01")
        first = app.send_task("workers.tasks.scan_machine", args=(scan_id,), queue="scan")
        wait_for(lambda: scan_row(fleet_repo, scan_id)["attempts"] == 1,
                 what="the first delivery running", log=worker.log)
        with worker.frozen():
            assert (scan_row(fleet_repo, scan_id)["status"], scan_row(fleet_repo, scan_id)[
                "attempts"]) == ("running", 1), "the first delivery finished before it froze"
            second_worker = WorkerProcess(worker_env, tmp_path / "second.log", name="second")
            try:
                second = app.send_task("workers.tasks.scan_machine", args=(scan_id,),
                                       queue="scan")
                wait_for(lambda: second_worker.succeeded(second.id), what="the second delivery",
                         log=second_worker.log)
                wait_for(lambda: done(fleet_repo, 2), what="the emission", log=second_worker.log)
            finally:
                second_worker.stop()
        # the first delivery wakes up with its whole scan read, and finds the scan committed
        wait_for(lambda: worker.succeeded(first.id), what="the first delivery", log=worker.log)
        assert second_worker.succeeded(second.id) == ["{'added': 0, 'removed': 0, 'modified': 1}"]
        assert worker.succeeded(first.id) == ["None"]
        row = scan_row(fleet_repo, scan_id)
        assert (row["status"], row["attempts"]) == ("succeeded", 2)  # both ran the scan

        # late duplicates of every step of the cycle: each runs, and does nothing
        duplicates = [app.send_task(name, args=args, queue=queue) for name, args, queue in [
            ("workers.tasks.scan_machine", (scan_id,), "scan"),
            ("workers.tasks.finish_cycle", (scan_id,), "control"),
            ("workers.tasks.snapshot_machine", (scan_id,), "control"),
            ("workers.tasks.wait_snapshots", (scan_id, 0), "control")]]
        for task in duplicates:
            wait_for(lambda task=task: worker.succeeded(task.id), what=f"duplicate {task.id}",
                     log=worker.log)
        assert [worker.succeeded(t.id) for t in duplicates] == [
            ["None"], ["None"], ["None"], ["'succeeded'"]]
    finally:
        app.close()
    assert events(fleet_repo, "big-01") == [("modified", "/etc/crontab", ("uid",))]
    assert [(r["status"], r["attempts"]) for r in scans_of(fleet_repo)] == [
        ("succeeded", 1), ("succeeded", 2)]
    with fleet_repo.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(change_event)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(file_state)).scalar() == \
            scans_of(fleet_repo)[0]["entities"]
    emitted = Path(worker_env["SNAPFIM_EVENTS_JSONL"]).read_text().splitlines()
    assert [json.loads(x)["FileSystemPath"] for x in emitted] == ["/etc/crontab"]


def test_unreadable_image_fails_its_scan_and_the_others_go_on(
        fleet_repo: Repository, images: Path, worker: WorkerProcess, send: Any) -> None:
    (images / "web-03.img").write_bytes(b"this is not a disk image\n" * 1000)
    onboard(fleet_repo, images)
    send(PLAN)
    wait_for(lambda: done(fleet_repo, 3), what="3 scans", log=worker.log)
    by_machine = {r["machine_id"]: r for r in scans_of(fleet_repo)}
    statuses = sorted(r["status"] for r in by_machine.values())
    assert statuses == ["failed", "succeeded", "succeeded"]
    failed = next(r for r in by_machine.values() if r["status"] == "failed")
    assert "no readable filesystem" in failed["error"]
    with fleet_repo.transaction() as conn:
        rows = conn.execute(select(file_state.c.machine_id, func.count())
                            .group_by(file_state.c.machine_id)).all()
    assert failed["machine_id"] not in {m for m, _ in rows} and len(rows) == 2


def test_worker_killed_mid_scan_redelivers_to_one_clean_result(
        fleet_repo: Repository, tmp_path: Path, worker: WorkerProcess, send: Any) -> None:
    # A machine whose scan takes a while: 3 GiB of (sparse) data to hash.
    root = linux_tree(tmp_path / "src")
    with open(root / "usr/bin/huge", "wb") as handle:
        handle.truncate(3 << 30)
        handle.seek(1 << 30)
        handle.write(b"middle")
    directory = tmp_path / "images"
    directory.mkdir()
    image = build_ext4(root, directory / "big-01.img", size_mb=3300)
    onboard(fleet_repo, directory)
    send(PLAN)
    wait_for(lambda: done(fleet_repo, 1), what="baseline", log=worker.log)
    debugfs(image, "sif /usr/bin/huge uid 42", "sif /etc/crontab mode 0100600")
    time.sleep(2)
    send(PLAN)
    wait_for(lambda: (len(rows := scans_of(fleet_repo)) == 2 and rows[1]["status"] == "running"
                      and rows[1]["attempts"] == 1), what="the second scan running",
             log=worker.log)
    # killed inside the scan; attempts == 2 below shows the first delivery never committed
    # (a redelivery of a committed scan returns before counting an attempt)
    children = worker.pool_children()
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: done(fleet_repo, 2), what="the redelivered scan", log=worker.log)
    second = scans_of(fleet_repo)[1]
    assert second["status"] == "succeeded" and second["attempts"] == 2
    assert events(fleet_repo, "big-01") == [("modified", "/etc/crontab", ("mode",)),
                                            ("modified", "/usr/bin/huge", ("uid",))]
    with fleet_repo.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(change_event)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(file_state)).scalar() == \
            scans_of(fleet_repo)[0]["entities"]


def test_cli_onboarding_cycle_and_summary(images: Path, pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "SNAPFIM_DATABASE_URL": pg_url, "SNAPFIM_HASH_WORKERS": "1",
           "SNAPFIM_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str, **extra: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "scanner", *args], text=True,
                              capture_output=True, timeout=120, env={**env, **extra})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "added local account lab" in cli("account", "add", "local", "--name", "lab",
                                             "--images", str(images))
    assert cli("cycle").count("succeeded (baseline)") == 3
    assert "nothing due" in cli("cycle")
    debugfs(images / "web-02.img", "rm /etc/ld.so.conf")
    time.sleep(0.5)
    out = cli("cycle", SNAPFIM_CADENCE_HOURS="0.0001")
    assert "web-02: succeeded (0 added, 1 removed, 0 modified)" in out
    assert json.loads(cli("summary", "--json")) == {
        "machines": 3, "total_changes": 1,
        "by_type": {"file": 1, "registry": 0, "software": 0, "service": 0, "daemon": 0},
        "by_category": {"added": 0, "removed": 1, "modified": 0},
        "package_verdicts": {"matches-package": 0, "differs-from-package": 0,
                             "not-packaged": 0, "package-database-tampered": 0,
                             "explained": 0, "unexplained": 1},
        "per_machine": [{"machine": "web-02", "file": 1, "registry": 0, "total": 1}]}
    listing = cli("account", "list")
    assert "lab" in listing and "images=" in listing
    cli("account", "disable", "lab")
    assert "nothing due" in cli("cycle", SNAPFIM_CADENCE_HOURS="0.0001")


def test_database_briefly_unavailable_is_retried_and_nothing_is_lost(
        fleet_repo: Repository, images: Path, worker: WorkerProcess, send: Any,
        pg_url: str) -> None:
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL

    onboard(fleet_repo, images)
    send(PLAN)
    wait_for(lambda: done(fleet_repo, 3), what="baselines", log=worker.log)
    debugfs(images / "web-01.img", "sif /usr/bin/login gid 7")
    name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    fleet_repo.engine.dispose()
    try:
        with admin.connect() as conn:  # the database goes away: no new connections, none open
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        time.sleep(2)
        send(PLAN)
        wait_for(lambda: b"database unavailable" in worker.log.read_bytes(),
                 what="the worker to meet the outage", log=worker.log, timeout=30)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    wait_for(lambda: done(fleet_repo, 6), what="the retried cycle", log=worker.log)
    assert events(fleet_repo, "web-01") == [("modified", "/usr/bin/login", ("gid",))]
    assert [r["status"] for r in scans_of(fleet_repo)] == ["succeeded"] * 6


@pytest.mark.parametrize("outage", ["long", "short"])
def test_broker_outage_with_tasks_in_flight(fleet_repo: Repository, tmp_path: Path,
                                            worker_env: dict[str, str], outage: str) -> None:
    """Redis stops and comes back while one scan is mid-task (its message delivered, not yet
    acknowledged) and another scan's message waits in the queue: the worker reconnects, both
    scans are committed and emitted exactly once, and no message is left to run again.

    long: the worker meets the outage (it tries to put the delivered message back and cannot),
    the running scan finishes and is acknowledged. short: the whole worker is frozen through
    the outage and only meets a broker that is back; it puts the delivered message back, and
    that redelivery runs after the first delivery committed, and does nothing."""
    import socket

    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
            "--appendfsync", "always", "--save", "", "--dir", str(tmp_path)]

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"],
                                        capture_output=True).stdout.strip() == b"PONG",
                 what="redis", timeout=10)
        return proc

    def in_broker() -> set[str]:
        """Ids of the task messages Redis holds: queued, or delivered and not acknowledged
        (kombu keeps those in the ``unacked`` hash as [message, exchange, routing key])."""
        queued = [json.loads(m) for q in ("scan", "control") for m in client.lrange(q, 0, -1)]
        unacked = [json.loads(m)[0] for m in client.hvals("unacked")]
        return {m["headers"]["id"] for m in queued + unacked}

    directory, slow_image = slow_machine(tmp_path)
    fast_image = copy_image(linux_image(tmp_path / "build"), directory / "web-01.img")
    redis_proc = start_redis()
    broker = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis(port=port)
    worker = WorkerProcess({**worker_env, "SNAPFIM_BROKER_URL": broker}, tmp_path / "w.log")
    app = Celery("snapfim-test", broker=broker)
    try:
        onboard(fleet_repo, directory)
        app.send_task(PLAN, queue="control")
        wait_for(lambda: done(fleet_repo, 2), what="baselines", log=worker.log)
        debugfs(slow_image, "sif /etc/crontab uid 5")
        debugfs(fast_image, "rm /etc/ld.so.conf")
        slow_scan, fast_scan = queue_scan(fleet_repo, "big-01"), queue_scan(fleet_repo, "web-01")
        slow = app.send_task("workers.tasks.scan_machine", args=(slow_scan,), queue="scan")
        wait_for(lambda: scan_row(fleet_repo, slow_scan)["attempts"] == 1,
                 what="the slow scan running", log=worker.log)
        with worker.frozen(whole=outage == "short"):
            fast = app.send_task("workers.tasks.scan_machine", args=(fast_scan,), queue="scan")
            assert scan_row(fleet_repo, slow_scan)["status"] == "running"
            assert in_broker() == {slow.id, fast.id}  # one delivered, one waiting
            redis_proc.terminate()  # the broker goes away (its AOF keeps both messages)
            redis_proc.wait(10)
            if outage == "long":  # the worker notices and fails to reconnect
                wait_for(lambda: b"consumer: Cannot connect to redis" in worker.log.read_bytes(),
                         what="the worker to meet the outage", log=worker.log, timeout=30)
            redis_proc = start_redis()
            assert in_broker() == {slow.id, fast.id}
        wait_for(lambda: worker.succeeded(slow.id) and worker.succeeded(fast.id),
                 what="both scans after the outage", log=worker.log)
        wait_for(lambda: done(fleet_repo, 4), what="the emissions", log=worker.log)
        counts = "{'added': 0, 'removed': 0, 'modified': 1}"
        if outage == "short":  # the message was put back, redelivered, and did nothing
            wait_for(lambda: len(worker.succeeded(slow.id)) == 2, what="the redelivery",
                     log=worker.log)
        assert worker.succeeded(slow.id) == ([counts] if outage == "long" else [counts, "None"])
        # it tried to put the delivered message back once: in vain (long), or it did (short)
        assert worker.log.read_text().count("Restoring 1 unacknowledged message(s)") == 1
        assert worker.succeeded(fast.id) == ["{'added': 0, 'removed': 1, 'modified': 0}"]
        assert events(fleet_repo, "big-01") == [("modified", "/etc/crontab", ("uid",))]
        assert events(fleet_repo, "web-01") == [("removed", "/etc/ld.so.conf", ())]
        assert [(r["status"], r["attempts"]) for r in scans_of(fleet_repo)[2:]] == [
            ("succeeded", 1), ("succeeded", 1)]
        wait_for(lambda: in_broker() == set(), what="every message acknowledged",  # none
                 log=worker.log)                                           # left to run again
        lines = Path(worker_env["SNAPFIM_EVENTS_JSONL"]).read_text().splitlines()
        assert sorted(json.loads(x)["FileSystemPath"] for x in lines) == [
            "/etc/crontab", "/etc/ld.so.conf"]
    finally:
        app.close()
        worker.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
