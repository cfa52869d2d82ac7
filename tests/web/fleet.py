"""A small real fleet for the dashboard tests and the screenshot: real ext4 images built and
scanned twice by `snapfim scan`'s path (machines web-01 and db-01, account ``cli``) and by
the fleet cycle (account ``lab``: app-01 scanned, broken-01 a disk without a filesystem whose
scan fails).

web-01's second disk holds hostile names: ``/etc/<img src=x onerror=alert(2)>.conf`` and a
directory entry named ``<script>alert(1)</script>`` in /usr/bin (the ``/`` written into the
directory block itself; the scanner reports it as ``<script>alert(1)<\\x2fscript>`` with a
coverage note).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from scanner import cycle
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.settings import FleetSettings
from scanner.sources.local import open_local
from scanner.storage import fleet
from scanner.storage.repository import Repository
from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.tools import copy_image

IMG_NAME = "<img src=x onerror=alert(2)>.conf"
SCRIPT_NAME = "<script>alert(1)</script>"
SCRIPT_PATH = "/usr/bin/<script>alert(1)<\\x2fscript>"
WEB_MUTATIONS = ("sif /usr/bin/tool mode 0104755", "rm /etc/crontab", "sif /etc/a.conf uid 1000")
DB_MUTATIONS = ("sif /usr/sbin/sshd mode 0100700",)


@dataclass(frozen=True)
class Fleet:
    """The ids the tests assert on."""

    web: int              # machine ids
    db: int
    app: int
    broken: int
    web_scans: tuple[int, int]
    db_scans: tuple[int, int]
    app_scan: int
    broken_scan: int


def base_image(workdir: Path) -> Path:
    """The tests' Linux image, without metadata checksums (so a directory entry can be
    patched in place, as a hostile disk would hold it)."""
    image = linux_image(workdir)
    subprocess.run(["tune2fs", "-O", "^metadata_csum", str(image)], check=True,
                   capture_output=True)
    return image


def _hostile(image: Path, workdir: Path) -> None:
    payload = workdir / "payload"
    payload.write_text("evil\n")
    placeholder = SCRIPT_NAME.replace("/", "X")
    debugfs(image, f'write {payload} "/etc/{IMG_NAME}"', f"write {payload} /usr/bin/{placeholder}")
    data = bytearray(image.read_bytes())
    at = data.find(placeholder.encode())
    assert at > 0 and data.count(placeholder.encode()) == 1
    data[at:at + len(SCRIPT_NAME)] = SCRIPT_NAME.encode()
    image.write_bytes(bytes(data))


def _scan(repo: Repository, image: Path, machine: str) -> int:
    with open_local(image) as source:
        return run_scan(repo, source, machine, ScanOptions(1), image.name).id


def build_fleet(repo: Repository, base: Path, workdir: Path) -> Fleet:
    """Scan the fleet into ``repo`` (see the module docstring); ``base`` from
    :func:`base_image`."""
    workdir.mkdir(parents=True, exist_ok=True)
    web, db = copy_image(base, workdir / "web-01.img"), copy_image(base, workdir / "db-01.img")
    web_first, db_first = _scan(repo, web, "web-01"), _scan(repo, db, "db-01")
    debugfs(web, *WEB_MUTATIONS)
    _hostile(web, workdir)
    debugfs(db, *DB_MUTATIONS)
    web_second, db_second = _scan(repo, web, "web-01"), _scan(repo, db, "db-01")

    images = workdir / "lab"
    images.mkdir()
    copy_image(base, images / "app-01.img")
    with (images / "broken-01.img").open("wb") as handle:
        handle.truncate(4 << 20)                     # zeros: no partition table, no filesystem
    settings = FleetSettings()
    with repo.transaction() as conn:
        account_id = fleet.add_account(conn, "lab", "local", {"images": str(images)})
    cycle.discover(repo, account_id)
    planned = cycle.plan(repo, settings)
    for scan_id in planned:
        assert cycle.take_snapshots(repo, scan_id)
        assert cycle.poll_snapshots(repo, scan_id) == "ready"
        cycle.scan_cycle(repo, scan_id, settings)
    with repo.transaction() as conn:
        ids = {name: repo.machine_id(conn, name)
               for name in ("web-01", "db-01", "app-01", "broken-01")}
    scans = {repo.scans(name, 1)[0]["machine"]: repo.scans(name, 1)[0]["id"]
             for name in ("app-01", "broken-01")}
    return Fleet(ids["web-01"], ids["db-01"], ids["app-01"], ids["broken-01"],
                 (web_first, web_second), (db_first, db_second), scans["app-01"],
                 scans["broken-01"])

