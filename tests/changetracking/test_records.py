"""Inventory and verdict events as the sinks see them: ConfigurationChange records
(ConfigChangeType Software / WindowsServices / Daemons, Package and PackageVerdict on files)
and OCSF 1.1.0 (Device Inventory Info, validated against the schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from scanner.emitters.ocsf import ocsf_record
from scanner.emitters.records import change_lines, event_record
from tests.ocsf_schema import validate_ocsf

WHEN = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _row(entity_type: str, category: str, path: str, previous: Any, current: Any,
         fields: list[str], verdict: str | None = None, package: str | None = None
         ) -> dict[str, Any]:
    return {"id": 7, "machine": "m", "scan_id": 2, "previous_scan_id": 1, "detected_at": WHEN,
            "window_start": WHEN, "window_end": WHEN, "entity_type": entity_type,
            "category": category, "path": path, "value_name": None,
            "fields_changed": fields, "previous": previous, "current": current,
            "policies": [path.split("\\")[0]], "package": package,
            "package_verdict": verdict}


SOFTWARE = _row("software", "upgraded", "dpkg\\openssl:amd64",
                {"kind": "software", "name": "openssl", "source": "dpkg", "version": "3.0.11-1",
                 "architecture": "amd64", "digest": "a" * 64, "detail": {}},
                {"kind": "software", "name": "openssl", "source": "dpkg", "version": "3.0.13-1",
                 "architecture": "amd64", "digest": "b" * 64, "detail": {}},
                ["version", "digest"])
SERVICE = _row("service", "added", "windows-service\\Evil", None,
               {"kind": "service", "name": "Evil", "source": "windows-service",
                "version": None, "architecture": None, "digest": None,
                "detail": {"image_path": "C:\\evil.exe", "start_type": "automatic"}}, [])
DAEMON = _row("daemon", "enabled", "systemd\\ssh.service",
              {"kind": "daemon", "name": "ssh.service", "source": "systemd", "version": None,
               "architecture": None, "digest": "c" * 64, "detail": {"enabled": False}},
              {"kind": "daemon", "name": "ssh.service", "source": "systemd", "version": None,
               "architecture": None, "digest": "c" * 64, "detail": {"enabled": True}},
              ["detail"])


def test_software_as_a_configuration_change() -> None:
    record = event_record(SOFTWARE)
    assert {k: record[k] for k in ("ConfigChangeType", "ChangeCategory", "SoftwareName",
                                   "Version", "PreviousVersion", "Architecture", "Source",
                                   "FieldsChanged", "InventoryId")} == {
        "ConfigChangeType": "Software", "ChangeCategory": "Upgraded",
        "SoftwareName": "openssl", "Version": "3.0.13-1", "PreviousVersion": "3.0.11-1",
        "Architecture": "amd64", "Source": "dpkg", "FieldsChanged": ["Version", "Checksum"],
        "InventoryId": "dpkg\\openssl:amd64"}
    assert event_record(SERVICE)["ConfigChangeType"] == "WindowsServices"
    assert event_record(SERVICE)["SvcName"] == "Evil"
    assert event_record(DAEMON)["ConfigChangeType"] == "Daemons"


def test_a_file_event_carries_its_package_and_verdict() -> None:
    row = _row("file", "modified", "/usr/bin/ls", {"sha256": "a" * 64}, {"sha256": "b" * 64},
               ["sha256"], "differs-from-package", "coreutils 9.1-1")
    record = event_record(row)
    assert (record["Package"], record["PackageVerdict"]) == ("coreutils 9.1-1",
                                                             "differs-from-package")
    assert change_lines(row)[0] == "package: coreutils 9.1-1: differs-from-package"
    unmapped = ocsf_record(row)["unmapped"]
    assert (unmapped["package"], unmapped["package_verdict"]) == (
        "coreutils 9.1-1", "differs-from-package")


@pytest.mark.parametrize("row", [SOFTWARE, SERVICE, DAEMON], ids=["software", "service",
                                                                  "daemon"])
def test_inventory_events_are_valid_ocsf_inventory_info(row: dict[str, Any]) -> None:
    record = ocsf_record(row)
    validate_ocsf(record)
    assert (record["class_uid"], record["activity_id"]) == (5001, 2)
    assert record["unmapped"]["change"] == row["category"]
    assert record["unmapped"]["current"] == row["current"]
