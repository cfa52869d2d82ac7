"""The fleet service end to end: PostgreSQL, Redis, a real Celery worker process, the local
provider (a directory of real ext4 images)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from scanner.storage.fleet import add_account
from scanner.storage.repository import Repository
from scanner.storage.tables import change_event, file_state, scan, snapshot
from tests.fleet.conftest import WorkerProcess, wait_for
from tests.imaging import build_ext4, copy_image, debugfs, linux_image, linux_tree

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


def test_running_a_scan_task_twice_never_duplicates(fleet_repo: Repository, images: Path,
                                                    worker: WorkerProcess, send: Any) -> None:
    onboard(fleet_repo, images)
    send(PLAN)
    wait_for(lambda: done(fleet_repo, 3), what="baselines", log=worker.log)
    debugfs(images / "web-01.img", "sif /etc/a.conf uid 1000")
    next_cycle(send, fleet_repo, worker, 6)
    scan_id = scans_of(fleet_repo)[3]["id"]
    before = events(fleet_repo, "web-01")
    assert before == [("modified", "/etc/a.conf", ("uid",))]
    for task in ("workers.tasks.scan_machine", "workers.tasks.finish_cycle",
                 "workers.tasks.snapshot_machine"):
        send(task, scan_id)
    send("workers.tasks.wait_snapshots", scan_id, 0)
    time.sleep(3)
    assert events(fleet_repo, "web-01") == before
    assert len(scans_of(fleet_repo)) == 6
    with fleet_repo.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(change_event)).scalar() == 1


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
    time.sleep(0.3)  # well inside the hashing of the big file
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
        "machines": 3, "total_changes": 1, "by_type": {"file": 1, "registry": 0},
        "by_category": {"added": 0, "removed": 1, "modified": 0},
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


def test_broker_restart_is_survived(fleet_repo: Repository, images: Path, tmp_path: Path,
                                    worker_env: dict[str, str]) -> None:
    import socket

    from celery import Celery

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

    redis_proc = start_redis()
    broker = f"redis://127.0.0.1:{port}/0"
    worker = WorkerProcess({**worker_env, "SNAPFIM_BROKER_URL": broker}, tmp_path / "w.log")
    app = Celery("snapfim-test", broker=broker)
    try:
        onboard(fleet_repo, images)
        app.send_task(PLAN, queue="control")
        wait_for(lambda: done(fleet_repo, 3), what="baselines", log=worker.log)
        debugfs(images / "web-03.img", "sif /etc/crontab uid 5")
        redis_proc.terminate()  # the broker goes away (its AOF keeps what was queued)
        redis_proc.wait(10)
        time.sleep(3)
        redis_proc = start_redis()
        app.send_task(PLAN, queue="control")
        wait_for(lambda: done(fleet_repo, 6), what="a cycle after the broker came back",
                 log=worker.log)
        assert events(fleet_repo, "web-03") == [("modified", "/etc/crontab", ("uid",))]
    finally:
        app.close()
        worker.stop()
        redis_proc.terminate()
        redis_proc.wait(10)
