"""Tests of scanner.emitters.ocsf: stored change-event rows as OCSF 1.1.0 events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from scanner import __version__
from scanner.emitters.ocsf import (
    DATA_PREVIEW_CHARS,
    datetime_to_ms,
    ns_to_ms,
    ocsf_lines,
    ocsf_record,
)
from tests.ocsf_schema import validate_ocsf

DETECTED = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)      # 1714564800123 ms
WINDOW_START = datetime(2024, 4, 30, 12, 0, 0, tzinfo=UTC)           # 1714478400000 ms
MTIME_NS = 1_714_564_799_999_999_999     # a float division would round this up a whole ms
PRODUCT = {"name": "snapfim", "vendor_name": "snapfim", "version": __version__}
DEVICE = {"hostname": "web-01", "type_id": 0, "type": "Unknown"}
ACTOR = {"process": {"name": "snapfim", "uid": "snapfim-scan-7"}}   # the scanner, scan 7
WIN = [{"name": "win", "uid": "2", "version": "1.1.0"}]
SHA_OLD, SHA_NEW = "a" * 64, "b" * 64


def row(category: str, path: str, *, previous: dict[str, Any] | None = None,
        current: dict[str, Any] | None = None, fields: list[str] | None = None,
        entity_type: str = "file", value_name: str | None = None) -> dict[str, Any]:
    """A row shaped like ``Repository.changes`` returns it."""
    return {"id": 42, "machine_id": 1, "scan_id": 7, "previous_scan_id": 6,
            "detected_at": DETECTED, "window_start": WINDOW_START, "window_end": DETECTED,
            "entity_type": entity_type, "category": category, "path": path,
            "value_name": value_name, "fields_changed": fields or [], "previous": previous,
            "current": current, "policies": ["linux-binaries"], "machine": "web-01"}


def file_values(**overrides: Any) -> dict[str, Any]:
    """Recorded values of a regular file (FileEntity.values() shape)."""
    values: dict[str, Any] = {
        "type": "file", "size": 1024, "mode": 0o755, "uid": 0, "gid": 0, "link_target": None,
        "sha256": SHA_OLD, "acl": None, "capability": None, "xattrs": {},
        "mtime": MTIME_NS, "ctime": 1_714_000_000_000_000_000, "crtime": 1_700_000_000_500_000_000,
        "inode": 131074, "nlink": 1, "atime": 1_714_564_000_000_000_001}
    values.update(overrides)
    return values


def header(class_uid: int, class_name: str, activity_id: int, activity_name: str,
           message: str, severity_id: int = 1, severity: str = "Informational",
           extensions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The event attributes every record shares."""
    metadata: dict[str, Any] = {"version": "1.1.0", "uid": "42", "product": PRODUCT}
    if extensions:
        metadata["extensions"] = extensions
    return {
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": 1, "category_name": "System Activity",
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id, "type_name": f"{class_name}: {activity_name}",
        "severity_id": severity_id, "severity": severity,
        "time": 1714564800123, "start_time": 1714478400000, "end_time": 1714564800123,
        "message": message, "metadata": metadata, "device": DEVICE, "actor": ACTOR,
    }


SCAN = {"policies": ["linux-binaries"], "scan_id": 7, "previous_scan_id": 6}


# --- files -------------------------------------------------------------------------------------

def test_added_file() -> None:
    record = ocsf_record(row("added", "/usr/bin/tool", current=file_values()))
    assert record == {
        **header(1001, "File System Activity", 1, "Create", "file added: /usr/bin/tool"),
        "file": {
            "path": "/usr/bin/tool", "name": "tool", "parent_folder": "/usr/bin",
            "type_id": 1, "type": "Regular File", "size": 1024, "uid": "131074",
            "owner": {"uid": "0"},
            "hashes": [{"algorithm_id": 3, "algorithm": "SHA-256", "value": SHA_OLD}],
            "modified_time": 1714564799999, "created_time": 1700000000500,
            "accessed_time": 1714564000000,
        },
        "unmapped": {"fields_changed": [], **SCAN, "mode": "0755", "gid": 0, "nlink": 1,
                     "changed_time": 1714000000000},
    }


def test_removed_symlink() -> None:
    link = file_values(type="symlink", size=11, mode=0o777, sha256=None, link_target="/etc/ssl",
                       inode=200, crtime=None, atime=None)
    record = ocsf_record(row("removed", "/etc/ssl-link", previous=link))
    assert record == {
        **header(1001, "File System Activity", 4, "Delete", "file removed: /etc/ssl-link"),
        "file": {
            "path": "/etc/ssl-link", "name": "ssl-link", "parent_folder": "/etc",
            "type_id": 7, "type": "Symbolic Link", "size": 11, "uid": "200",
            "owner": {"uid": "0"}, "modified_time": 1714564799999,
        },
        "unmapped": {"fields_changed": [], **SCAN, "mode": "0777", "gid": 0, "nlink": 1,
                     "link_target": "/etc/ssl", "changed_time": 1714000000000},
    }


def test_modified_file_content_and_mode_is_the_whole_record() -> None:
    before = file_values(xattrs={"user.origin": "pkg"})
    after = file_values(sha256=SHA_NEW, mode=0o4755, mtime=1_714_564_800_000_000_000,
                        acl="user::rwx,group::r-x,other::r-x")
    record = ocsf_record(row("modified", "/usr/bin/passwd", previous=before, current=after,
                             fields=["mode", "sha256", "xattrs", "mtime"]))
    common = {"path": "/usr/bin/passwd", "name": "passwd", "parent_folder": "/usr/bin",
              "type_id": 1, "type": "Regular File", "size": 1024, "uid": "131074",
              "owner": {"uid": "0"}, "created_time": 1700000000500,
              "accessed_time": 1714564000000}
    assert record == {
        **header(1001, "File System Activity", 3, "Update",
                 "file modified: /usr/bin/passwd (mode, sha256, xattrs, mtime)",
                 severity_id=3, severity="Medium"),
        "file": {**common,
                 "hashes": [{"algorithm_id": 3, "algorithm": "SHA-256", "value": SHA_OLD}],
                 "modified_time": 1714564799999, "xattributes": {"user.origin": "pkg"}},
        "file_result": {**common,
                        "hashes": [{"algorithm_id": 3, "algorithm": "SHA-256",
                                    "value": SHA_NEW}],
                        "modified_time": 1714564800000,
                        "security_descriptor": "user::rwx,group::r-x,other::r-x"},
        "unmapped": {"fields_changed": ["mode", "sha256", "xattrs", "mtime"], **SCAN,
                     "mode": "4755", "gid": 0, "nlink": 1, "changed_time": 1714000000000,
                     "previous": {"mode": "0755", "gid": 0, "nlink": 1,
                                  "changed_time": 1714000000000}},
    }


def test_added_directory() -> None:
    directory = file_values(type="directory", size=4096, mode=0o2775, uid=33, gid=33,
                            sha256=None, nlink=2)
    record = ocsf_record(row("added", "/var/www/uploads/", current=directory))
    assert record["severity_id"] == 1          # set-gid on a directory grants nothing
    assert record["file"] == {
        "path": "/var/www/uploads/", "name": "uploads", "parent_folder": "/var/www",
        "type_id": 2, "type": "Folder", "size": 4096, "uid": "131074", "owner": {"uid": "33"},
        "modified_time": 1714564799999, "created_time": 1700000000500,
        "accessed_time": 1714564000000,
    }
    assert record["unmapped"]["mode"] == "2775"
    assert record["unmapped"]["gid"] == 33


@pytest.mark.parametrize(("kind", "type_id", "type_name"), [
    ("char_device", 3, "Character Device"), ("block_device", 4, "Block Device"),
    ("socket", 5, "Local Socket"), ("fifo", 6, "Named Pipe"), ("other", 99, "Other"),
])
def test_file_type_ids(kind: str, type_id: int, type_name: str) -> None:
    record = ocsf_record(row("added", "/dev/x", current=file_values(type=kind, sha256=None)))
    assert (record["file"]["type_id"], record["file"]["type"]) == (type_id, type_name)


def test_root_path() -> None:
    record = ocsf_record(row("removed", "/", previous=file_values(type="directory")))
    assert record["file"]["name"] == "/"
    assert "parent_folder" not in record["file"]


@pytest.mark.parametrize(("before", "after", "severity_id"), [
    (None, file_values(mode=0o4755), 3),                                 # setuid file added
    (file_values(), file_values(mode=0o2755), 3),                        # setgid bit set
    (file_values(mode=0o4755), file_values(mode=0o4750), 1),             # already set-uid
    (file_values(), file_values(capability="cap_net_raw=ep"), 3),        # capability added
    (file_values(capability="cap_net_raw=ep"), file_values(capability="cap_net_raw=ep",
                                                           sha256=SHA_NEW), 1),
    (file_values(capability="cap_net_raw=ep"), file_values(capability="="), 1),  # dropped
    (file_values(mode=0o4755), None, 1),                                 # removed
])
def test_severity(before: dict[str, Any] | None, after: dict[str, Any] | None,
                  severity_id: int) -> None:
    category = "added" if before is None else "removed" if after is None else "modified"
    record = ocsf_record(row(category, "/usr/bin/x", previous=before, current=after))
    assert record["severity_id"] == severity_id
    assert record["severity"] == {1: "Informational", 3: "Medium"}[severity_id]


# --- registry ----------------------------------------------------------------------------------

RUN_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"


def test_registry_value_modification() -> None:
    before = {"type": "RegSZ", "preview": r"C:\Program Files\Agent\agent.exe",
              "size": 68, "sha256": SHA_OLD, "last_write": 1_700_000_000_000_000_000}
    after = {"type": "REG_EXPAND_SZ", "preview": r"%TEMP%\x.exe", "size": 26,
             "sha256": SHA_NEW, "last_write": 1_714_564_799_999_999_999}
    record = ocsf_record(row("modified", RUN_KEY, previous=before, current=after,
                             fields=["type", "preview", "size", "sha256"],
                             entity_type="registry", value_name="Updater"))
    assert record == {
        **header(201002, "Registry Value Activity", 3, "Modify",
                 f"registry value modified: {RUN_KEY}\\Updater "
                 "(type, preview, size, sha256)", extensions=WIN),
        "reg_value": {"path": RUN_KEY, "name": "Updater", "type": "REG_EXPAND_SZ",
                      "type_id": 4, "data": r"%TEMP%\x.exe", "modified_time": 1714564799999},
        "prev_reg_value": {"path": RUN_KEY, "name": "Updater", "type": "REG_SZ",
                           "type_id": 10, "data": r"C:\Program Files\Agent\agent.exe",
                           "modified_time": 1700000000000},
        "unmapped": {"fields_changed": ["type", "preview", "size", "sha256"], **SCAN,
                     "size": 26, "sha256": SHA_NEW,
                     "previous": {"size": 68, "sha256": SHA_OLD}},
    }


def test_registry_value_added_default_and_bounded_data() -> None:
    data = "x" * (DATA_PREVIEW_CHARS + 10)
    record = ocsf_record(row("added", RUN_KEY, current={"type": 1, "preview": data},
                             entity_type="registry", value_name=""))
    assert (record["class_uid"], record["activity_id"], record["type_uid"]) == (
        201002, 2, 20100202)
    assert record["reg_value"] == {"path": RUN_KEY, "name": "", "is_default": True,
                                   "type": "REG_SZ", "type_id": 10,
                                   "data": "x" * DATA_PREVIEW_CHARS}
    assert record["unmapped"]["data_truncated"] is True
    assert "prev_reg_value" not in record


@pytest.mark.parametrize(("data", "preview"), [
    (7, 7), (["a" * 600, "b" * 400, "c" * 100], ["a" * 600, "b" * 400]),
    ({"k": "v"}, {"k": "v"}), ({"k": "v" * 2000}, '{"k":"' + "v" * (DATA_PREVIEW_CHARS - 6)),
])
def test_registry_data_preview(data: Any, preview: Any) -> None:
    record = ocsf_record(row("removed", RUN_KEY, previous={"type": "RegMultiSZ",
                                                           "preview": data},
                             entity_type="registry", value_name="v"))
    assert record["reg_value"]["data"] == preview
    assert record["reg_value"]["type_id"] == 6
    assert record["activity_id"] == 4


def test_registry_value_unknown_type_is_other() -> None:
    record = ocsf_record(row("added", RUN_KEY, current={"type": "RegFileTime"},
                             entity_type="registry", value_name="t"))
    assert (record["reg_value"]["type"], record["reg_value"]["type_id"]) == ("RegFileTime", 99)


def test_registry_key_deleted() -> None:
    record = ocsf_record(row("removed", RUN_KEY, previous={
        "acl": "O:BAG:SYD:(A;;KA;;;SY)", "last_write": 1_700_000_000_000_000_000},
        entity_type="registry"))
    assert record == {
        **header(201001, "Registry Key Activity", 4, "Delete",
                 f"registry key removed: {RUN_KEY}", extensions=WIN),
        "reg_key": {"path": RUN_KEY, "modified_time": 1700000000000,
                    "security_descriptor": "O:BAG:SYD:(A;;KA;;;SY)"},
        "unmapped": {"fields_changed": [], **SCAN},
    }


def test_registry_key_modified_has_prev_reg_key() -> None:
    record = ocsf_record(row("modified", RUN_KEY, previous={"acl": "A"}, current={"acl": "B"},
                             fields=["acl"], entity_type="registry"))
    assert (record["class_uid"], record["activity_id"]) == (201001, 3)
    assert record["reg_key"] == {"path": RUN_KEY, "security_descriptor": "B"}
    assert record["prev_reg_key"] == {"path": RUN_KEY, "security_descriptor": "A"}


# --- errors, times, lines ----------------------------------------------------------------------

@pytest.mark.parametrize("entity_type", ["file", "registry"])
def test_unknown_category_raises(entity_type: str) -> None:
    with pytest.raises(ValueError, match="renamed"):
        ocsf_record(row("renamed", "/x", current=file_values(), entity_type=entity_type))


def test_unknown_entity_type_raises() -> None:
    with pytest.raises(ValueError, match="printer"):
        ocsf_record(row("added", "/x", current={}, entity_type="printer"))


def test_ns_to_ms_is_exact_integer_floor() -> None:
    assert ns_to_ms(MTIME_NS) == 1_714_564_799_999
    assert int(MTIME_NS / 1_000_000) == 1_714_564_800_000      # what a float would give
    assert ns_to_ms(1_999_999) == 1
    assert ns_to_ms(-1) == -1                                   # before 1970: floor
    assert ns_to_ms(None) is None
    assert ns_to_ms(2**63 - 1) == 9_223_372_036_854


def test_datetime_to_ms() -> None:
    assert datetime_to_ms(DETECTED) == 1_714_564_800_123
    assert datetime_to_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1
    assert datetime_to_ms(datetime(2262, 4, 11, 23, 47, 16, 854_775, tzinfo=UTC)) == (
        9_223_372_036_854)
    assert datetime_to_ms(None) is None


def test_first_window_has_no_start_time() -> None:
    data = row("added", "/x", current=file_values())
    data["window_start"] = None
    assert "start_time" not in ocsf_record(data)


def test_ocsf_lines_compact_json_one_per_row() -> None:
    rows = [row("added", "/usr/bin/tool", current=file_values()),
            row("removed", "/usr/bin/ünïcode", previous=file_values())]
    lines = list(ocsf_lines(rows))
    assert len(lines) == 2
    assert all("\n" not in line and ", " not in line and '": ' not in line for line in lines)
    assert [json.loads(line) for line in lines] == [ocsf_record(r) for r in rows]
    assert list(ocsf_lines([])) == []


# --- schema validation (pydantic-ocsf for 1.1.0; the win extension per its schema files) -------

REG_VALUE = {"type": "REG_SZ", "preview": "x", "size": 4, "sha256": SHA_OLD,
             "last_write": 1_700_000_000_000_000_000}
EVERY_CLASS_AND_ACTIVITY = [
    row("added", "/usr/bin/tool", current=file_values(mode=0o4755)),
    row("removed", "/etc/ssl-link", previous=file_values(type="symlink", sha256=None,
                                                         link_target="/etc/ssl")),
    row("modified", "/usr/bin/passwd", previous=file_values(),
        current=file_values(sha256=SHA_NEW, capability="cap_net_raw=ep",
                            acl="user::rwx,group::r-x,other::r-x"),
        fields=["sha256", "capability", "acl"]),
    row("added", "/", current=file_values(type="directory", sha256=None)),
    row("added", RUN_KEY, current={"acl": "O:BA", "last_write": 1, "subkey_count": 0,
                                   "value_count": 1}, entity_type="registry"),
    row("modified", RUN_KEY, previous={"acl": "A"}, current={"acl": "B"}, fields=["acl"],
        entity_type="registry"),
    row("removed", RUN_KEY, previous={"acl": "A"}, entity_type="registry"),
    row("added", RUN_KEY, current=REG_VALUE, entity_type="registry", value_name=""),
    row("modified", RUN_KEY, previous=REG_VALUE,
        current={**REG_VALUE, "type": "RegMultiSZ", "preview": ["a", "b"]},
        fields=["type", "preview"], entity_type="registry", value_name="Updater"),
    row("removed", RUN_KEY, previous={**REG_VALUE, "type": "RegFileTime", "preview": "ab"},
        entity_type="registry", value_name="t"),
]


@pytest.mark.parametrize("data", EVERY_CLASS_AND_ACTIVITY,
                         ids=lambda r: f"{r['category']}-{r['path']}-{r['value_name']}")
def test_every_emitted_class_validates_against_ocsf_1_1_0(data: dict[str, Any]) -> None:
    record = ocsf_record(data)
    validate_ocsf(record)
    assert record["actor"] == ACTOR        # the scanner's run; nothing about who changed it
    validate_ocsf(json.loads(next(ocsf_lines([data]))))


def test_the_validation_refuses_a_record_without_actor_or_with_a_bad_value() -> None:
    from pydantic import ValidationError

    good = ocsf_record(EVERY_CLASS_AND_ACTIVITY[0])
    for broken in ({k: v for k, v in good.items() if k != "actor"},
                   {**good, "file": {**good["file"], "size": "big"}}):
        with pytest.raises(ValidationError):
            validate_ocsf(broken)
    value = ocsf_record(EVERY_CLASS_AND_ACTIVITY[7])
    with pytest.raises(ValidationError):
        validate_ocsf({**value, "reg_value": {"path": RUN_KEY}})          # name is required
    with pytest.raises(ValidationError):
        validate_ocsf({k: v for k, v in value.items() if k != "device"})
    with pytest.raises(AssertionError):
        validate_ocsf({**value, "actor": {"app_name": "snapfim"}})        # at least one of...
