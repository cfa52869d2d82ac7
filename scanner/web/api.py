"""The JSON API under ``/api/v1/``: machines, scans with coverage, change events (the
ConfigurationChange records of ``changes --json``) with filters and cursor pagination, the
summary and the policy. Read-only: GET routes only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from scanner.errors import ConfigError
from scanner.storage import queries
from scanner.web import views
from scanner.web.context import WebContext, context

router = APIRouter(prefix="/api/v1", tags=["api"])

Limit = Annotated[int, Query(ge=1, le=queries.MAX_PAGE, description="Rows per page.")]
CursorQ = Annotated[str | None, Query(description="next_cursor of the previous page.")]


class Machine(BaseModel):
    """A machine with its latest scan and its health (failed, stale, pending, ok)."""

    id: int
    name: str
    account: str
    cloud: str
    os: str | None
    region: str | None
    state: str | None
    present: bool
    resource_id: str | None
    health: str
    created_at: str | None
    last_scan_id: int | None
    last_scan_status: str | None
    last_scan_at: str | None
    last_scan_error: str | None
    last_success_scan_id: int | None
    last_success_at: str | None
    total_changes: int


class MachinePage(BaseModel):
    """One page of machines, failed and stale first."""

    items: list[Machine]
    next_cursor: str | None


class Scan(BaseModel):
    """A scan with its counts and coverage report."""

    id: int
    machine_id: int
    machine: str
    status: str
    started_at: str | None
    finished_at: str | None
    baseline: bool
    entities: int
    added: int
    removed: int
    modified: int
    error: str | None
    attempts: int
    source: dict[str, Any] | None
    coverage: dict[str, Any] | None
    policies: list[str] | None


class ScanPage(BaseModel):
    """One page of scans, newest first."""

    items: list[Scan]
    next_cursor: str | None


class Disk(BaseModel):
    """A present disk of a machine."""

    id: int
    resource_id: str
    device: str | None
    size_bytes: int | None


class MachineDetail(Machine):
    """A machine, its disks, the monitored entities in force and its latest scans."""

    tags: dict[str, Any]
    disks: list[Disk]
    policies: list[str]
    scans: ScanPage


class ChangeRecord(BaseModel):
    """A ConfigurationChange record as ``snapfim changes --json`` prints it (its value fields
    depend on the entity: Size/PreviousSize, FileContentChecksum, ValueData, ...)."""

    model_config = ConfigDict(extra="allow")

    EventId: int
    MachineId: int
    Account: str
    TimeGenerated: str
    Computer: str
    ConfigChangeType: str
    ChangeCategory: str
    FieldsChanged: list[str]


class ChangePage(BaseModel):
    """One page of change events, newest first."""

    items: list[ChangeRecord]
    next_cursor: str | None


class Summary(BaseModel):
    """The overview's numbers for a time window."""

    since: str
    until: str | None
    machines: int
    health: dict[str, int]
    by_account: list[dict[str, Any]]
    by_cloud: list[dict[str, Any]]
    by_os: list[dict[str, Any]]
    total_changes: int
    by_type: dict[str, int]
    by_category: dict[str, int]
    per_day: list[dict[str, Any]]
    top_machines: list[dict[str, Any]]


class PolicyScope(BaseModel):
    """The monitored entities of one scope (account None: the global policy)."""

    account: str | None
    cloud: str | None
    entities: list[dict[str, Any]]


def parse_time(name: str, text: str | None, now: datetime) -> datetime | None:
    """``7d``/``12h``/``30m``/``2w`` ago or an ISO 8601 time (UTC when it has no zone)."""
    if text is None or not text.strip():
        return None
    from scanner.cli_support import parse_since

    try:
        return parse_since(text, now)
    except ConfigError:
        raise ConfigError(f"{name} {text!r}: use 7d, 12h, 30m, 2w or an ISO date") from None


def change_filter(ctx: WebContext, *, since: str | None, until: str | None,
                  account: str | None, machine: str | None, machine_id: int | None,
                  entity_type: str | None, category: str | None, path: str | None,
                  field: str | None, scan_id: int | None) -> queries.ChangeFilter:
    """The filter of the changes page and endpoint, from their query parameters."""
    now = ctx.now()
    empty = {None, ""}
    return queries.ChangeFilter(
        since=parse_time("since", since, now), until=parse_time("until", until, now),
        account=None if account in empty else account,
        machine=None if machine in empty else machine, machine_id=machine_id,
        entity_type=None if entity_type in empty else entity_type,
        category=None if category in empty else category,
        path=None if path in empty else path, field=None if field in empty else field,
        scan_id=scan_id)


@router.get("/machines", response_model=MachinePage)
def list_machines(request: Request, limit: Limit = 50, cursor: CursorQ = None,
                  account: str | None = None, cloud: str | None = None,
                  os: str | None = None, health: str | None = None) -> dict[str, Any]:
    """Machines: failed first, then stale (no successful scan within 2 cadences), then never
    scanned, then healthy."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        page = queries.machines_page(conn, now=ctx.now(), stale_after=ctx.stale_after,
                                     limit=limit, cursor=cursor, account_name=account,
                                     cloud=cloud, os_family=os, health=health)
    return {"items": [views.machine_json(m) for m in page.items],
            "next_cursor": page.next_cursor}


@router.get("/machines/{machine_id}", response_model=MachineDetail)
def get_machine(request: Request, machine_id: int, scans_limit: Limit = 20,
                scans_cursor: CursorQ = None) -> dict[str, Any]:
    """One machine: its disks, the policy in force and a page of its scan history."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        row = queries.machine_detail(conn, machine_id, now=ctx.now(),
                                     stale_after=ctx.stale_after)
        scans = queries.scans_page(conn, machine_id=machine_id, limit=scans_limit,
                                   cursor=scans_cursor)
    return {**views.machine_json(row), "tags": row["tags"], "disks": row["disks"],
            "policies": row["policies"],
            "scans": {"items": [views.scan_json(s) for s in scans.items],
                      "next_cursor": scans.next_cursor}}


@router.get("/scans", response_model=ScanPage)
def list_scans(request: Request, limit: Limit = 20, cursor: CursorQ = None,
               machine_id: int | None = None, status: str | None = None) -> dict[str, Any]:
    """Scans newest first, each with its coverage report."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        page = queries.scans_page(conn, machine_id=machine_id, status=status, limit=limit,
                                  cursor=cursor)
    return {"items": [views.scan_json(s) for s in page.items], "next_cursor": page.next_cursor}


@router.get("/scans/{scan_id}", response_model=Scan)
def get_scan(request: Request, scan_id: int) -> dict[str, Any]:
    """One scan with its coverage report."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        return views.scan_json(queries.scan_detail(conn, scan_id))


@router.get("/changes", response_model=ChangePage)
def list_changes(
        request: Request, limit: Limit = 50, cursor: CursorQ = None,
        since: Annotated[str | None, Query(description="7d, 12h, ... or an ISO time")] = None,
        until: Annotated[str | None, Query(description="7d, 12h, ... or an ISO time")] = None,
        account: str | None = None, machine: str | None = None, machine_id: int | None = None,
        type: Annotated[str | None, Query(description="file or registry")] = None,
        category: Annotated[str | None, Query(description="added, removed, modified")] = None,
        path: Annotated[str | None, Query(description="as `changes --path`: the path and "
                                                      "below, * and ? within a segment")] = None,
        field: Annotated[str | None, Query(description="a field changed: uid or OwnerId, "
                                                       "sha256 or FileContentChecksum, ...")
                         ] = None,
        scan_id: int | None = None) -> dict[str, Any]:
    """Change events newest first, as ConfigurationChange records. A page filtered by
    ``path`` may hold fewer than ``limit`` rows and still have a ``next_cursor``."""
    ctx = context(request)
    flt = change_filter(ctx, since=since, until=until, account=account, machine=machine,
                        machine_id=machine_id, entity_type=type, category=category, path=path,
                        field=field, scan_id=scan_id)
    with ctx.repo.transaction() as conn:
        page = queries.changes_page(conn, flt, limit=limit, cursor=cursor)
    return {"items": [views.change_json(r) for r in page.items],
            "next_cursor": page.next_cursor}


@router.get("/summary", response_model=Summary)
def get_summary(request: Request,
                since: Annotated[str | None, Query(
                    description="7d, 12h, ... or an ISO time (default: the last 30 whole "
                                "days, today included)")] = None,
                until: str | None = None,
                top: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
    """Machines by account, cloud and OS and by health; changes in the window: total, by
    type, by category, per day, and the machines with most."""
    ctx = context(request)
    now = ctx.now()
    start = parse_time("since", since, now) or ctx.days_back(30)
    end = parse_time("until", until, now)
    with ctx.repo.transaction() as conn:
        result = ctx.summary(conn, since=start, until=end, top=top)
        result["health"] = queries.health_counts(conn, now=now, stale_after=ctx.stale_after)
    result["since"], result["until"] = views.iso(start), views.iso(end)
    return result


@router.get("/policy", response_model=list[PolicyScope])
def get_policy(request: Request, account: str | None = None) -> list[dict[str, Any]]:
    """The monitored entities of the global policy and of each account (read-only)."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        return [{k: s[k] for k in ("account", "cloud", "entities")}
                for s in queries.policy_scopes(conn, account)]

