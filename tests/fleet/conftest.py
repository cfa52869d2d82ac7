"""Fleet fixtures: a PostgreSQL database, a Redis broker database and a real Celery worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from scanner.storage.db import make_engine, upgrade
from scanner.storage.repository import Repository

REDIS_DB = int(os.environ.get("SNAPFIM_TEST_REDIS_DB", "11"))
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"


@pytest.fixture
def broker() -> Iterator[str]:
    """An empty Redis database used as the Celery broker."""
    client = redis.Redis.from_url(BROKER)
    client.flushdb()
    yield BROKER
    client.flushdb()


@pytest.fixture
def fleet_repo(pg_url: str) -> Iterator[Repository]:
    """A migrated PostgreSQL repository."""
    engine = make_engine(pg_url)
    upgrade(engine)
    yield Repository(engine)
    engine.dispose()


class WorkerProcess:
    """A `celery -A workers.app worker` child process with the test's settings."""

    def __init__(self, env: dict[str, str], log: Path, name: str = "test") -> None:
        self.log = log
        self._handle = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "control,scan",
             "-c", "1", "-P", "prefork", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "INFO", "-n", f"{name}-{os.getpid()}@%h"],
            env=env, stdout=self._handle, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log.read_text()}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready:\n{self.log.read_text()}")

    def pool_children(self) -> list[int]:
        """PIDs of the prefork pool processes (children of the worker's main process)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    @contextmanager
    def frozen(self, *, whole: bool = False) -> Iterator[list[int]]:
        """Stop the pool processes (SIGSTOP), or the whole worker, in the middle of what they
        do; continue them (SIGCONT) when the block ends. Yields their PIDs."""
        children = self.pool_children()
        assert children, f"no pool process to freeze\n{self.log.read_text()[-4000:]}"
        if whole:
            children.insert(0, self.proc.pid)
        for pid in children:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield children
        finally:
            for pid in children:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def task_lines(self, task_id: str) -> list[str]:
        """The log lines of one task (received, succeeded, retry, failed), in order."""
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if f"[{task_id}]" in line]

    def succeeded(self, task_id: str) -> list[str]:
        """What the task returned, once per successful run (``succeeded in ...s: VALUE``)."""
        runs = [line.partition(" succeeded in ") for line in self.task_lines(task_id)]
        return [tail.partition("s: ")[2] for _, sep, tail in runs if sep]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._handle.close()


@pytest.fixture
def worker_env(pg_url: str, broker: str, tmp_path: Path) -> dict[str, str]:
    """Environment of the worker: test database and broker, quick cadence, events file.

    Holes of sparse files are hashed as zeros up to 8 GiB (``SNAPFIM_MAX_HOLE_BYTES``; the
    default hashes past 1 MiB of holes from the extent map in no time), so that the slow
    machine's 2 GiB sparse file keeps its scan busy for a while: the tests act mid-scan."""
    env = {**os.environ, "SNAPFIM_DATABASE_URL": pg_url, "SNAPFIM_BROKER_URL": broker,
           "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_CADENCE_HOURS": "0.0005",
           "SNAPFIM_EVENTS_JSONL": str(tmp_path / "events.jsonl"), "SNAPFIM_HASH_WORKERS": "1",
           "SNAPFIM_MAX_HOLE_BYTES": str(8 << 30)}
    return env


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path,
           fleet_repo: Repository) -> Iterator[WorkerProcess]:
    """A running Celery worker (control and scan queues, concurrency 1)."""
    proc = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def send(broker: str) -> Iterator[Callable[..., Any]]:
    """``send(task_name, *args)``: put a task on the control queue, as beat would."""
    app = Celery("snapfim-test", broker=broker)
    yield lambda name, *args: app.send_task(name, args=args, queue="control")
    app.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 90, what: str = "condition",
             log: Path | None = None) -> Any:
    """Poll until ``predicate()`` is truthy; fail with the worker log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    detail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{detail}")
