"""The JSON API over a real scanned fleet, on SQLite and PostgreSQL: exact machines (failed
and stale first), scans with coverage, change records as `changes --json` prints them,
every filter narrowing, cursor pages visiting each row once, the summary, the policy, the
OpenAPI schema; and no write route."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate
from sqlalchemy import select, update

from scanner.emitters.records import event_record
from scanner.policy import RECOMMENDED_LINUX
from scanner.storage import queries
from scanner.storage.tables import scan
from scanner.web.app import create_app
from scanner.web.context import WebContext
from tests.web.conftest import Scanned
from tests.web.fleet import IMG_NAME, SCRIPT_PATH

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

STALE = timedelta(hours=48)


def client(scanned: Scanned, now: datetime | None = None) -> TestClient:
    clock = (lambda: now) if now else (lambda: datetime.now(UTC))
    ctx = WebContext(scanned.repo, STALE, clock)
    return TestClient(create_app(scanned.repo, token=None, context=ctx), base_url="http://127.0.0.1")


@pytest.fixture
def api(scanned: Scanned) -> Iterator[TestClient]:
    with client(scanned) as c:
        yield c


def get(api: TestClient, url: str, code: int = 200, **params: Any) -> Any:
    response = api.get(url, params=params)
    assert response.status_code == code, response.text
    return response.json()


def walk(api: TestClient, url: str, **params: Any) -> list[list[Any]]:
    """Every page of a listing, following next_cursor."""
    pages, cursor = [], None
    while True:
        page = get(api, url, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


def paths(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["Computer"], r["ChangeCategory"], r["FileSystemPath"]) for r in items]


ALL = [("db-01", "Modified", "/usr/sbin/sshd"), ("web-01", "Modified", "/usr/bin/tool"),
       ("web-01", "Added", SCRIPT_PATH), ("web-01", "Removed", "/etc/crontab"),
       ("web-01", "Modified", "/etc/a.conf"), ("web-01", "Added", f"/etc/{IMG_NAME}")]


def test_machines_failed_first_then_by_name_with_exact_status(scanned: Scanned,
                                                               api: TestClient) -> None:
    items = get(api, "/api/v1/machines")["items"]
    ids = scanned.ids
    assert [(m["name"], m["account"], m["cloud"], m["os"], m["health"], m["last_scan_status"],
             m["last_scan_id"], m["last_success_scan_id"], m["total_changes"]) for m in items] == [
        ("broken-01", "lab", "local", None, "failed", "failed", ids.broken_scan, None, 0),
        ("app-01", "lab", "local", "linux", "ok", "succeeded", ids.app_scan, ids.app_scan, 0),
        ("db-01", "cli", "local", "linux", "ok", "succeeded", ids.db_scans[1], ids.db_scans[1], 1),
        ("web-01", "cli", "local", "linux", "ok", "succeeded", ids.web_scans[1],
         ids.web_scans[1], 5)]
    assert items[0]["last_scan_error"] == ("broken-01: no readable filesystem (disk: empty: "
                                           "all zeros, no filesystem)")
    assert [m["name"] for m in get(api, "/api/v1/machines", account="cli")["items"]] == [
        "db-01", "web-01"]
    assert [m["name"] for m in get(api, "/api/v1/machines", health="failed")["items"]] == [
        "broken-01"]
    assert get(api, "/api/v1/machines", os="windows")["items"] == []
    assert get(api, "/api/v1/machines", 400, health="dead") == {
        "detail": "health must be one of failed, stale, pending, ok, not 'dead'"}


def test_machines_without_a_success_within_two_cadences_are_stale(scanned: Scanned) -> None:
    with client(scanned, datetime.now(UTC) + STALE + timedelta(hours=1)) as later:
        items = get(later, "/api/v1/machines")["items"]
        assert [(m["name"], m["health"]) for m in items] == [
            ("broken-01", "failed"), ("app-01", "stale"), ("db-01", "stale"), ("web-01", "stale")]
        assert get(later, "/api/v1/summary")["health"] == {
            "failed": 1, "stale": 3, "pending": 0, "ok": 0}


def test_machine_pages_visit_each_machine_once(api: TestClient) -> None:
    pages = walk(api, "/api/v1/machines", limit=1)
    assert [[m["name"] for m in p] for p in pages] == [
        ["broken-01"], ["app-01"], ["db-01"], ["web-01"]]


def test_machine_detail_has_disks_policy_and_scan_history(scanned: Scanned,
                                                          api: TestClient) -> None:
    ids = scanned.ids
    app = get(api, f"/api/v1/machines/{ids.app}")
    [disk] = app["disks"]
    assert disk["resource_id"].endswith("/lab/app-01.img")
    assert app["policies"] == list(RECOMMENDED_LINUX)
    assert [s["id"] for s in app["scans"]["items"]] == [ids.app_scan]
    web = get(api, f"/api/v1/machines/{ids.web}", scans_limit=1)
    assert (web["name"], web["disks"], web["total_changes"]) == ("web-01", [], 5)
    assert [s["id"] for s in web["scans"]["items"]] == [ids.web_scans[1]]
    older = get(api, f"/api/v1/machines/{ids.web}", scans_limit=1,
                scans_cursor=web["scans"]["next_cursor"])
    assert [s["id"] for s in older["scans"]["items"]] == [ids.web_scans[0]]
    assert older["scans"]["next_cursor"] is None
    assert get(api, "/api/v1/machines/999999", 404) == {"detail": "no machine with id 999999"}


def test_scans_carry_their_coverage_report(scanned: Scanned, api: TestClient) -> None:
    ids = scanned.ids
    pages = walk(api, "/api/v1/scans", limit=2)
    assert [[s["id"] for s in p] for p in pages] == [
        [ids.broken_scan, ids.app_scan], [ids.db_scans[1], ids.web_scans[1]],
        [ids.db_scans[0], ids.web_scans[0]]]
    web = get(api, f"/api/v1/scans/{ids.web_scans[1]}")
    assert (web["status"], web["baseline"], web["added"], web["removed"], web["modified"]) == (
        "succeeded", False, 2, 1, 2)
    [volume] = web["coverage"]["volumes"]
    assert (volume["filesystem"], volume["status"], volume["mountpoint"]) == (
        "ext4", "scanned", "/")
    assert web["coverage"]["notes"] == [
        f"{SCRIPT_PATH}: a directory entry whose name holds '/' or NUL (inode "
        f"{web['coverage']['notes'][0].split('(inode ')[1]}"]
    broken = get(api, "/api/v1/scans", machine_id=ids.broken)["items"]
    assert [(s["status"], s["machine"]) for s in broken] == [("failed", "broken-01")]
    assert get(api, "/api/v1/scans", status="failed")["items"] == broken


def test_a_scan_source_never_shows_the_role_or_its_external_id(scanned: Scanned,
                                                               api: TestClient) -> None:
    scan_id = scanned.ids.app_scan
    disk = {"kind": "ebs", "snapshot": "snap-0a", "region": "eu-west-1",
            "account": "123456789012", "role_arn": "arn:aws:iam::123456789012:role/r",
            "external_id": "ext-42", "volume": "vol-0a"}
    public = {k: v for k, v in disk.items() if k not in ("role_arn", "external_id")}
    with scanned.repo.transaction() as conn:
        before = conn.execute(select(scan.c.source).where(scan.c.id == scan_id)).scalar()
        conn.execute(update(scan).where(scan.c.id == scan_id).values(
            source={"kind": "machine", "disks": [disk, {**disk, "snapshot": "snap-0b"}]}))
    try:
        expected = {"kind": "machine", "disks": [public, {**public, "snapshot": "snap-0b"}]}
        assert get(api, f"/api/v1/scans/{scan_id}")["source"] == expected
        [listed] = [s for s in get(api, "/api/v1/scans", limit=100)["items"]
                    if s["id"] == scan_id]
        assert listed["source"] == expected
        text = api.get(f"/api/v1/machines/{scanned.ids.app}").text
        assert "ext-42" not in text and "role/r" not in text
    finally:
        with scanned.repo.transaction() as conn:
            conn.execute(update(scan).where(scan.c.id == scan_id).values(source=before))


def test_changes_are_the_records_of_changes_json(scanned: Scanned, api: TestClient) -> None:
    items = get(api, "/api/v1/changes")["items"]
    assert paths(items) == ALL
    rows = {r["id"]: r for r in scanned.repo.changes()}
    assert items == [{"EventId": r["EventId"], "MachineId": rows[r["EventId"]]["machine_id"],
                      "Account": "cli", **event_record(rows[r["EventId"]])} for r in items]
    by_path = {r["FileSystemPath"]: r for r in items}
    assert (by_path["/etc/a.conf"]["FieldsChanged"], by_path["/etc/a.conf"]["PreviousOwnerId"],
            by_path["/etc/a.conf"]["OwnerId"]) == (["OwnerId"], 0, 1000)
    assert (by_path["/usr/bin/tool"]["PreviousMode"], by_path["/usr/bin/tool"]["Mode"]) == (
        "0755", "4755")
    assert (by_path["/usr/sbin/sshd"]["PreviousMode"], by_path["/usr/sbin/sshd"]["Mode"]) == (
        "0755", "0700")
    assert by_path[SCRIPT_PATH]["MonitoredEntities"] == ["/bin", "/usr/bin"]
    assert by_path["/etc/crontab"]["ScanId"] == scanned.ids.web_scans[1]


@pytest.mark.parametrize(("params", "expected"), [
    ({"machine": "db-01"}, ALL[:1]),
    ({"account": "cli"}, ALL),
    ({"account": "lab"}, []),
    ({"type": "file"}, ALL),
    ({"type": "registry"}, []),
    ({"category": "modified"}, [ALL[0], ALL[1], ALL[4]]),
    ({"category": "added"}, [ALL[2], ALL[5]]),
    ({"path": "/etc/*.conf"}, [ALL[4], ALL[5]]),
    ({"path": "/usr/bin"}, [ALL[1], ALL[2]]),
    ({"path": "/usr"}, ALL[:3]),
    ({"path": "/ETC"}, []),
    ({"path": "/etc/a.con?"}, [ALL[4]]),
    ({"field": "mode"}, [ALL[0], ALL[1]]),
    ({"field": "Mode"}, [ALL[0], ALL[1]]),
    ({"field": "OwnerId"}, [ALL[4]]),
    ({"field": "sha256"}, []),
    ({"machine": "web-01", "category": "modified", "path": "/etc"}, [ALL[4]]),
    ({"since": "1d"}, ALL),
    ({"until": "1d"}, []),
])
def test_each_filter_narrows(api: TestClient, params: dict[str, str],
                             expected: list[tuple[str, str, str]]) -> None:
    assert paths(get(api, "/api/v1/changes", **params)["items"]) == expected


def test_a_time_window_and_a_scan_narrow(scanned: Scanned, api: TestClient) -> None:
    first = get(api, "/api/v1/changes")["items"]
    web_time = next(r["TimeGenerated"] for r in first if r["Computer"] == "web-01")
    db_time = first[0]["TimeGenerated"]
    assert paths(get(api, "/api/v1/changes", since=db_time)["items"]) == ALL[:1]
    assert paths(get(api, "/api/v1/changes", until=db_time)["items"]) == ALL[1:]
    assert paths(get(api, "/api/v1/changes", since=web_time, until=db_time)["items"]) == ALL[1:]
    assert paths(get(api, "/api/v1/changes", scan_id=scanned.ids.db_scans[1])["items"]) == ALL[:1]


@pytest.mark.parametrize(("params", "detail"), [
    ({"type": "disk"}, "type must be file or registry, not 'disk'"),
    ({"category": "moved"}, "category must be added, removed or modified, not 'moved'"),
    ({"field": "colour"}, "unknown field 'colour'"),
    ({"since": "yesterday"}, "since 'yesterday': use 7d, 12h, 30m, 2w or an ISO date"),
    ({"cursor": "bm9wZQ"}, "invalid cursor (use the next_cursor a page returned)"),
    ({"limit": "0"}, "limit: Input should be greater than or equal to 1"),
])
def test_bad_parameters_are_one_line_400s(api: TestClient, params: dict[str, str],
                                          detail: str) -> None:
    assert get(api, "/api/v1/changes", 400, **params) == {"detail": detail}


def test_unknown_machine_or_account_is_404(api: TestClient) -> None:
    assert get(api, "/api/v1/changes", 404, machine="nope") == {
        "detail": "unknown machine 'nope'"}
    assert get(api, "/api/v1/changes", 404, account="nope") == {
        "detail": "unknown account 'nope'"}


@pytest.mark.parametrize("limit", [1, 2, 4, 6])
def test_cursor_pages_visit_every_change_exactly_once(api: TestClient, limit: int) -> None:
    pages = walk(api, "/api/v1/changes", limit=limit)
    assert all(len(p) == limit for p in pages[:-1])
    assert paths([r for p in pages for r in p]) == ALL
    assert len(pages) == -(-len(ALL) // limit)


def test_pattern_pages_bounded_per_request_still_visit_each_match_once(
        api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "MAX_EXAMINED", 1)   # one row read per request
    monkeypatch.setattr(queries, "_BATCH", 1)
    pages = walk(api, "/api/v1/changes", path="/etc/*.conf", limit=1)
    assert paths([r for p in pages for r in p]) == [ALL[4], ALL[5]]
    # the SQL prefix /etc/ leaves crontab, a.conf and the <img> one: one row per request,
    # crontab's page empty but going on, and an empty last page
    assert [paths(p) for p in pages] == [[], [ALL[4]], [ALL[5]], []]


def test_summary_counts_exactly(scanned: Scanned, api: TestClient) -> None:
    summary = get(api, "/api/v1/summary", since="7d")
    today = datetime.now(UTC).date().isoformat()
    assert {k: v for k, v in summary.items() if k not in ("since", "until")} == {
        "machines": 4,
        "health": {"failed": 1, "stale": 0, "pending": 0, "ok": 3},
        "by_account": [{"name": "cli", "machines": 2}, {"name": "lab", "machines": 2}],
        "by_cloud": [{"name": "local", "machines": 4}],
        "by_os": sorted([{"name": None, "machines": 1}, {"name": "linux", "machines": 3}],
                        key=lambda r: (r["name"] is None) == (summary["by_os"][0]["name"]
                                                              is not None)),
        "total_changes": 6, "by_type": {"file": 6, "registry": 0},
        "by_category": {"added": 2, "removed": 1, "modified": 3},
        "per_day": [{"day": today, "added": 2, "removed": 1, "modified": 3, "file": 6,
                     "registry": 0}],
        "top_machines": [
            {"id": scanned.ids.web, "machine": "web-01", "account": "cli", "changes": 5},
            {"id": scanned.ids.db, "machine": "db-01", "account": "cli", "changes": 1}]}
    later = get(api, "/api/v1/summary", since=(datetime.now(UTC) + timedelta(hours=1))
                .isoformat())
    assert (later["total_changes"], later["per_day"], later["top_machines"]) == (0, [], [])


def test_policy_lists_each_scope_read_only(api: TestClient) -> None:
    scopes = get(api, "/api/v1/policy")
    assert [(s["account"], s["cloud"]) for s in scopes] == [(None, None), ("cli", "local"),
                                                           ("lab", "local")]
    linux = [e["path"] for e in scopes[0]["entities"] if e["kind"] == "linux_file"]
    assert linux == sorted(RECOMMENDED_LINUX)
    assert {e["content"] for e in scopes[0]["entities"]} == {"default"}
    assert [e["name"] for e in get(api, "/api/v1/policy", account="lab")[0]["entities"]
            if e["kind"] == "linux_file"] == sorted(RECOMMENDED_LINUX)
    assert get(api, "/api/v1/policy", 404, account="nope") == {"detail": "unknown account 'nope'"}


def test_openapi_schema_is_served_and_valid(api: TestClient) -> None:
    schema = get(api, "/api/v1/openapi.json")
    validate(schema)
    assert set(schema["paths"]) == {
        "/api/v1/machines", "/api/v1/machines/{machine_id}", "/api/v1/scans",
        "/api/v1/scans/{scan_id}", "/api/v1/changes", "/api/v1/summary", "/api/v1/policy"}
    assert {m for p in schema["paths"].values() for m in p} == {"get"}
    params = {p["name"] for p in schema["paths"]["/api/v1/changes"]["get"]["parameters"]}
    assert params == {"limit", "cursor", "since", "until", "account", "machine", "machine_id",
                      "type", "category", "path", "field", "scan_id"}
    assert api.get("/docs").status_code == 404      # Swagger UI would load a CDN script


def test_there_is_no_write_route(api: TestClient) -> None:
    for url in ("/api/v1/machines", "/api/v1/changes", "/", "/changes", "/policy"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert api.request(method, url).status_code == 405, (method, url)
