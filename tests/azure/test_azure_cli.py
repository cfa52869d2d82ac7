"""`snapfim scan "https://...?<SAS>" --machine vm1` against Azurite over TLS, end to end: a
real ext4 image as a managed disk's snapshot (a page blob holding a fixed VHD), a change, an
incremental rescan with --parent whose events equal a full rescan's, and the SAS signature
in no record, output or error."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.aws.helpers import data_heavy_image
from tests.azure.azurite import AzureBlobs, assert_no_signature, signature_forms
from tests.imaging.ext4 import debugfs, e2fsck_ok, overwrite_in_place
from tests.imaging.tools import copy_image


def snapfim(data: Path, *args: str, ok: bool = True, workers: int = 1
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(data), "SNAPFIM_HASH_WORKERS": str(workers),
           "COLUMNS": "250"}
    env.pop("SNAPFIM_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "scanner", *args], env=env, text=True,
                          capture_output=True, timeout=300)
    assert "sig=" not in proc.stdout + proc.stderr
    assert_no_signature(proc.stdout + proc.stderr, *(a for a in args if signature_forms(a)))
    assert "Traceback" not in proc.stderr
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def scan_json(data: Path, *args: str, workers: int = 1) -> dict[str, Any]:
    return dict(json.loads(snapfim(data, "scan", *args, "--json", workers=workers).stdout))


def events_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The events without what differs between two scans of the same change (ids, times)."""
    drop = {"TimeGenerated", "Computer", "PreviousScanId", "WindowStart", "WindowEnd",
            "ScanId", "EventId"}
    return [{k: v for k, v in e.items() if k not in drop} for e in result["events"]]


def stored_rows(data: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data / "snapfim.db") as db:
        return [(str(source), str(coverage))
                for source, coverage in db.execute("SELECT source, coverage FROM scan")]


def test_scan_sas_urls_full_then_incremental_equals_full(blobs: AzureBlobs,
                                                         tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    changed = copy_image(image, tmp_path / "changed.img")
    overwrite_in_place(changed, "/etc/crontab", b"/etc/CRONTAB\n")
    debugfs(changed, "sif /usr/sbin/sshd uid 1000")
    assert e2fsck_ok(changed)
    lineage = blobs.unique("osdisk")
    first_name, second_name = blobs.unique("snap"), blobs.unique("snap")
    first = blobs.upload_disk(first_name, image, lineage=lineage)
    second = blobs.upload_disk(second_name, changed, lineage=lineage)
    data = tmp_path / "data"

    base = scan_json(data, first, "--machine", "vm1", workers=2)
    assert (base["status"], base["baseline"], base["events"]) == ("succeeded", True, [])
    assert base["coverage"]["source"] == first.split("?")[0]
    full_reads = blobs.state.block_reads[blobs.blob_path(first_name)]

    incremental = scan_json(data, second, "--machine", "vm1", "--parent", first, workers=2)
    assert incremental["status"] == "succeeded"
    events = [(e["ChangeCategory"], e["FileSystemPath"], e["FieldsChanged"])
              for e in incremental["events"]]
    assert events == [("Modified", "/etc/crontab", ["FileContentChecksum"]),
                      ("Modified", "/usr/sbin/sshd", ["OwnerId"])]
    crontab, sshd = incremental["events"]
    assert (sshd["PreviousOwnerId"], sshd["OwnerId"]) == (0, 1000)
    assert (crontab["PreviousFileContentChecksum"], crontab["FileContentChecksum"]) == (
        hashlib.sha256(b"/etc/crontab\n").hexdigest(),
        hashlib.sha256(b"/etc/CRONTAB\n").hexdigest())
    assert [op for op, _ in blobs.state.requests].count("diff") >= 1
    assert incremental["coverage"]["files_hashed"] < base["coverage"]["files_hashed"] // 2
    incremental_reads = blobs.state.block_reads[blobs.blob_path(second_name)]
    assert incremental_reads < full_reads

    # the same two snapshots scanned in full by another machine: the same events
    scan_json(data, first, "--machine", "vm2")
    full = scan_json(data, second, "--machine", "vm2")
    assert full["coverage"]["files_hashed"] == base["coverage"]["files_hashed"]
    assert events_of(full) == events_of(incremental)

    rows = stored_rows(data)
    assert len(rows) == 4
    for source, coverage in rows:
        assert "sig=" not in source and "sig=" not in coverage
        assert_no_signature(source + coverage, first, second)
        assert json.loads(source)["kind"] == "azure-sas"
        assert "url" not in json.loads(source)


def test_an_expired_sas_is_one_line_without_the_signature(blobs: AzureBlobs,
                                                          tmp_path: Path) -> None:
    name = blobs.unique()
    blobs.upload_disk(name, b"\1" * 8192)
    expired = blobs.sas_url(name, expiry=timedelta(hours=-1))
    proc = snapfim(tmp_path / "data", "scan", expired, "--machine", "vm1", ok=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"snapfim: error: reading the properties of {expired.split('?')[0]}: HTTP 403 "
        "AuthorizationFailure (the SAS was refused: expired, revoked or without read "
        "permission)"]


def test_a_parent_of_another_disk_means_a_full_scan(blobs: AzureBlobs, tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    other = blobs.upload_disk(blobs.unique("other"), image)
    current = blobs.upload_disk(blobs.unique("current"), image)
    data = tmp_path / "data"
    scan_json(data, other, "--machine", "vm1")
    proc = snapfim(data, "scan", current, "--machine", "vm1", "--parent", other, "--json")
    assert (f"{other.split('?')[0]} is not of the same volume's lineage as any disk: "
            "full scan") in proc.stderr
    result = json.loads(proc.stdout)
    assert (result["status"], result["events"]) == ("succeeded", [])
    assert result["coverage"]["files_hashed"] == 40


def test_a_url_that_is_no_blob_is_one_line(blobs: AzureBlobs, tmp_path: Path) -> None:
    proc = snapfim(tmp_path / "data", "scan", "https://127.0.0.1:9/only-a-host?sig=Zm9yZ2VkLXNpZ25hdHVyZS1ub3QtcmVhbA%3D%3D",
                   "--machine", "vm1", ok=False)
    assert proc.stderr.strip().splitlines() == [
        "snapfim: error: https://127.0.0.1:9/only-a-host: expected "
        "https://ACCOUNT.blob.../CONTAINER/BLOB?SAS (a SAS is only ever sent over https)"]


def test_an_expired_parent_sas_is_one_line_without_the_signature(blobs: AzureBlobs,
                                                                 tmp_path: Path) -> None:
    lineage = blobs.unique("osdisk")
    parent, current = blobs.unique("snap"), blobs.unique("snap")
    blobs.upload_disk(parent, b"\1" * 8192, lineage=lineage)
    current_url = blobs.upload_disk(current, b"\2" * 8192, lineage=lineage)
    expired = blobs.sas_url(parent, expiry=timedelta(hours=-1))
    proc = snapfim(tmp_path / "data", "scan", current_url, "--machine", "vm1", "--parent",
                   expired, ok=False)
    assert proc.returncode != 0
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"snapfim: error: comparing {current_url.split('?')[0]} since "
                           f"{expired.split('?')[0]} (bytes 0-8191): HTTP 403")


def test_a_parent_snapshot_other_than_the_one_last_read_means_a_full_scan(
        blobs: AzureBlobs, tmp_path: Path) -> None:
    image = data_heavy_image(tmp_path / "build")
    changed = copy_image(image, tmp_path / "changed.img")
    overwrite_in_place(changed, "/etc/crontab", b"/etc/CRONTAB\n")
    assert e2fsck_ok(changed)
    name = blobs.unique("os")
    blobs.upload_disk(name, image)
    t0 = blobs.snapshot(name)
    blobs.rewrite_disk(name, changed)  # written between T0 and T1
    t1 = blobs.snapshot(name)
    t2 = blobs.snapshot(name)          # nothing written since T1
    urls = [blobs.snapshot_url(name, t) for t in (t0, t1, t2)]
    data = tmp_path / "data"
    base = scan_json(data, urls[0], "--machine", "vm1")
    # the last scan read T0, not T1: T1->T2 (no change) must not be applied to T0's state
    later = scan_json(data, urls[2], "--machine", "vm1", "--parent", urls[1])
    assert [(e["ChangeCategory"], e["FileSystemPath"], e["FieldsChanged"])
            for e in later["events"]] == [("Modified", "/etc/crontab", ["FileContentChecksum"])]
    assert later["coverage"]["files_hashed"] == base["coverage"]["files_hashed"] == 40
    assert base["coverage"]["source"].endswith(f"/{name}?snapshot={t0}")
    for source, coverage in stored_rows(data):
        assert_no_signature(source + coverage, *urls)
