"""`snapfim scan` delivers after its commit without ever failing because of a sink;
`snapfim deliver` retries, shows the backlog and forgets a sink. Real processes, SQLite."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.tools import copy_image
from tests.receivers import HttpsReceiver, make_ca_and_server_cert, records


def snapfim(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SNAPFIM_DATA_DIR": str(tmp_path / "data"), "SNAPFIM_HASH_WORKERS": "1",
            **env}
    full.pop("SNAPFIM_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "scanner", *args], env=full, text=True,
                          capture_output=True, timeout=120)


def test_scan_succeeds_with_the_webhook_down_and_deliver_sends_it_later(tmp_path: Path) -> None:
    image = copy_image(linux_image(tmp_path / "build"), tmp_path / "web-01.img")
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = f"https://127.0.0.1:{closed.getsockname()[1]}/hook"
    closed.close()
    env = {"SNAPFIM_WEBHOOK_URL": dead, "SNAPFIM_WEBHOOK_CA_BUNDLE": str(ca),
           "SNAPFIM_DELIVERY_TIMEOUT": "2", "SNAPFIM_EVENTS_JSONL": str(tmp_path / "e.jsonl")}
    assert snapfim(tmp_path, env, "scan", str(image), "--machine", "web-01").returncode == 0
    debugfs(image, "sif /usr/bin/tool mode 0104755")
    scanned = snapfim(tmp_path, env, "scan", str(image), "--machine", "web-01")
    assert scanned.returncode == 0, scanned.stderr           # a failing sink never fails a scan
    assert "1 changes — 0 added, 0 removed, 1 modified" in scanned.stdout
    assert "delivery to webhook failed (1 records pending" in scanned.stderr
    assert "Traceback" not in scanned.stderr
    jsonl = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [(x["ChangeCategory"], x["FileSystemPath"]) for x in jsonl] == [
        ("Modified", "/usr/bin/tool")]                      # the other sink is not held up
    status = snapfim(tmp_path, env, "deliver", "--status", "--json")
    by_sink = {s["sink"]: s for s in map(json.loads, status.stdout.splitlines())}
    assert (by_sink["webhook"]["pending"], by_sink["webhook"]["delivered"],
            by_sink["webhook"]["attempts"]) == (1, 0, 1)
    assert "Connection refused" in by_sink["webhook"]["last_error"]
    assert (by_sink["jsonl"]["pending"], by_sink["jsonl"]["delivered"]) == (0, 1)
    still_down = snapfim(tmp_path, env, "deliver")
    assert still_down.returncode == 1
    assert "webhook: 0 delivered, 1 pending" in still_down.stdout
    receiver = HttpsReceiver(cert, key)
    try:
        up = snapfim(tmp_path, {**env, "SNAPFIM_WEBHOOK_URL": receiver.url}, "deliver")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "webhook: 1 delivered, 0 pending" in up.stdout
        assert "jsonl: 0 delivered, 0 pending" in up.stdout
        assert [(x["ChangeCategory"], x["FileSystemPath"], x["PreviousMode"], x["Mode"])
                for x in records(receiver.requests)] == [
            ("Modified", "/usr/bin/tool", "0755", "4755")]
    finally:
        receiver.close()
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 1   # never twice
    forgot = snapfim(tmp_path, env, "deliver", "--forget", "webhook")
    assert forgot.stdout.strip() == "webhook: unregistered, 1 queued records dropped"
    unknown = snapfim(tmp_path, env, "deliver", "--forget", "pager")
    assert unknown.returncode == 2                            # a usage error
    assert unknown.stderr.strip() == ("snapfim: error: --forget 'pager': no such sink "
                                      "(registered: jsonl)")
    bad = snapfim(tmp_path, {"SNAPFIM_WEBHOOK_URL": "http://192.0.2.1/x"}, "deliver")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("snapfim: error: SNAPFIM_WEBHOOK_URL "
                                         "'http://192.0.2.1/x': plain http is only allowed")


def test_scan_appends_its_events_to_the_events_file_like_the_fleet(tmp_path: Path) -> None:
    image = copy_image(linux_image(tmp_path / "build"), tmp_path / "web-01.img")
    events = tmp_path / "events.jsonl"
    env = {"SNAPFIM_EVENTS_JSONL": str(events)}
    assert snapfim(tmp_path, env, "scan", str(image), "--machine", "web-01").returncode == 0
    assert not events.exists()                              # a baseline has no events
    debugfs(image, "sif /usr/bin/tool mode 0104755", "rm /etc/crontab",
            "sif /etc/a.conf uid 1000")
    scanned = snapfim(tmp_path, env, "scan", str(image), "--machine", "web-01", "--json")
    assert scanned.returncode == 0, scanned.stderr
    result = json.loads(scanned.stdout)
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert lines == result["events"]                        # the very records it reports
    assert [(x["Computer"], x["ScanId"], x["ChangeCategory"], x["FileSystemPath"],
             x["FieldsChanged"]) for x in lines] == [
        ("web-01", result["scan_id"], "Modified", "/etc/a.conf", ["OwnerId"]),
        ("web-01", result["scan_id"], "Removed", "/etc/crontab", []),
        ("web-01", result["scan_id"], "Modified", "/usr/bin/tool", ["Mode"])]
    assert (lines[0]["PreviousOwnerId"], lines[0]["OwnerId"]) == (0, 1000)
    assert (lines[2]["PreviousMode"], lines[2]["Mode"]) == ("0755", "4755")
    assert "Mode" not in lines[1] and lines[1]["PreviousMode"] == "0644"
    status = snapfim(tmp_path, env, "deliver", "--status", "--json")
    assert [(s["sink"], s["pending"], s["delivered"]) for s in
            map(json.loads, status.stdout.splitlines())] == [("jsonl", 0, 3)]
    again = snapfim(tmp_path, env, "scan", str(image), "--machine", "web-01")
    assert again.returncode == 0 and "0 changes" in again.stdout
    assert len(events.read_text().splitlines()) == 3        # nothing appended twice
