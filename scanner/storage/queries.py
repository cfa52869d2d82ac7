"""Read-only queries of the dashboard and its API: machines with their health, scans, change
events and summaries, each a page read by keyset (never OFFSET) over an index.

Pages are ordered newest first and resumed from a :class:`Cursor` (the sort key of the last
row returned). Change events are read in the ``(detected_at, id)`` order the 0007 indexes
hold; a path pattern (``changes --path``) narrows the SQL by its literal prefix and is then
matched in Python, a bounded number of rows per request (:data:`MAX_EXAMINED`): a page may
come back short with a cursor to go on from.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from scanner.emitters.records import FIELD_NAMES, REGISTRY_FIELD_NAMES
from scanner.errors import ConfigError, NotFound
from scanner.storage.repository import utc
from scanner.storage.tables import (
    account,
    change_event,
    disk,
    machine,
    policy_entity,
    scan,
)

FINISHED = ("succeeded", "partial", "failed")
DONE_WITH_EVENTS = ("succeeded", "partial")
CATEGORIES = ("added", "removed", "modified")
ENTITY_TYPES = ("file", "registry")
HEALTH_ORDER = ("failed", "stale", "pending", "ok")
MAX_PAGE = 500
MAX_EXAMINED = 20_000   # rows a pattern-filtered page reads at most before returning short
_BATCH = 1_000


# -- cursors ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page resumes: the sort key of the last row already returned."""

    key: tuple[Any, ...]

    def encode(self) -> str:
        """An opaque URL-safe token (the key as JSON, base64url)."""
        parts = [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v
                 for v in self.key]
        raw = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(token: str, kinds: Sequence[type]) -> Cursor:
        """The cursor a token holds, each part checked to be of ``kinds`` (``int`` or
        ``str``); a malformed token is a :class:`ConfigError`."""
        try:
            if len(token) > 4096:
                raise ValueError("too long")
            parts = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ConfigError("invalid cursor (use the next_cursor a page returned)") from None
        if (not isinstance(parts, list) or len(parts) != len(kinds)
                or not all(type(p) is k for p, k in zip(parts, kinds, strict=True))):
            raise ConfigError("invalid cursor (use the next_cursor a page returned)")
        return Cursor(tuple(parts))


@dataclass(slots=True)
class Page:
    """Rows of one page and the cursor of the next (None on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    return limit


# -- machines -----------------------------------------------------------------------------------
def _machine_status_query(now: datetime, stale_after: timedelta) -> Any:
    """One row per machine: account, cloud, latest finished scan, last successful (or
    partial) scan, and ``health`` (failed, stale, pending, ok) with its sort rank. Each
    machine's two scan ids are read backwards on the ``(machine_id, id)`` index, then their
    rows by primary key."""
    last = scan.alias("last_scan")
    ok = scan.alias("last_ok")
    newest = scan.alias("newest")
    ids = select(
        machine.c.id.label("machine_id"),
        select(func.max(newest.c.id)).where(newest.c.machine_id == machine.c.id,
                                            newest.c.status.in_(FINISHED))
        .scalar_subquery().label("last_id"),
        select(func.max(newest.c.id)).where(newest.c.machine_id == machine.c.id,
                                            newest.c.status.in_(DONE_WITH_EVENTS))
        .scalar_subquery().label("ok_id")).subquery("latest")
    older_than = now - stale_after
    rank = case(
        (last.c.status == "failed", 0),
        (func.coalesce(ok.c.finished_at, machine.c.created_at) < older_than, 1),
        (ok.c.id.is_(None), 2),
        else_=3)
    return (select(machine.c.id, machine.c.name, machine.c.os, machine.c.region,
                   machine.c.state, machine.c.present, machine.c.resource_id,
                   machine.c.created_at, account.c.name.label("account"),
                   account.c.cloud, last.c.id.label("last_scan_id"),
                   last.c.status.label("last_scan_status"),
                   last.c.finished_at.label("last_scan_at"),
                   last.c.error.label("last_scan_error"),
                   ok.c.id.label("last_success_scan_id"),
                   ok.c.finished_at.label("last_success_at"), rank.label("rank"))
            .join(account, account.c.id == machine.c.account_id)
            .join(ids, ids.c.machine_id == machine.c.id)
            .outerjoin(last, last.c.id == ids.c.last_id)
            .outerjoin(ok, ok.c.id == ids.c.ok_id))


def _machine_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["health"] = HEALTH_ORDER[int(out.pop("rank"))]
    out["present"] = bool(out["present"])
    for key in ("created_at", "last_scan_at", "last_success_at"):
        out[key] = utc(out[key])
    return out


def machines_page(conn: Connection, *, now: datetime, stale_after: timedelta, limit: int = 50,
                  cursor: str | None = None, account_name: str | None = None,
                  cloud: str | None = None, os_family: str | None = None,
                  health: str | None = None) -> Page:
    """Machines, failed first, then stale (no successful or partial scan within
    ``stale_after``), then never scanned, then healthy; by name within each; each with its
    ``total_changes``."""
    limit = _limit(limit)
    inner = _machine_status_query(now, stale_after)
    if account_name is not None:
        inner = inner.where(account.c.name == account_name)
    if cloud is not None:
        inner = inner.where(account.c.cloud == cloud)
    if os_family is not None:
        inner = inner.where(machine.c.os == os_family)
    sub = inner.subquery()
    query = select(sub)
    if health is not None:
        if health not in HEALTH_ORDER:
            raise ConfigError(f"health must be one of {', '.join(HEALTH_ORDER)}, not {health!r}")
        query = query.where(sub.c.rank == HEALTH_ORDER.index(health))
    if cursor is not None:
        after = Cursor.decode(cursor, (int, str, int)).key
        query = query.where(tuple_(sub.c.rank, sub.c.name, sub.c.id) > tuple_(*after))
    rows = conn.execute(query.order_by(sub.c.rank, sub.c.name, sub.c.id)
                        .limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_machine_dict(r) for r in rows]
    counts = change_counts(conn, [m["id"] for m in items])
    for item in items:
        item["total_changes"] = counts.get(item["id"], 0)
    last = rows[-1] if rows else None
    return Page(items, Cursor((last.rank, last.name, last.id)).encode()
                if more and last is not None else None)


def change_counts(conn: Connection, machine_ids: Sequence[int]) -> dict[int, int]:
    """How many change events each of these machines has (an index-only count each)."""
    if not machine_ids:
        return {}
    rows = conn.execute(select(change_event.c.machine_id, func.count())
                        .where(change_event.c.machine_id.in_(machine_ids))
                        .group_by(change_event.c.machine_id))
    return {int(m): int(n) for m, n in rows}


def machine_detail(conn: Connection, machine_id: int, *, now: datetime,
                   stale_after: timedelta) -> dict[str, Any]:
    """One machine with its health, its present disks and the monitored entities of its
    latest completed scan (the policy in force)."""
    query = _machine_status_query(now, stale_after).where(machine.c.id == machine_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no machine with id {machine_id}")
    out = _machine_dict(row)
    out["total_changes"] = change_counts(conn, [machine_id]).get(machine_id, 0)
    out["tags"] = conn.execute(select(machine.c.tags).where(machine.c.id == machine_id)
                               ).scalar() or {}
    out["disks"] = [
        {"id": d.id, "resource_id": d.resource_id, "device": d.device,
         "size_bytes": d.size_bytes}
        for d in conn.execute(select(disk).where(disk.c.machine_id == machine_id, disk.c.present)
                              .order_by(disk.c.id))]
    in_force: list[str] = []
    if out["last_success_scan_id"] is not None:
        in_force = list(conn.execute(select(scan.c.policies).where(
            scan.c.id == out["last_success_scan_id"])).scalar() or ())
    out["policies"] = in_force
    return out


def machine_id_by_name(conn: Connection, name: str, account_name: str | None = None) -> int:
    """The id of the machine called ``name`` (in ``account_name`` when given)."""
    query = select(machine.c.id).where(machine.c.name == name)
    if account_name is not None:
        query = query.join(account, account.c.id == machine.c.account_id).where(
            account.c.name == account_name)
    ids = conn.execute(query.limit(2)).scalars().all()
    if not ids:
        raise NotFound(f"unknown machine {name!r}")
    if len(ids) > 1:
        raise ConfigError(f"machine name {name!r} exists in several accounts: give the account")
    return int(ids[0])


# -- scans --------------------------------------------------------------------------------------
SCAN_COLUMNS = ("id", "machine_id", "status", "started_at", "finished_at", "baseline",
                "entities", "added", "removed", "modified", "error", "attempts", "source",
                "coverage", "policies")


SECRET_KEYS = frozenset({"role_arn", "external_id"})  # what a scan's source never shows


def redacted(value: Any) -> Any:
    """``value`` (a scan's source locator: a mapping, possibly listing one per disk) without
    the keys of :data:`SECRET_KEYS`, at any depth (pure)."""
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items() if k not in SECRET_KEYS}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def scans_page(conn: Connection, *, machine_id: int | None = None, status: str | None = None,
               limit: int = 20, cursor: str | None = None) -> Page:
    """Scans newest first (by id), each with its machine's name and its coverage report."""
    limit = _limit(limit)
    query = (select(*(scan.c[c] for c in SCAN_COLUMNS), machine.c.name.label("machine"))
             .join(machine, machine.c.id == scan.c.machine_id))
    if machine_id is not None:
        query = query.where(scan.c.machine_id == machine_id)
    if status is not None:
        query = query.where(scan.c.status == status)
    if cursor is not None:
        query = query.where(scan.c.id < Cursor.decode(cursor, (int,)).key[0])
    rows = [dict(r._mapping) for r in conn.execute(query.order_by(scan.c.id.desc())
                                                   .limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["started_at"], row["finished_at"] = utc(row["started_at"]), utc(row["finished_at"])
        row["baseline"] = bool(row["baseline"])
        row["source"] = redacted(row["source"])
    return Page(rows, Cursor((rows[-1]["id"],)).encode() if more and rows else None)


def scan_detail(conn: Connection, scan_id: int) -> dict[str, Any]:
    """One scan (as :func:`scans_page` gives them)."""
    query = (select(*(scan.c[c] for c in SCAN_COLUMNS), machine.c.name.label("machine"))
             .join(machine, machine.c.id == scan.c.machine_id).where(scan.c.id == scan_id))
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no scan with id {scan_id}")
    out = dict(row._mapping)
    out["started_at"], out["finished_at"] = utc(out["started_at"]), utc(out["finished_at"])
    out["baseline"] = bool(out["baseline"])
    out["source"] = redacted(out["source"])
    return out


# -- change events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChangeFilter:
    """What the changes table and ``/api/v1/changes`` narrow by (all optional)."""

    since: datetime | None = None
    until: datetime | None = None
    account: str | None = None
    machine: str | None = None
    machine_id: int | None = None
    entity_type: str | None = None
    category: str | None = None
    path: str | None = None
    field: str | None = None
    scan_id: int | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` for a value no event can have."""
        if self.entity_type is not None and self.entity_type not in ENTITY_TYPES:
            raise ConfigError(f"type must be file or registry, not {self.entity_type!r}")
        if self.category is not None and self.category not in CATEGORIES:
            raise ConfigError(f"category must be added, removed or modified, "
                              f"not {self.category!r}")
        if self.path is not None and not self.path.strip():
            raise ConfigError("path cannot be empty")
        if self.field is not None and not field_names(self.field):
            raise ConfigError(f"unknown field {self.field!r}")


def field_names(name: str) -> set[str]:
    """The stored field names a ``field`` filter means: a stored name (``uid``) or its
    ConfigurationChange name (``OwnerId``, ``ValueData``), any case."""
    wanted = name.lower()
    stored = set(FIELD_NAMES) | set(REGISTRY_FIELD_NAMES)
    found = {f for f in stored if f.lower() == wanted}
    found |= {f for f, n in FIELD_NAMES.items() if n.lower() == wanted}
    found |= {f for f, n in REGISTRY_FIELD_NAMES.items() if n.lower() == wanted}
    if wanted == "valuedata":
        found.add("sha256")
    return found


@dataclass(slots=True)
class _Plan:
    where: list[ColumnElement[bool]] = field(default_factory=list)
    matches: Callable[[str], bool] | None = None


def _change_plan(conn: Connection, flt: ChangeFilter) -> _Plan:
    from scanner.policy import path_matcher

    flt.check()
    plan = _Plan()
    c = change_event.c
    if flt.since is not None:
        plan.where.append(c.detected_at >= _time_bound(conn, flt.since))
    if flt.until is not None:
        plan.where.append(c.detected_at < _time_bound(conn, flt.until))
    if flt.machine_id is not None:
        plan.where.append(c.machine_id == flt.machine_id)
    if flt.machine is not None:
        plan.where.append(c.machine_id == machine_id_by_name(conn, flt.machine, flt.account))
    elif flt.account is not None:
        found = conn.execute(select(account.c.id).where(account.c.name == flt.account)).scalar()
        if found is None:
            raise NotFound(f"unknown account {flt.account!r}")
        plan.where.append(c.machine_id.in_(
            select(machine.c.id).where(machine.c.account_id == found).scalar_subquery()))
    if flt.entity_type is not None:
        plan.where.append(c.entity_type == flt.entity_type)
    if flt.category is not None:
        plan.where.append(c.category == flt.category)
    if flt.scan_id is not None:
        plan.where.append(c.scan_id == flt.scan_id)
    if flt.field is not None:
        # fields_changed is a JSON list of plain names: its text holds "name" exactly
        text = cast(c.fields_changed, Text)
        plan.where.append(or_(*(text.contains(f'"{name}"', autoescape=True)
                                for name in sorted(field_names(flt.field)))))
    if flt.path:
        matches, prefix = path_matcher(flt.path)
        if prefix:
            if flt.path.startswith("/"):
                plan.where.append(c.path.startswith(prefix, autoescape=True))
            else:
                plan.where.append(func.lower(c.path).startswith(prefix.lower(),
                                                                autoescape=True))
        plan.matches = matches
    return plan


def _time_bound(conn: Connection, value: datetime) -> Any:
    """A time to compare ``change_event.detected_at`` with. SQLite compares the stored text:
    events are written as ``str()`` of an aware UTC time (``2026-12-01 12:00:00.5+00:00``),
    so the bound is spelt the same way."""
    value = value.astimezone(UTC)
    if conn.dialect.name == "sqlite":
        return literal(str(value), Text)
    return literal(value, change_event.c.detected_at.type)


def _time_key(conn: Connection) -> Any:
    """The sort key of an event's time as a cursor holds it: the stored text on SQLite (so a
    page resumes exactly where the last one stopped, whatever the spelling), the time on
    PostgreSQL."""
    if conn.dialect.name == "sqlite":
        return cast(change_event.c.detected_at, Text).label("time_key")
    return change_event.c.detected_at.label("time_key")


def _key_bound(conn: Connection, key: str) -> Any:
    if conn.dialect.name == "sqlite":
        return literal(key, Text)
    try:
        value = datetime.fromisoformat(key)
    except ValueError:
        raise ConfigError("invalid cursor (use the next_cursor a page returned)") from None
    if value.tzinfo is None:
        raise ConfigError("invalid cursor (use the next_cursor a page returned)")
    return literal(value.astimezone(UTC), change_event.c.detected_at.type)


def changes_page(conn: Connection, flt: ChangeFilter, *, limit: int = 50,
                 cursor: str | None = None) -> Page:
    """Change events newest first (``detected_at``, then id), with the machine's name and
    account, as rows :func:`scanner.emitters.records.event_record` turns into records."""
    limit = _limit(limit)
    plan = _change_plan(conn, flt)
    after: tuple[Any, ...] | None = None
    if cursor is not None:
        after = Cursor.decode(cursor, (str, int)).key
        _key_bound(conn, after[0])
    base = (select(change_event, machine.c.name.label("machine"),
                   account.c.name.label("account"), _time_key(conn))
            .join(machine, machine.c.id == change_event.c.machine_id)
            .join(account, account.c.id == machine.c.account_id)
            .where(*plan.where))
    order = (change_event.c.detected_at.desc(), change_event.c.id.desc())
    items: list[dict[str, Any]] = []
    examined = 0
    batch = limit + 1 if plan.matches is None else _BATCH
    while True:
        query = base
        if after is not None:
            query = query.where(tuple_(change_event.c.detected_at, change_event.c.id)
                                < tuple_(_key_bound(conn, after[0]), literal(after[1])))
        rows = conn.execute(query.order_by(*order).limit(batch)).all()
        for row in rows:
            examined += 1
            key = (_key_text(row.time_key), int(row.id))
            if plan.matches is not None and not plan.matches(row.path):
                after = key
                continue
            if len(items) == limit:   # one more row matches: there is a next page
                assert after is not None
                return Page(items, Cursor(after).encode())
            items.append(_event_dict(row))
            after = key
        if len(rows) < batch:
            return Page(items, None)
        if examined >= MAX_EXAMINED:  # bounded work per request: a short page, go on later
            assert after is not None
            return Page(items, Cursor(after).encode())


def _key_text(value: Any) -> str:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


def _event_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out.pop("time_key", None)
    for key in ("detected_at", "window_start", "window_end"):
        out[key] = utc(out[key])
    return out


# -- summary ------------------------------------------------------------------------------------
def _day(conn: Connection, column: Any) -> Any:
    """The UTC day of a time column as ``YYYY-MM-DD`` text."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(cast(column, Text), 1, 10)


def change_summary(conn: Connection, *, since: datetime, until: datetime | None = None,
                   top: int = 10) -> dict[str, Any]:
    """The changes in ``[since, until)``: total, by type, by category, per day (by category
    and by type), and the ``top`` machines with most.

    Counts by category come from the scan rows (each completed scan holds how many events it
    added, removed and modified, and its events are stamped with its finish time): a read of
    the scans in the window, not of every event. By type, the registry events are counted
    (by the ``(entity_type, detected_at)`` index) and the rest are files.
    """
    finished = [scan.c.status.in_(DONE_WITH_EVENTS), scan.c.finished_at >= since]
    registry = [change_event.c.entity_type == "registry",
                change_event.c.detected_at >= _time_bound(conn, since)]
    if until is not None:
        finished.append(scan.c.finished_at < until)
        registry.append(change_event.c.detected_at < _time_bound(conn, until))
    per_day: dict[str, dict[str, int]] = {}
    day = _day(conn, scan.c.finished_at).label("day")
    for d, added, removed, modified in conn.execute(
            select(day, func.sum(scan.c.added), func.sum(scan.c.removed),
                   func.sum(scan.c.modified)).where(*finished).group_by(day)):
        counts = {"added": int(added or 0), "removed": int(removed or 0),
                  "modified": int(modified or 0)}
        if sum(counts.values()):
            per_day[str(d)] = {**counts, "file": sum(counts.values()), "registry": 0}
    event_day = _day(conn, change_event.c.detected_at).label("day")
    for d, count in conn.execute(select(event_day, func.count()).where(*registry)
                                 .group_by(event_day)):
        slot = per_day.setdefault(str(d), dict.fromkeys((*CATEGORIES, *ENTITY_TYPES), 0))
        slot["registry"] += int(count)
        slot["file"] -= int(count)
    by_category = {c: sum(v[c] for v in per_day.values()) for c in CATEGORIES}
    by_type = {t: sum(v[t] for v in per_day.values()) for t in ENTITY_TYPES}
    n = func.sum(scan.c.added + scan.c.removed + scan.c.modified).label("changes")
    top_rows = conn.execute(
        select(machine.c.id, machine.c.name, account.c.name.label("account"), n)
        .select_from(scan)
        .join(machine, machine.c.id == scan.c.machine_id)
        .join(account, account.c.id == machine.c.account_id)
        .where(*finished).group_by(machine.c.id, machine.c.name, account.c.name)
        .having(n > 0).order_by(n.desc(), machine.c.name).limit(top)).all()
    return {
        "total_changes": sum(by_category.values()), "by_type": by_type,
        "by_category": by_category,
        "per_day": [{"day": d, **v} for d, v in sorted(per_day.items())],
        "top_machines": [{"id": r.id, "machine": r.name, "account": r.account,
                          "changes": int(r.changes)} for r in top_rows]}


def machine_days(conn: Connection, machine_id: int, *, since: datetime) -> list[dict[str, Any]]:
    """One machine's changes per day since ``since``, by category (from its scan rows)."""
    day = _day(conn, scan.c.finished_at).label("day")
    rows = conn.execute(
        select(day, func.sum(scan.c.added), func.sum(scan.c.removed),
               func.sum(scan.c.modified))
        .where(scan.c.machine_id == machine_id, scan.c.status.in_(DONE_WITH_EVENTS),
               scan.c.finished_at >= since).group_by(day).order_by(day))
    return [{"day": str(d), "added": int(a or 0), "removed": int(r or 0),
             "modified": int(m or 0)} for d, a, r, m in rows]


def fleet_counts(conn: Connection) -> dict[str, Any]:
    """Machines in all, and by account, by cloud and by operating system."""
    fleet: dict[str, Any] = {}
    for key, col in (("by_account", account.c.name), ("by_cloud", account.c.cloud),
                     ("by_os", machine.c.os)):
        fleet[key] = [{"name": name, "machines": int(count)} for name, count in conn.execute(
            select(col, func.count()).select_from(machine)
            .join(account, account.c.id == machine.c.account_id)
            .group_by(col).order_by(col))]
    fleet["machines"] = int(conn.execute(select(func.count()).select_from(machine)).scalar()
                            or 0)
    return fleet


def data_version(conn: Connection) -> tuple[int, ...]:
    """What changes whenever :func:`change_summary` could: the newest machine, scan and
    event ids and the number of machines (a scan's counts are written with its events;
    deleting a machine takes its scans and events with it). Read on primary keys."""
    row = conn.execute(select(
        select(func.count()).select_from(machine).scalar_subquery(),
        select(func.max(machine.c.id)).scalar_subquery(),
        select(func.max(scan.c.id)).scalar_subquery(),
        select(func.max(change_event.c.id)).scalar_subquery())).one()
    return tuple(int(v or 0) for v in row)


def summary(conn: Connection, *, since: datetime, until: datetime | None = None,
            top: int = 10) -> dict[str, Any]:
    """The overview's numbers for ``[since, until)``: :func:`fleet_counts` and
    :func:`change_summary`."""
    return {"since": since, "until": until, **fleet_counts(conn),
            **change_summary(conn, since=since, until=until, top=top)}


def health_counts(conn: Connection, *, now: datetime, stale_after: timedelta) -> dict[str, int]:
    """How many machines are failed, stale, pending (never scanned) and ok."""
    sub = _machine_status_query(now, stale_after).subquery()
    counts = dict.fromkeys(HEALTH_ORDER, 0)
    for rank, count in conn.execute(select(sub.c.rank, func.count()).group_by(sub.c.rank)):
        counts[HEALTH_ORDER[int(rank)]] = int(count)
    return counts


# -- policy -------------------------------------------------------------------------------------
def policy_scopes(conn: Connection, account_name: str | None = None) -> list[dict[str, Any]]:
    """Each scope's monitored entities (the global policy `snapfim scan` uses first, then
    each account's), enabled or not, as stored; read-only."""
    accounts = conn.execute(select(account.c.id, account.c.name, account.c.cloud)
                            .order_by(account.c.name)).all()
    scopes: list[dict[str, Any]] = []
    if account_name is None:
        scopes.append({"account": None, "cloud": None, "account_id": None})
    scopes += [{"account": a.name, "cloud": a.cloud, "account_id": a.id} for a in accounts
               if account_name is None or a.name == account_name]
    if account_name is not None and not scopes:
        raise NotFound(f"unknown account {account_name!r}")
    for scope in scopes:
        owner = func.coalesce(policy_entity.c.account_id, 0) == (scope["account_id"] or 0)
        scope["entities"] = [
            {"name": r.name, "kind": r.kind, "path": r.path, "depth": r.depth,
             "excludes": list(r.excludes or ()), "values": list(r.value_names or ()),
             "enabled": bool(r.enabled), "source": r.source,
             "content": r.content or "default"}
            for r in conn.execute(select(policy_entity).where(owner).order_by(
                policy_entity.c.kind, policy_entity.c.name))]
    return scopes


__all__ = ["Cursor", "ChangeFilter", "Page", "changes_page", "machines_page", "machine_detail",
           "scans_page", "scan_detail", "summary", "change_summary", "fleet_counts",
           "data_version", "machine_days", "health_counts", "policy_scopes",
           "change_counts", "machine_id_by_name", "field_names"]
