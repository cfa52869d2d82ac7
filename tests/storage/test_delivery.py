"""Events and alerts leave the box: real syslog listeners (UDP, TCP), a real HTTPS server
behind a private CA, the JSON-lines file; SQLite and PostgreSQL. Nothing is marked delivered
before its sink accepted it, nothing is lost or sent twice after."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from scanner import __version__, cycle
from scanner.emitters.delivery import deliver
from scanner.emitters.ocsf import ocsf_record
from scanner.emitters.records import event_record
from scanner.emitters.settings import AlertSettings, DeliveryConfig, parse_syslog_url
from scanner.emitters.webhook import signature
from scanner.pipeline import ScanOptions
from scanner.runner import run_scan
from scanner.settings import FleetSettings
from scanner.sources.local import open_local
from scanner.storage import fleet
from scanner.storage.db import make_engine
from scanner.storage.repository import Repository
from scanner.storage.tables import alert, delivery, scan
from tests.imaging.ext4 import debugfs, linux_image
from tests.imaging.tools import copy_image
from tests.ocsf_schema import validate_ocsf
from tests.receivers import HttpsReceiver, Request, SyslogListener, make_ca_and_server_cert

LOCAL0 = 16


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return linux_image(tmp_path_factory.mktemp("delivery"))


def scan_twice(repo: Repository, base: Path, workdir: Path,
               config: DeliveryConfig) -> list[dict[str, Any]]:
    """A baseline, then a scan that finds three changes; both committed through the CLI's
    path (run_scan), which delivers after each commit. Returns the events, in id order."""
    image = copy_image(base, workdir / "web-01.img")
    for step in range(2):
        if step:
            debugfs(image, "sif /usr/bin/tool mode 0104755", "rm /etc/crontab",
                    "sif /etc/a.conf uid 1000")
        with open_local(image) as source:
            run_scan(repo, source, "web-01", ScanOptions(1), "web-01.img", delivery=config)
    rows = repo.changes(machine_name="web-01")
    assert [(r["category"], r["path"], r["fields_changed"]) for r in rows] == [
        ("modified", "/etc/a.conf", ["uid"]), ("removed", "/etc/crontab", []),
        ("modified", "/usr/bin/tool", ["mode"])]
    return rows


def deliveries(repo: Repository) -> list[dict[str, Any]]:
    with repo.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(select(delivery).order_by(delivery.c.id))]


# -- syslog -----------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_syslog_receives_rfc5424_messages(repository: Repository, base_image: Path,
                                          tmp_path: Path, transport: str) -> None:
    listener = SyslogListener(transport)
    try:
        config = DeliveryConfig(alerts=AlertSettings(syslog=parse_syslog_url(listener.url),
                                                     syslog_facility=LOCAL0, timeout=5))
        rows = scan_twice(repository, base_image, tmp_path, config)
        messages = listener.messages(3)
        assert len(messages) == 3
        for message, row in zip(messages, rows, strict=True):
            setuid = row["path"] == "/usr/bin/tool"           # warning (4), else notice (5)
            assert message.pri == LOCAL0 * 8 + (4 if setuid else 5)
            assert message.version == 1
            assert message.timestamp == row["detected_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            assert message.hostname == socket.gethostname()
            assert (message.app, message.procid, message.msgid) == (
                "snapfim", "-", row["category"])
            assert message.sd == {
                "origin": {"software": "snapfim", "swVersion": __version__},
                "snapfim@32473": {"id": str(row["id"]), "machine": "web-01",
                                  "account": "cli", "scan": str(row["scan_id"]),
                                  "entity": "file", "category": row["category"],
                                  "path": row["path"]}}
            assert message.json == event_record(row)
        assert [(d["sink"], d["event_id"], d["attempts"], d["delivered_at"] is not None)
                for d in deliveries(repository)] == [("syslog", r["id"], 1, True) for r in rows]
        assert deliver(repository, config).delivered == 0          # nothing is sent twice
        assert len(listener.messages(4, timeout=0.3)) == 3
    finally:
        listener.close()


def test_syslog_down_keeps_events_pending_then_delivers_them(
        repository: Repository, base_image: Path, tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                                     # nothing listens there: refused
    down = DeliveryConfig(alerts=AlertSettings(syslog=parse_syslog_url(
        f"tcp://127.0.0.1:{port}"), timeout=2))
    rows = scan_twice(repository, base_image, tmp_path, down)   # the scan still succeeds
    pending = deliveries(repository)
    assert [(d["event_id"], d["attempts"], d["delivered_at"]) for d in pending] == [
        (r["id"], 1, None) for r in rows]
    assert "Connection refused" in (pending[0]["last_error"] or "")
    listener = SyslogListener("tcp")
    try:
        up = DeliveryConfig(alerts=AlertSettings(syslog=parse_syslog_url(listener.url)))
        assert deliver(repository, up, respect_backoff=False).delivered == 3
        assert [m.json["FileSystemPath"] for m in listener.messages(3)] == [
            r["path"] for r in rows]
    finally:
        listener.close()


# -- webhook ----------------------------------------------------------------------------------
def test_webhook_retries_after_500_and_timeout_then_delivers_exactly_once(
        repository: Repository, db_url: str, base_image: Path, tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    delivered_at_arrival: list[int] = []

    def look(request: Request) -> None:  # what the database says while the sink is answering
        delivered_at_arrival.append(sum(d["delivered_at"] is not None
                                        for d in deliveries(repository)))

    receiver = HttpsReceiver(cert, key, script=[500, ("hang", 3), 200, 200], on_request=look)
    env = {"SNAPFIM_WEBHOOK_URL": receiver.url, "SNAPFIM_WEBHOOK_CA_BUNDLE": str(ca),
           "SNAPFIM_WEBHOOK_BEARER_ENV": "HOOK_TOKEN", "HOOK_TOKEN": "t0ken",
           "SNAPFIM_WEBHOOK_HMAC_ENV": "HOOK_KEY", "HOOK_KEY": "k3y",
           "SNAPFIM_DELIVERY_TIMEOUT": "1", "SNAPFIM_DELIVERY_BATCH": "2",
           "SNAPFIM_DELIVERY_RETRY_SECONDS": "60"}
    config = DeliveryConfig(alerts=AlertSettings.from_env(env))
    try:
        rows = scan_twice(repository, base_image, tmp_path, config)  # 1st POST: HTTP 500
        assert [r.answered for r in receiver.requests] == [500]
        first = deliveries(repository)
        assert [(d["event_id"], d["attempts"], d["delivered_at"]) for d in first] == [
            (r["id"], 1, None) for r in rows[:2]] + [(rows[2]["id"], 0, None)]
        assert first[0]["last_error"] == (
            f"webhook {receiver.url}: HTTP 500 Internal Server Error: ok")
        retry_at = first[0]["next_attempt_at"]
        assert retry_at is not None
        # backing off: nothing is sent before next_attempt_at
        report = deliver(repository, config, now=datetime.now(UTC))
        assert (report.delivered, len(receiver.requests)) == (0, 1)
        # a new process (engine) after the backoff: the receiver hangs past the timeout
        later = Repository(make_engine(db_url))
        report = deliver(later, config, now=_utc(retry_at) + timedelta(seconds=1))
        assert report.sinks[0].error == f"webhook {receiver.url}: no answer within 1 s"
        second = deliveries(repository)
        assert [(d["attempts"], d["delivered_at"]) for d in second[:2]] == [(2, None)] * 2
        assert _utc(second[0]["next_attempt_at"]) == (
            _utc(retry_at) + timedelta(seconds=1) + timedelta(seconds=120))  # doubled
        # and then it accepts: both batches, in order
        report = deliver(later, config, now=_utc(second[0]["next_attempt_at"]))
        assert report.delivered == 3 and not report.errors
        assert deliver(later, config, now=datetime.now(UTC) + timedelta(days=1)).delivered == 0
        later.engine.dispose()
    finally:
        receiver.close()
    requests = receiver.requests
    assert len(requests) == 4                      # 500, timeout, accepted, accepted: no more
    assert [r.answered for r in requests] == [500, None, 200, 200]
    assert requests[0].body == requests[1].body == requests[2].body   # the same batch retried
    assert requests[0].json == [event_record(r) for r in rows[:2]]
    assert requests[3].json == [event_record(rows[2])]
    assert delivered_at_arrival == [0, 0, 0, 2]    # marked only after acceptance
    assert [(d["attempts"], d["delivered_at"] is not None) for d in deliveries(repository)] == [
        (3, True), (3, True), (1, True)]
    ids = [d["id"] for d in deliveries(repository)]
    assert [r.headers["x-snapfim-batch"] for r in requests] == [
        f"{ids[0]}-{ids[1]}"] * 3 + [f"{ids[2]}-{ids[2]}"]
    for request in requests:
        assert request.path == "/ingest?source=snapfim"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == "Bearer t0ken"
        assert request.headers["x-snapfim-signature"] == signature(
            b"k3y", request.headers["x-snapfim-timestamp"], request.body)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_webhook_refuses_a_server_its_ca_bundle_does_not_trust(
        repository: Repository, base_image: Path, tmp_path: Path) -> None:
    _ca, cert, key = make_ca_and_server_cert(tmp_path)
    (tmp_path / "other").mkdir()
    other_ca = make_ca_and_server_cert(tmp_path / "other")[0]
    receiver = HttpsReceiver(cert, key)
    try:
        config = DeliveryConfig(alerts=AlertSettings.from_env({
            "SNAPFIM_WEBHOOK_URL": receiver.url, "SNAPFIM_WEBHOOK_CA_BUNDLE": str(other_ca)}))
        scan_twice(repository, base_image, tmp_path, config)
        assert receiver.requests == []             # the TLS handshake failed: nothing sent
        pending = deliveries(repository)
        assert all(d["delivered_at"] is None for d in pending)
        assert "CERTIFICATE_VERIFY_FAILED" in (pending[0]["last_error"] or "")
    finally:
        receiver.close()


# -- the JSON-lines file goes through the same outbox ----------------------------------------
@pytest.mark.parametrize("fmt", ["configchange", "ocsf"])
def test_events_file_gets_each_event_once(repository: Repository, base_image: Path,
                                          tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "out" / "events.jsonl"
    path.mkdir(parents=True)                       # a directory in the way: the sink fails
    config = DeliveryConfig(str(path), fmt)
    rows = scan_twice(repository, base_image, tmp_path, config)
    pending = deliveries(repository)
    assert [(d["sink"], d["delivered_at"]) for d in pending] == [("jsonl", None)] * 3
    assert pending[0]["last_error"] == f"events file {path}: Is a directory"
    path.rmdir()
    assert deliver(repository, config, respect_backoff=False).delivered == 3
    assert deliver(repository, config, respect_backoff=False).delivered == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    if fmt == "ocsf":
        assert lines == [ocsf_record(r) for r in rows]
        for line in lines:
            validate_ocsf(line)
    else:
        assert lines == [event_record(r) for r in rows]


# -- alerts: failed and stale scans ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["configchange", "ocsf"])
def test_failed_and_stale_scans_are_alerts(repository: Repository, base_image: Path,
                                           tmp_path: Path, fmt: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    image = copy_image(base_image, images / "web-01.img")
    events = tmp_path / "events.jsonl"
    settings = FleetSettings(jsonl_path=str(events), output_format=fmt,
                             alerts=AlertSettings(stale_hours=1))
    with repository.transaction() as conn:
        account_id = fleet.add_account(conn, "lab", "local", {"images": str(images)})
    cycle.discover(repository, account_id)
    [first] = cycle.plan(repository, settings)
    assert cycle.take_snapshots(repository, first)
    assert cycle.poll_snapshots(repository, first) == "ready"
    assert cycle.scan_cycle(repository, first, settings) is not None    # the baseline
    cycle.emit(repository, first, settings)
    assert not events.exists()                      # a baseline has no events, no alert
    image.write_bytes(b"\0" * 4 * 1024 * 1024)      # the disk is now unreadable
    with repository.transaction() as conn:
        machine_id = repository.machine_id(conn, "web-01")
        second = fleet.open_cycle(conn, machine_id, datetime.now(UTC))
    assert second is not None
    assert cycle.take_snapshots(repository, second)
    assert cycle.poll_snapshots(repository, second) == "ready"
    assert cycle.scan_cycle(repository, second, settings) is None
    failed = repository.scan_row(second)
    assert failed["status"] == "failed" and failed["error"]
    cycle.fail(repository, second, "again")        # a second failure report: no second alert
    cycle.emit(repository, second, settings)
    ok = repository.scan_row(first)
    # the machine's last success is now older than SNAPFIM_STALE_HOURS
    with repository.transaction() as conn:
        conn.execute(update(scan).where(scan.c.id == first).values(
            finished_at=datetime.now(UTC) - timedelta(hours=2)))
    [stale_id] = cycle.alert_stale(repository, settings)
    assert cycle.alert_stale(repository, settings) == []               # once per last success
    report = cycle.deliver_round(repository, settings)
    assert (report.delivered, report.errors) == (1, [])
    with repository.transaction() as conn:
        alerts = [dict(r._mapping) for r in conn.execute(select(alert).order_by(alert.c.id))]
    assert [(a["kind"], a["scan_id"]) for a in alerts] == [("scan_failed", second),
                                                           ("scan_stale", first)]
    assert alerts[1]["id"] == stale_id
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 2
    last_ok = _utc(ok["finished_at"]).isoformat().replace("+00:00", "Z")
    if fmt == "configchange":
        failed_line, stale_line = lines
        assert failed_line == {
            "TimeGenerated": failed_line["TimeGenerated"], "Computer": "web-01",
            "Account": "lab", "AlertType": "ScanFailed", "AlertId": alerts[0]["id"],
            "Message": f"scan {second} of web-01 failed: {failed['error']}",
            "ScanId": second, "LastSuccessfulScanId": first, "LastSuccessfulScanTime": last_ok,
            "ScanStatus": "failed", "Reason": failed["error"],
            "ScanStarted": _iso(failed["started_at"]), "ScanFinished": _iso(failed["finished_at"]),
            "Attempts": 1}
        moved = _iso(repository.scan_row(first)["finished_at"])
        assert stale_line == {
            "TimeGenerated": stale_line["TimeGenerated"], "Computer": "web-01",
            "Account": "lab", "AlertType": "ScanStale", "AlertId": stale_id,
            "Message": f"web-01: no successful scan for more than 1 h (last: {moved})",
            "ScanId": first, "LastSuccessfulScanId": first, "LastSuccessfulScanTime": moved,
            "StaleAfterHours": 1.0}
    else:
        for line in lines:
            validate_ocsf(line)
        assert [(x["class_uid"], x["activity_id"], x["activity_name"], x["status_id"],
                 x["device"]["hostname"], x["scan"]) for x in lines] == [
            (6007, 6, "Error", 2, "web-01",
             {"name": "snapfim", "type_id": 2, "type": "Scheduled", "uid": str(second)}),
            (6007, 99, "Overdue", 2, "web-01",
             {"name": "snapfim", "type_id": 2, "type": "Scheduled"})]
        assert lines[0]["status_detail"] == failed["error"]
        assert lines[0]["actor"] == {"process": {"name": "snapfim",
                                                 "uid": f"snapfim-scan-{second}"}}


def _iso(value: datetime) -> str:
    return _utc(value).isoformat().replace("+00:00", "Z")


# -- the migration ------------------------------------------------------------------------------
def test_migration_0005_creates_exactly_the_outbox_tables(db_url: str) -> None:
    import warnings

    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from scanner.storage.db import alembic_config, upgrade
    from scanner.storage.tables import metadata

    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with warnings.catch_warnings(), engine.connect() as conn:
            warnings.simplefilter("ignore")           # expression indexes SQLite can't reflect
            diffs = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), metadata)
        assert [d for d in diffs if any(f"'{t}'" in repr(d) for t in
                                        ("sink", "alert", "delivery"))] == []
        command.downgrade(alembic_config(engine), "0005-1")  # to just before 0005
        assert not {"sink", "alert", "delivery"} & set(inspect(engine).get_table_names())
        upgrade(engine)
        assert {"sink", "alert", "delivery"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
