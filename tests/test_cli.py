"""The `snapfim` command as a user runs it: real process, real images, SQLite in a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.demo import PART_START, SECTOR, build_demo_images


def run(tmp_path: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_HASH_WORKERS": "1"}
    env.pop("SNAPFIM_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "scanner", *args], env=env, text=True,
                          capture_output=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str], contains: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("snapfim: error: ")
    assert contains in lines[0], lines[0]


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_demo_images(tmp_path_factory.mktemp("demo"))


def test_demo_reports_the_intrusion_and_changes_json_has_exact_events(tmp_path: Path) -> None:
    proc = run(tmp_path, "demo", "--workdir", str(tmp_path / "demo"))
    assert "baseline recorded" in proc.stdout
    assert "5 changes — 1 added, 1 removed, 3 modified" in proc.stdout
    records = [json.loads(line) for line in
               run(tmp_path, "changes", "--machine", "demo-web-01", "--json").stdout.splitlines()]
    summary = [(r["ChangeCategory"], r["FileSystemPath"], r["FieldsChanged"]) for r in records]
    assert summary == [
        ("Added", "/etc/cron.hourly/backdoor", []),
        ("Modified", "/etc/sysctl.conf",
         ["FileContentChecksum", "DateModified", "DateChanged", "DateCreated"]),
        ("Modified", "/usr/bin/find", ["Mode", "DateChanged"]),
        ("Modified", "/usr/bin/sh",
         ["Size", "LinkTarget", "DateModified", "DateChanged", "DateCreated"]),
        ("Removed", "/usr/sbin/auditd", []),
    ]
    find = records[2]
    assert (find["PreviousMode"], find["Mode"]) == ("0755", "4755")
    sh = records[3]
    assert (sh["PreviousLinkTarget"], sh["LinkTarget"]) == ("bash", "/tmp/.x/sh")
    assert sh["DateModified"] == "2026-11-20T03:14:15Z"
    assert records[0]["Computer"] == "demo-web-01" and records[0]["FileType"] == "file"
    # filters
    modified = run(tmp_path, "changes", "--category", "modified", "--json").stdout.splitlines()
    assert len(modified) == 3
    assert run(tmp_path, "changes", "--since", "1d", "--json").stdout.count("\n") == 5
    assert run(tmp_path, "changes", "--type", "registry").stdout.strip() == "no changes"
    ocsf = [json.loads(line) for line in run(tmp_path, "changes", "--json", "--format",
                                             "ocsf").stdout.splitlines()]
    assert [(o["class_uid"], o["activity_id"], o["file"]["path"]) for o in ocsf] == [
        (1001, 1, "/etc/cron.hourly/backdoor"), (1001, 3, "/etc/sysctl.conf"),
        (1001, 3, "/usr/bin/find"), (1001, 3, "/usr/bin/sh"), (1001, 4, "/usr/sbin/auditd")]
    assert ocsf[2]["severity_id"] == 3  # setuid added


def test_rescanning_the_same_image_reports_nothing(tmp_path: Path,
                                                   demo_images: tuple[Path, Path]) -> None:
    before, _ = demo_images
    first = run(tmp_path, "scan", str(before), "--machine", "web-01")
    assert "baseline recorded" in first.stdout
    second = run(tmp_path, "scan", str(before), "--machine", "web-01", "--json")
    result = json.loads(second.stdout)
    assert (result["baseline"], result["status"], result["events"]) == (False, "succeeded", [])
    assert result["coverage"]["volumes"][0]["filesystem"] == "ext4"
    assert result["coverage"]["volumes"][0]["mountpoint"] == "/"
    assert result["coverage"]["partition_table"] == "gpt"


def test_missing_file(tmp_path: Path) -> None:
    one_line_error(run(tmp_path, "scan", str(tmp_path / "nope.img"), "-m", "x", ok=False),
                   "no such file")


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    one_line_error(run(tmp_path, "scan", str(tmp_path), "-m", "x", ok=False), "is a directory")


def test_text_file_is_not_a_disk_image(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a disk\n" * 100)
    one_line_error(run(tmp_path, "scan", str(text), "-m", "x", ok=False),
                   "no readable filesystem")


def test_qcow2_is_refused_with_advice(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    image.write_bytes(b"QFI\xfb" + bytes(4092))
    one_line_error(run(tmp_path, "scan", str(image), "-m", "x", ok=False), "qemu-img convert")


def test_unsupported_filesystem_is_named(tmp_path: Path) -> None:
    image = tmp_path / "btrfs.img"
    with open(image, "wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(0x10040)
        handle.write(b"_BHRfS_M")  # a btrfs superblock's magic
    one_line_error(run(tmp_path, "scan", str(image), "-m", "x", ok=False),
                   "btrfs: filesystem not supported yet")


def test_bad_images_store_nothing_and_keep_previous_state(tmp_path: Path,
                                                          demo_images: tuple[Path, Path]) -> None:
    before, _ = demo_images
    run(tmp_path, "scan", str(before), "-m", "web-01")
    truncated = tmp_path / "truncated.img"
    shutil.copyfile(before, truncated)
    os.truncate(truncated, before.stat().st_size // 2)
    one_line_error(run(tmp_path, "scan", str(truncated), "-m", "web-01", ok=False), "truncated")
    corrupt = tmp_path / "corrupt.img"
    shutil.copyfile(before, corrupt)
    with open(corrupt, "r+b") as handle:  # wipe the primary ext4 superblock
        handle.seek(PART_START * SECTOR + 1024)
        handle.write(bytes(1024))
    one_line_error(run(tmp_path, "scan", str(corrupt), "-m", "web-01", ok=False),
                   "no readable filesystem")
    scans = run(tmp_path, "scans", "-m", "web-01").stdout.strip().splitlines()
    assert len(scans) == 2 and scans[1].split()[-1] == "baseline"  # a header and one scan
    again = json.loads(run(tmp_path, "scan", str(before), "-m", "web-01", "--json").stdout)
    assert again["events"] == [] and again["baseline"] is False


def test_policy_commands(tmp_path: Path) -> None:
    shown = json.loads(run(tmp_path, "policy", "show", "--json").stdout)
    assert {e["name"] for e in shown if e["kind"] == "linux_file"} >= {"/etc/*.conf", "/usr/bin"}
    assert "added app" in run(tmp_path, "policy", "add", "/srv/app", "--name", "app", "--depth",
                               "2", "--exclude", "/srv/app/cache").stdout
    entry = next(e for e in json.loads(run(tmp_path, "policy", "show", "--json").stdout)
                 if e["name"] == "app")
    assert entry == {"name": "app", "kind": "linux_file", "path": "/srv/app", "depth": 2,
                     "excludes": ["/srv/app/cache"], "values": [], "enabled": True,
                     "source": "custom", "content": "default"}
    run(tmp_path, "policy", "disable", "/usr/bin")
    state = {e["name"]: e["enabled"] for e in json.loads(
        run(tmp_path, "policy", "show", "--json").stdout)}
    assert state["/usr/bin"] is False and state["app"] is True
    run(tmp_path, "policy", "enable", "/usr/bin")
    one_line_error(run(tmp_path, "policy", "remove", "/usr/bin", ok=False), "disable it instead")
    run(tmp_path, "policy", "remove", "app")
    one_line_error(run(tmp_path, "policy", "disable", "app", ok=False), "no monitored entity")
    one_line_error(run(tmp_path, "policy", "add", "/etc/*/x.conf", ok=False),
                   "last path segment only")
    run(tmp_path, "policy", "add", "/srv/app")
    one_line_error(run(tmp_path, "policy", "add", "/srv/app", ok=False), "exists already")


def test_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(tmp_path, "changes", "--since", "yesterday", ok=False)
    one_line_error(proc, "--since")
    assert proc.returncode == 2


def test_windows_disk_registry_changes_filtered_by_type(tmp_path: Path) -> None:
    from scanner.registry.hive import REG_SZ
    from tests.imaging.hives import sz
    from tests.imaging.ntfs import File
    from tests.imaging.windows import (
        RUN,
        SOFTWARE,
        WINDOWS_KEY,
        base_layout,
        build_windows_image,
        copy_layout,
    )

    base = base_layout()
    first = build_windows_image(tmp_path / "win1.img", base)
    changed = copy_layout(base)
    changed.hives[SOFTWARE].value(RUN, "Updater", REG_SZ, sz("C:\\Users\\Public\\u.exe"))
    changed.hives[SOFTWARE].value(WINDOWS_KEY, "AppInit_DLLs", REG_SZ, sz("evil.dll"))
    win_ini = changed.files["Windows/win.ini"]
    assert isinstance(win_ini, File)
    changed.files["Windows/win.ini"] = File(win_ini.data, streams={"x": b"1"},
                                            times=win_ini.times, security=win_ini.security,
                                            dos_attributes=win_ini.dos_attributes)
    second = build_windows_image(tmp_path / "win2.img", changed)
    run(tmp_path, "scan", str(first), "--machine", "dc-01")
    proc = run(tmp_path, "scan", str(second), "--machine", "dc-01")
    assert "3 changes — 2 added, 0 removed, 1 modified" in proc.stdout
    records = [json.loads(line) for line in run(
        tmp_path, "changes", "--type", "registry", "--json").stdout.splitlines()]
    sw = "HKLM\\SOFTWARE\\"
    assert [(r["ChangeCategory"], r["RegistryKey"], r["ValueName"], r["FieldsChanged"])
            for r in records] == [
        ("Modified", sw + WINDOWS_KEY, "AppInit_DLLs", ["ValueSize", "ValueData"]),
        ("Added", sw + RUN, "Updater", [])]
    assert (records[0]["PreviousValueData"], records[0]["ValueData"]) == ("", "evil.dll")
    assert (records[1]["ValueType"], records[1]["ValueData"]) == (
        "REG_SZ", "C:\\Users\\Public\\u.exe")
    files = [json.loads(line) for line in run(
        tmp_path, "changes", "--type", "file", "--json").stdout.splitlines()]
    assert [(r["ChangeCategory"], r["FileSystemPath"]) for r in files] == [
        ("Added", "C:\\Windows\\win.ini:x")]
    text = run(tmp_path, "changes", "--type", "registry").stdout
    assert "value 'AppInit_DLLs'" in text and "data:  -> evil.dll" in text
