"""Alert records: a fleet scan that failed, a machine whose scans went stale.

Two vocabularies, like the change events: ConfigurationChange-style keys (``AlertType``,
``Computer``, ``Reason``...) and OCSF 1.1.0 Scan Activity (class 6007, category 6): a failed
scan is activity 6 "Error" with status Failure and the reason in ``status_detail``; a stale
machine is activity 99 "Other" named "Overdue" (no OCSF activity says "did not run").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scanner import __version__
from scanner.emitters.ocsf import OCSF_VERSION, datetime_to_ms, scanner_actor

ALERT_TYPES = {"scan_failed": "ScanFailed", "scan_stale": "ScanStale"}
SCAN_ACTIVITY = 6007
# kind -> (activity_id, activity_name)
SCAN_ACTIVITIES = {"scan_failed": (6, "Error"), "scan_stale": (99, "Overdue")}


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_message(row: dict[str, Any]) -> str:
    """One line for people."""
    detail = row.get("detail") or {}
    if row["kind"] == "scan_failed":
        return f"scan {row['scan_id']} of {row['machine']} failed: {detail.get('error') or '?'}"
    since = detail.get("last_success_at")
    hours = detail.get("stale_hours")
    return (f"{row['machine']}: no successful scan for more than {hours:g} h"
            + (f" (last: {since})" if since else " (never scanned successfully)"))


def alert_record(row: dict[str, Any]) -> dict[str, Any]:
    """An alert (a row of ``outbox.alert_rows``) as a ConfigurationChange-style record."""
    detail = row.get("detail") or {}
    record: dict[str, Any] = {
        "TimeGenerated": _iso(row["created_at"]),
        "Computer": row["machine"],
        "Account": row.get("account"),
        "AlertType": ALERT_TYPES[row["kind"]],
        "AlertId": row["id"],
        "Message": alert_message(row),
        "ScanId": row.get("scan_id"),
        "LastSuccessfulScanId": detail.get("last_success_scan_id"),
        "LastSuccessfulScanTime": detail.get("last_success_at"),
    }
    if row["kind"] == "scan_failed":
        record |= {"ScanStatus": detail.get("status"), "Reason": detail.get("error"),
                   "ScanStarted": detail.get("started_at"),
                   "ScanFinished": detail.get("finished_at"),
                   "Attempts": detail.get("attempts")}
    else:
        record["StaleAfterHours"] = detail.get("stale_hours")
    return {k: v for k, v in record.items() if v is not None}


def alert_ocsf(row: dict[str, Any]) -> dict[str, Any]:
    """An alert as an OCSF 1.1.0 Scan Activity event."""
    detail = row.get("detail") or {}
    activity_id, activity_name = SCAN_ACTIVITIES[row["kind"]]
    failed = row["kind"] == "scan_failed"
    scan: dict[str, Any] = {"name": "snapfim", "type_id": 2, "type": "Scheduled"}
    if failed and row.get("scan_id") is not None:
        scan["uid"] = str(row["scan_id"])
    event: dict[str, Any] = {
        "class_uid": SCAN_ACTIVITY, "class_name": "Scan Activity",
        "category_uid": 6, "category_name": "Application Activity",
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": SCAN_ACTIVITY * 100 + activity_id,
        "type_name": f"Scan Activity: {activity_name}",
        "severity_id": 3, "severity": "Medium",
        "status_id": 2, "status": "Failure",
        "time": datetime_to_ms(row["created_at"]),
        "message": alert_message(row),
        "metadata": {"version": OCSF_VERSION, "uid": f"alert-{row['id']}",
                     "product": {"name": "snapfim", "vendor_name": "snapfim",
                                 "version": __version__}},
        "device": {"hostname": row["machine"], "type_id": 0, "type": "Unknown"},
        "actor": scanner_actor(row.get("scan_id") if failed else None),
        "scan": scan,
        "unmapped": {k: v for k, v in {
            "alert_type": ALERT_TYPES[row["kind"]], "account": row.get("account"),
            "last_success_scan_id": detail.get("last_success_scan_id"),
            "last_success_time": detail.get("last_success_at"),
            "stale_hours": detail.get("stale_hours"),
            "attempts": detail.get("attempts")}.items() if v is not None},
    }
    if failed:
        event["status_detail"] = detail.get("error")
        for key, name in (("start_time", "started_at"), ("end_time", "finished_at")):
            value = detail.get(name)
            if value:
                event[key] = datetime_to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return {k: v for k, v in event.items() if v is not None}
