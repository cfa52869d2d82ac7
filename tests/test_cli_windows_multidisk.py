"""A Windows machine with a data disk through the `snapfim` command: `snapfim scan d0 d1
--machine` names the data volume D: (from SYSTEM\\MountedDevices), reports a change on each
disk, notes the USB stick's E:, and keeps D: when its disk is left out (real processes, real
images, SQLite in a temp dir)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.imaging.ntfs import File
from tests.imaging.windows_multidisk import (
    CONFIG_INI,
    DATA_PART_GUID,
    USB_DEVICE,
    base_machine,
    build_machine,
    copy_machine,
)
from tests.test_cli import run
from tests.test_cli_multidisk import events


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_windows_data_disk_is_d(tmp_path: Path) -> None:
    machine = base_machine("gpt")
    d0, d1 = (str(p) for p in build_machine(tmp_path / "one", machine))
    run(tmp_path, "policy", "add", "D:\\app\\config.ini")
    first: dict[str, Any] = json.loads(
        run(tmp_path, "scan", d0, d1, "--machine", "win-01", "--json").stdout)
    assert (first["status"], first["baseline"]) == ("succeeded", True)
    assert [(v["volume"], v["mountpoint"]) for v in first["coverage"]["volumes"]] == [
        ("p1", None), ("p2", "C:\\"), ("d1:p1", "D:\\")]

    changed = copy_machine(machine)
    new = CONFIG_INI.replace(b"5432", b"6543")
    entry = changed.data_files["app/config.ini"]
    assert isinstance(entry, File)
    changed.data_files["app/config.ini"] = replace(entry, data=new)  # same size: hash only
    c0, c1 = (str(p) for p in build_machine(tmp_path / "two", changed))
    second = json.loads(run(tmp_path, "scan", c0, c1, "-m", "win-01", "--json").stdout)
    assert (second["status"], second["modified"], second["added"], second["removed"]) == (
        "succeeded", 1, 0, 0)
    assert events(second["events"]) == [
        ("Modified", "D:\\app\\config.ini", ["FileContentChecksum"],
         {"FileContentChecksum": (sha(CONFIG_INI), sha(new))})]

    text = run(tmp_path, "scan", c0, c1, "-m", "win-01").stdout.splitlines()
    assert any(line.startswith("  d1:p1: ntfs, 16.0 MiB, scanned mounted at D:\\")
               for line in text)
    assert (f"  note: drive E: not scanned: a device, not a partition of a disk "
            f"({USB_DEVICE[:80]}...)") in text

    proc = run(tmp_path, "scan", c0, "-m", "win-01", "--json", ok=False)
    assert proc.returncode == 3, proc.stderr
    partial = json.loads(proc.stdout)
    assert (partial["status"], partial["events"]) == ("partial", [])
    assert partial["coverage"]["unreadable"] == {
        "D:\\app\\config.ini": f"drive D: not scanned: GPT partition {{{DATA_PART_GUID}}} "
                               "is on none of the disks scanned"}
