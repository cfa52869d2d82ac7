"""Machines with several disks through the `snapfim` command: `snapfim scan d0 d1 --machine`,
and a local provider sub-directory scanned by `snapfim cycle` (real processes, real images,
SQLite in a temp dir); the coverage report lists every disk, then its volumes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from tests.imaging.ext4 import debugfs, linux_image, overwrite_in_place
from tests.imaging.linux_disk import ROOT_MB
from tests.imaging.multidisk import OPT_FILES, OPT_MB, OPT_UUID, ext4_opt_machine
from tests.imaging.tools import copy_image
from tests.test_cli import one_line_error, run
from tests.test_cli_commands import snapfim


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def events(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """ConfigurationChange records as (category, path, fields changed, {field: (before,
    after)}), sorted by path."""
    out = []
    for e in records:
        values = {f: (e.get("Previous" + f), e.get(f)) for f in e["FieldsChanged"]}
        out.append((e["ChangeCategory"], e["FileSystemPath"], e["FieldsChanged"], values))
    return sorted(out, key=lambda e: e[1])


def test_scan_of_two_images_is_one_machine(tmp_path: Path) -> None:
    disks = ext4_opt_machine(tmp_path / "build")
    run(tmp_path, "policy", "add", "/opt/app")
    d0, d1 = str(disks.disk0), str(disks.disk1)
    first = json.loads(run(tmp_path, "scan", d0, d1, "--machine", "db-01", "--json").stdout)
    assert (first["status"], first["baseline"]) == ("succeeded", True)
    assert [(d["name"], d["volumes"]) for d in first["coverage"]["disks"]] == [
        (d0, ["p1"]), (d1, ["d1:p1"])]

    debugfs(disks.disk0, "sif /etc/crontab mode 0100600", offset=disks.offset0)
    old = OPT_FILES["app/app.conf"][0]
    new = old.replace(b"workers=4", b"workers=9")
    overwrite_in_place(disks.disk1, "/app/app.conf", new, disks.offset1)
    proc = run(tmp_path, "scan", d0, d1, "-m", "db-01", "--json")
    second = json.loads(proc.stdout)
    assert (second["status"], second["modified"], second["added"], second["removed"]) == (
        "succeeded", 2, 0, 0)
    assert events(second["events"]) == [
        ("Modified", "/etc/crontab", ["Mode"], {"Mode": ("0644", "0600")}),
        ("Modified", "/opt/app/app.conf", ["FileContentChecksum"],
         {"FileContentChecksum": (sha(old), sha(new))})]

    # the text report: each disk, then its volumes
    text = run(tmp_path, "scan", d0, d1, "-m", "db-01").stdout.splitlines()
    disk0_line = next(i for i, line in enumerate(text) if line.startswith("disk 0: "))
    assert text[disk0_line] == f"disk 0: {d0} ({ROOT_MB + 2}.0 MiB, partition table: gpt)"
    assert text[disk0_line + 1].startswith("  p1: ext4, 24.0 MiB, scanned mounted at /")
    assert text[disk0_line + 2] == f"disk 1: {d1} ({OPT_MB + 2}.0 MiB, partition table: gpt)"
    assert text[disk0_line + 3].startswith(
        f"  d1:p1: ext4, {OPT_MB}.0 MiB, scanned mounted at /opt")
    detailed = run(tmp_path, "scans", "-m", "db-01", "--coverage").stdout
    assert f"disk 1: {d1}" in detailed and f"uuid {OPT_UUID}" in detailed

    # disk 1 left out: partial, /opt kept (nothing removed)
    proc = run(tmp_path, "scan", d0, "-m", "db-01", "--json", ok=False)
    assert proc.returncode == 3, proc.stderr
    partial = json.loads(proc.stdout)
    assert (partial["status"], partial["events"]) == ("partial", [])
    assert list(partial["coverage"]["unreadable"]) == ["/opt"]


def test_scan_of_two_images_needs_both_to_exist(tmp_path: Path) -> None:
    disks = ext4_opt_machine(tmp_path / "build")
    proc = run(tmp_path, "scan", str(disks.disk0), str(tmp_path / "nope.img"), "-m", "db-01",
               ok=False)
    one_line_error(proc, "nope.img")
    assert run(tmp_path, "scans", "--json").stdout.strip() in ("[]", "")


def test_cycle_scans_a_sub_directory_as_one_machine(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "db-01").mkdir(parents=True)
    disks = ext4_opt_machine(tmp_path / "build")
    copy_image(disks.disk0, images / "db-01" / "a-root.img")
    copy_image(disks.disk1, images / "db-01" / "b-opt.img")
    copy_image(linux_image(tmp_path / "single"), images / "web.img")
    run(tmp_path, "account", "add", "local", "--name", "lab", "--images", str(images))
    run(tmp_path, "policy", "add", "/opt/app", "--account", "lab")
    fast = {"SNAPFIM_CADENCE_HOURS": str(1 / 3600)}  # a machine is due again each second
    first = snapfim(tmp_path, "cycle", env=fast)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "db-01: succeeded (baseline)" in first.stdout
    assert "web: succeeded (baseline)" in first.stdout
    machines = {m["machine"]: m for m in json.loads(run(tmp_path, "machines", "--json").stdout)}
    assert set(machines) == {"db-01", "web"}

    scans = json.loads(run(tmp_path, "scans", "-m", "db-01", "--json").stdout)
    coverage = scans[0]["coverage"]
    root, opt = (str((images / "db-01" / n).resolve()) for n in ("a-root.img", "b-opt.img"))
    assert [(d["name"], d["status"], d["volumes"]) for d in coverage["disks"]] == [
        (root, "read", ["p1"]), (opt, "read", ["d1:p1"])]
    assert [(v["volume"], v["mountpoint"]) for v in coverage["volumes"]] == [
        ("p1", "/"), ("d1:p1", "/opt")]
    assert [d["path"] for d in scans[0]["source"]["disks"]] == [root, opt]
    web = json.loads(run(tmp_path, "scans", "-m", "web", "--json").stdout)[0]
    assert [d["volumes"] for d in web["coverage"]["disks"]] == [["disk"]]
    assert web["source"]["kind"] == "local"

    changed = copy_image(images / "db-01" / "b-opt.img", tmp_path / "changed.img")
    debugfs(changed, "sif /app/run.sh uid 1000", offset=disks.offset1)
    os.replace(changed, images / "db-01" / "b-opt.img")
    time.sleep(1.1)  # let the next one-second slot begin (no timing is asserted)
    second = snapfim(tmp_path, "cycle", env=fast)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "db-01: succeeded (0 added, 0 removed, 1 modified)" in second.stdout
    lines = run(tmp_path, "changes", "-m", "db-01", "--json").stdout.splitlines()
    assert events([json.loads(line) for line in lines]) == [
        ("Modified", "/opt/app/run.sh", ["OwnerId"], {"OwnerId": (0, 1000)})]
