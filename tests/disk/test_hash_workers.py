"""Hash worker processes that die or hang never hang the scan: the file the worker was on
becomes an unreadable path with the reason (its previous state is kept), every other file
is hashed (by the scanning process when the worker had claimed it), the scan is partial."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from scanner.collectors import hashing
from scanner.limits import Limits
from scanner.pipeline import ScanOptions, ScanOutcome, scan_source
from scanner.policy import make_entity
from scanner.sources.local import open_local
from tests.imaging.ext4 import build_ext4
from tests.imaging.trees import linux_tree


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workers")
    return build_ext4(linux_tree(workdir / "src"), workdir / "disk.img")


def scan(image: Path, workers: int, limits: Limits | None = None) -> ScanOutcome:
    with open_local(image) as source:
        return scan_source(source, [make_entity("/")],
                           ScanOptions(workers, limits=limits or Limits()), name="disk")


def broken_first_job(monkeypatch: pytest.MonkeyPatch, action: Any) -> None:
    """In every forked worker, the first file it hashes runs ``action`` instead. The
    workers start at the first file fed; on a loaded machine the scanning process could
    finish its walk and claim every job before a worker is scheduled, so the scanning
    process waits (bounded) until a worker has claimed its first run."""
    real = hashing._hash_in_worker  # noqa: SLF001 - the worker side under test
    real_results = hashing.Hasher.results
    first = [True]

    def hash_in_worker(*args: Any, **kwargs: Any) -> hashing.HashResult:
        if first[0]:
            first[0] = False
            action()
        return real(*args, **kwargs)

    def results(self: hashing.Hasher, *args: Any, **kwargs: Any) -> Any:
        table = self._table  # noqa: SLF001 - the job table under test
        deadline = time.monotonic() + 60
        while table is not None and table._state[1] == 0 and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        return real_results(self, *args, **kwargs)

    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(hashing, "_hash_in_worker", hash_in_worker)
    monkeypatch.setattr(hashing.Hasher, "results", results)


def check_one_lost(outcome: ScanOutcome, direct: ScanOutcome, reason: str) -> None:
    [(path, why)] = outcome.coverage.unreadable.items()
    assert why == reason
    assert outcome.coverage.status == "partial"
    assert direct.entities[path].sha256 is not None
    assert outcome.entities[path].sha256 is None  # content unknown: the diff keeps the old
    others = {p: e for p, e in outcome.entities.items() if p != path}
    assert others == {p: e for p, e in direct.entities.items() if p != path}


def test_a_worker_killed_mid_file_is_a_coverage_entry_not_a_hang(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = scan(image, 1)
    broken_first_job(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGKILL))
    outcome = scan(image, 2)
    check_one_lost(outcome, direct, "the hash worker process died (exit code -9) while "
                                    "hashing this file")


def test_a_worker_stuck_in_a_read_is_stopped_after_the_stall_limit(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = scan(image, 1)
    broken_first_job(monkeypatch, lambda: time.sleep(3600))
    outcome = scan(image, 2, Limits(hash_stall_seconds=1))
    check_one_lost(outcome, direct, "the hash worker made no progress for 1 s while reading "
                                    "this file and was stopped")


def test_a_worker_killed_holding_the_job_table_lock_does_not_hang_the_scan(
        image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every other process gives up on the lock after LOCK_SECONDS: the workers send what
    they hashed, the scanning process hashes the rest; no file is lost."""
    direct = scan(image, 1)
    parent = os.getpid()
    real = hashing._JobTable.claim  # noqa: SLF001 - the job table under test

    def claim(self: Any, wait: bool = False) -> tuple[int, int] | None:
        # the first worker to get the lock dies holding it; the others wait for it in vain
        if os.getpid() != parent and self._state.get_lock().acquire(timeout=1.0):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, wait)

    monkeypatch.setattr(hashing, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(hashing, "LOCK_SECONDS", 1.0)
    monkeypatch.setattr(hashing._JobTable, "claim", claim)  # noqa: SLF001
    outcome = scan(image, 3)
    assert outcome.coverage.unreadable == {}
    assert outcome.entities == direct.entities
