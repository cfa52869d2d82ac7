"""The server-rendered pages: Overview, Changes, Machine and Policy. Jinja2 escapes every
value (autoescape on for every template); nothing from a disk is ever marked safe."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from scanner.storage import queries
from scanner.web import views
from scanner.web.api import change_filter
from scanner.web.charts import stacked_bars
from scanner.web.context import context

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"
WINDOWS = (("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"))
CHANGE_PARAMS = ("since", "until", "account", "machine", "type", "category", "path", "field")


def environment() -> Environment:
    """The template environment: autoescape on for every template, undefined is an error."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["iso"] = views.iso
    env.filters["shown"] = views.shown
    env.filters["when"] = views.when
    env.globals["query"] = lambda **kw: urlencode({k: v for k, v in kw.items()
                                                   if v not in (None, "")})
    return env


ENV = environment()


def render(name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A template rendered as an HTML response."""
    return HTMLResponse(ENV.get_template(name).render(**values), status_code=status_code)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, window: str = "30d") -> HTMLResponse:
    """Machines by account, cloud and OS; failed and stale first; changes per day by
    category and by type; the machines with most changes."""
    ctx = context(request)
    if window not in dict(WINDOWS):
        window = "30d"
    now = ctx.now()
    since = ctx.days_back(int(window.rstrip("d")))
    with ctx.repo.transaction() as conn:
        numbers = ctx.summary(conn, since=since, top=10)
        health = queries.health_counts(conn, now=now, stale_after=ctx.stale_after)
        attention = queries.machines_page(conn, now=now, stale_after=ctx.stale_after,
                                          limit=20)
    days = _every_day(numbers["per_day"], since, now)
    charts = [stacked_bars("Changes per day by category", days, queries.CATEGORIES),
              stacked_bars("Changes per day by type", days, queries.ENTITY_TYPES)]
    return render("overview.html", active="overview", numbers=numbers, health=health,
                  machines=[views.machine_json(m) for m in attention.items],
                  more_machines=attention.next_cursor, charts=charts, windows=WINDOWS,
                  window=window, window_text=dict(WINDOWS)[window])


def _every_day(rows: list[dict[str, Any]], since: Any, now: Any) -> list[dict[str, Any]]:
    """Per-day rows with the days without changes filled in (at most 92)."""
    have = {r["day"]: r for r in rows}
    out: list[dict[str, Any]] = []
    day = since.date()
    while day <= now.date() and len(out) < 92:
        key = day.isoformat()
        out.append(have.get(key, {"day": key}))
        day += timedelta(days=1)
    return out


@router.get("/changes", response_class=HTMLResponse)
def changes(request: Request, limit: int = 50, cursor: str | None = None) -> HTMLResponse:
    """The changes table: filters, before and after side by side, one page at a time."""
    ctx = context(request)
    params = {k: request.query_params.get(k) or None for k in CHANGE_PARAMS}
    flt = change_filter(ctx, since=params["since"], until=params["until"],
                        account=params["account"], machine=params["machine"], machine_id=None,
                        entity_type=params["type"], category=params["category"],
                        path=params["path"], field=params["field"], scan_id=None)
    with ctx.repo.transaction() as conn:
        page = queries.changes_page(conn, flt, limit=limit, cursor=cursor)
    return render("changes.html", active="changes", params=params,
                  rows=[_change_row(r) for r in page.items], next_cursor=page.next_cursor,
                  first_page=cursor is None, limit=limit)


def _change_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "time": views.iso(row["detected_at"]), "machine": row["machine"],
            "machine_id": row["machine_id"], "account": row["account"],
            "type": row["entity_type"], "category": row["category"], "path": row["path"],
            "value_name": row["value_name"], "scan_id": row["scan_id"],
            "fields": views.change_json(row)["FieldsChanged"],
            "pairs": views.before_after(row)}


@router.get("/machines/{machine_id}", response_class=HTMLResponse)
def machine(request: Request, machine_id: int, scans_cursor: str | None = None
            ) -> HTMLResponse:
    """A machine: disks, scan history with coverage reports, policy in force, changes."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        row = queries.machine_detail(conn, machine_id, now=ctx.now(),
                                     stale_after=ctx.stale_after)
        scans = queries.scans_page(conn, machine_id=machine_id, limit=10, cursor=scans_cursor)
        events = queries.changes_page(conn, queries.ChangeFilter(machine_id=machine_id),
                                      limit=25)
        since = ctx.days_back(30)
        days = queries.machine_days(conn, machine_id, since=since)
    chart = stacked_bars("Changes per day by category (30 days)",
                         _every_day(days, since, ctx.now()), queries.CATEGORIES)
    return render("machine.html", active="machines", m=views.machine_json(row), chart=chart,
                  disks=row["disks"], policies=row["policies"], tags=row["tags"],
                  scans=[views.scan_json(s) for s in scans.items],
                  scans_next=scans.next_cursor, rows=[_change_row(r) for r in events.items],
                  more_changes=events.next_cursor is not None)


@router.get("/machines", response_class=HTMLResponse)
def machines(request: Request, cursor: str | None = None, account: str | None = None,
             health: str | None = None) -> HTMLResponse:
    """Every machine, failed and stale first, a page at a time."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        page = queries.machines_page(conn, now=ctx.now(), stale_after=ctx.stale_after,
                                     limit=100, cursor=cursor, account_name=account or None,
                                     health=health or None)
    return render("machines.html", active="machines",
                  machines=[views.machine_json(m) for m in page.items],
                  next_cursor=page.next_cursor, account=account, health=health)


@router.get("/policy", response_class=HTMLResponse)
def policy(request: Request) -> HTMLResponse:
    """Each scope's monitored entities, read-only."""
    ctx = context(request)
    with ctx.repo.transaction() as conn:
        scopes = queries.policy_scopes(conn)
    return render("policy.html", active="policy", scopes=scopes)
