"""The summary's cached counts are never stale: a scan committing events, or a machine
removed, changes what the overview and /api/v1/summary show at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scanner.storage.repository import Repository, ScanRecord
from scanner.web.context import WebContext
from tests.imaging.ext4 import debugfs, linux_image


def test_cached_counts_follow_each_commit_and_removal(
        repo: Repository, scan: Callable[[Path], ScanRecord], tmp_path: Path) -> None:
    image = linux_image(tmp_path)
    ctx = WebContext(repo, timedelta(hours=48))
    since = datetime.now(UTC) - timedelta(days=1)

    def counts() -> tuple[Any, ...]:
        with repo.transaction() as conn:
            s = ctx.summary(conn, since=since)
        return s["machines"], s["total_changes"], s["by_category"], s["top_machines"]

    scan(image)
    assert counts() == (1, 0, {"added": 0, "removed": 0, "modified": 0}, [])
    assert counts() == (1, 0, {"added": 0, "removed": 0, "modified": 0}, [])
    assert ctx.cache.hits == 1
    debugfs(image, "rm /etc/crontab", "sif /etc/a.conf uid 1000")
    second = scan(image)
    assert (second.removed, second.modified) == (1, 1)
    with repo.transaction() as conn:
        machine_id = repo.machine_id(conn, "web-01")
    assert counts() == (1, 2, {"added": 0, "removed": 1, "modified": 1},
                        [{"id": machine_id, "machine": "web-01", "account": "cli",
                          "changes": 2}])
    assert ctx.cache.hits == 1                      # recomputed, not served stale
    assert repo.delete_machine("web-01")
    assert counts() == (0, 0, {"added": 0, "removed": 0, "modified": 0}, [])
