"""One machine's failure is that machine's only (issue 9, item 6): an error nobody foresaw
while snapshotting one machine fails its scan with a one-line reason, and the cycle goes on
with the others (before, it escaped the step: ``snapfim cycle`` stopped there and left the
other machines' scans in ``snapshotting``)."""

from __future__ import annotations

import os
from pathlib import Path

from scanner import cycle
from scanner.settings import FleetSettings
from scanner.storage.fleet import add_account
from scanner.storage.repository import Repository
from tests.imaging.ext4 import linux_image
from tests.imaging.tools import copy_image


def test_an_unforeseen_snapshot_error_fails_that_machine_only(repository: Repository,
                                                              tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    built = linux_image(tmp_path / "build")
    for name in ("a-web", "b-web"):
        copy_image(built, images / f"{name}.img")
    with repository.transaction() as conn:
        account_id = add_account(conn, "lab", "local", {"images": str(images)})
    settings = FleetSettings()
    assert cycle.discover(repository, account_id) == 2
    scans = cycle.plan(repository, settings)
    # after discovery, a-web's image becomes a symlink to itself: stat() raises ELOOP, an
    # OSError that no provider translates
    loop = images / "a-web.img"
    loop.unlink()
    os.symlink(loop.name, loop)
    outcome = {}
    for scan_id in scans:  # as `snapfim cycle` runs them
        cycle.take_snapshots(repository, scan_id)
        state = cycle.poll_snapshots(repository, scan_id)
        if state == "ready":
            cycle.scan_cycle(repository, scan_id, settings)
        row = repository.scan_row(scan_id)
        outcome[row["machine"]] = (state, row["status"], row["error"])
    assert outcome == {
        "a-web": ("failed", "failed",
                  f"OSError: [Errno 40] Too many levels of symbolic links: '{loop}'"),
        "b-web": ("ready", "succeeded", None)}
