"""Reads and writes of machines, scans, file state and change events (bulk, set-at-a-time).

One scan commits in one transaction: the scan row, its state rows and its change events land
together or not at all. SQLAlchemy and driver errors are translated into
:class:`~scanner.errors.StorageError` here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Text,
    cast,
    column,
    delete,
    func,
    insert,
    select,
    table,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from scanner.changetracking.content import purge_machine_content
from scanner.changetracking.model import Inventory
from scanner.changetracking.query import UNEXPLAINED
from scanner.changetracking.store import commit_inventory, load_parses
from scanner.diff import ChangeEvent, FileDiff
from scanner.entities import FILE_RECORDED_FIELDS, FileEntity, RegistryEntity
from scanner.errors import NotFound, StorageError, TransientStorageError
from scanner.storage.bulk import bulk_insert
from scanner.storage.hives import HiveSkip, record_hives, stored_hives
from scanner.storage.sqldiff import FILE_STATE, REGISTRY_STATE, diff_into_state
from scanner.storage.tables import (
    account,
    change_event,
    file_state,
    inventory_source,
    inventory_state,
    machine,
    package_owner,
    package_parse,
    registry_hive,
    registry_state,
    scan,
)
from scanner.textsafe import storable, storable_id, storable_json

# The account `snapfim scan` files its machines under (created on first use). Its name is
# reserved: no cloud is called that, so `snapfim account remove local` never reaches it.
LOCAL_ACCOUNT = "cli"
_CHUNK = 500

if TYPE_CHECKING:  # a Linux scan loads no registry module
    from scanner.registry.unchanged import StoredHive


def utc(value: datetime | None) -> datetime | None:
    """Attach UTC to the naive datetimes SQLite returns."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class PreviousScan:
    """The last completed scan of a machine: what the diff needs from it."""

    id: int
    finished_at: datetime
    policies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompletedScan:
    """The last completed scan of a machine: what an incremental scan checks of it."""

    id: int
    status: str                  # succeeded or partial
    source: dict[str, Any]       # the locator of what it read (a machine locator)
    coverage: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScanRecord:
    """A committed scan, as the CLI reports it."""

    id: int
    machine: str
    status: str
    baseline: bool
    entities: int
    added: int
    removed: int
    modified: int
    events: list[ChangeEvent]


class Repository:
    """Database access for scans and their results."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction; errors are translated into our tree."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise TransientStorageError(f"database unavailable: {exc.orig}") from exc
        except IntegrityError as exc:
            raise StorageError(f"conflicting write: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc}") from exc

    # -- accounts and machines --------------------------------------------------------------
    def account_id(self, conn: Connection, name: str = LOCAL_ACCOUNT, cloud: str = "local") -> int:
        """Id of an account, created on first use (the built-in ``local`` one)."""
        found = conn.execute(select(account.c.id).where(account.c.name == name)).scalar()
        if found is not None:
            return int(found)
        return _new_id(conn.execute(insert(account).values(name=name, cloud=cloud, config={},
                                                       enabled=True)))

    def machine_id(self, conn: Connection, name: str, *, create: bool = False,
                   os_family: str | None = None, account_id: int | None = None) -> int:
        """Id of a machine by name (unique across accounts unless ``account_id`` is given)."""
        query = select(machine.c.id).where(machine.c.name == name)
        if account_id is not None:
            query = query.where(machine.c.account_id == account_id)
        rows = conn.execute(query).scalars().all()
        if len(rows) > 1:
            raise StorageError(f"machine name {name!r} exists in several accounts")
        if rows:
            return int(rows[0])
        if not create:
            raise NotFound(f"no machine named {name!r}")
        acct = account_id if account_id is not None else self.account_id(conn)
        return _new_id(conn.execute(insert(machine).values(
            account_id=acct, name=name, os=os_family)))

    def lock_machine(self, conn: Connection, machine_id: int) -> None:
        """Serialise scans of one machine (row lock on PostgreSQL; SQLite locks the file)."""
        conn.execute(select(machine.c.id).where(machine.c.id == machine_id).with_for_update())

    def delete_machine(self, name: str) -> bool:
        """Remove a machine with its scans, state, events and the stored content no other
        machine keeps; False if it did not exist."""
        with self.transaction() as conn:
            try:
                mid = self.machine_id(conn, name)
            except NotFound:
                return False
            purge_machine_content(conn, [mid])
            for table in (change_event, file_state, registry_state, registry_hive,
                          inventory_state, inventory_source, package_owner, package_parse,
                          scan):
                conn.execute(delete(table).where(table.c.machine_id == mid))
            conn.execute(delete(machine).where(machine.c.id == mid))
        return True

    # -- state ------------------------------------------------------------------------------
    def previous_scan(self, conn: Connection, machine_id: int) -> PreviousScan | None:
        """The machine's last completed (succeeded or partial) scan."""
        row = conn.execute(
            select(scan.c.id, scan.c.finished_at, scan.c.policies)
            .where(scan.c.machine_id == machine_id, scan.c.status.in_(("succeeded", "partial")))
            .order_by(scan.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return PreviousScan(int(row.id), utc(row.finished_at) or datetime.now(UTC),
                            tuple(row.policies or ()))

    def last_completed_scan(self, conn: Connection, machine_id: int) -> CompletedScan | None:
        """The machine's last completed (succeeded or partial) scan, with what it read."""
        row = conn.execute(
            select(scan.c.id, scan.c.status, scan.c.source, scan.c.coverage)
            .where(scan.c.machine_id == machine_id, scan.c.status.in_(("succeeded", "partial")))
            .order_by(scan.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return CompletedScan(int(row.id), str(row.status), dict(row.source or {}),
                             dict(row.coverage or {}))

    def load_file_state(self, conn: Connection, machine_id: int) -> dict[str, FileEntity]:
        """The machine's current known file state, by path."""
        plain = [f for f in FILE_RECORDED_FIELDS if f != "xattrs"]
        query = select(file_state.c.path, *(file_state.c[f] for f in plain),
                       cast(file_state.c.xattrs, Text), cast(file_state.c.policies, Text)
                       ).where(file_state.c.machine_id == machine_id)
        decoded: dict[str, tuple[str, ...]] = {}
        result: dict[str, FileEntity] = {}
        for row in conn.execute(query):
            path, *values, xattrs, policies = row
            entity = FileEntity(path, **dict(zip(plain, values, strict=True)))
            entity.xattrs = {} if xattrs in (None, "{}") else json.loads(xattrs)
            names = decoded.get(policies)
            if names is None:
                names = decoded[policies] = tuple(json.loads(policies or "[]"))
            entity.policies = names
            result[path] = entity
        return result

    def file_digests(self, machine_name: str, account_id: int | None = None
                     ) -> dict[str, str] | None:
        """The SHA-256 of each regular file of a machine's state, by path; None for a
        machine without a completed scan."""
        with self.transaction() as conn:
            try:
                mid = self.machine_id(conn, machine_name, account_id=account_id)
            except NotFound:
                return None
            if self.previous_scan(conn, mid) is None:
                return None
            rows = conn.execute(select(file_state.c.path, file_state.c.sha256).where(
                file_state.c.machine_id == mid, file_state.c.type == "file",
                file_state.c.sha256.is_not(None)))
            return {path: digest for path, digest in rows}

    def package_parses(self, machine_name: str, account_id: int | None = None
                       ) -> bytes | None:
        """The package database parses stored at a machine's last scan (None: none;
        :mod:`scanner.changetracking.parses`)."""
        with self.transaction() as conn:
            try:
                mid = self.machine_id(conn, machine_name, account_id=account_id)
            except NotFound:
                return None
            return load_parses(conn, mid)

    def load_registry_state(self, conn: Connection, machine_id: int
                            ) -> dict[str, RegistryEntity]:
        """The machine's current known registry state, by key path or value id."""
        rows = conn.execute(select(registry_state)
                            .where(registry_state.c.machine_id == machine_id))
        return {row.path: REGISTRY_STATE.entity(row._mapping, "")  # type: ignore[misc]
                for row in rows}

    # -- committing a scan ------------------------------------------------------------------
    def commit_scan(self, conn: Connection, machine_id: int, *,
                    entities: Iterable[FileEntity], unreadable: Collection[str],
                    previous: PreviousScan | None, started_at: datetime, finished_at: datetime,
                    status: str, source: dict[str, Any], coverage: dict[str, Any],
                    policies: list[str], scan_id: int | None = None,
                    registry: Iterable[RegistryEntity] = (),
                    unchanged_hives: Mapping[str, StoredHive] | None = None,
                    os_family: str | None = None,
                    inventory: Inventory | None = None) -> tuple[int, FileDiff]:
        """Diff the scan's file and registry entities against the state and write everything,
        in the caller's transaction: the scan row (created, or the fleet's row updated), the
        state, the events, the machine's last scan (and ``os_family``, when given).
        ``unreadable`` holds paths and registry ids whose state is unknown. Every string is
        stored as :func:`scanner.textsafe.storable` makes it (NUL and unpaired surrogates
        escaped), and the events carry the same spelling as the state. ``unchanged_hives``:
        the hives the scan did not walk, confirmed by
        :func:`scanner.storage.hives.confirm_unchanged`: their state is kept as it is.
        """
        # one representation in the database (scanner.textsafe): the rows are made storable
        # where they are built (sqldiff), the paths they are compared with and the report here
        unreadable = [storable_id(u) for u in unreadable]
        coverage = storable_json(coverage)
        source = storable_json(source)
        if scan_id is None:
            scan_id = _new_id(conn.execute(insert(scan).values(
                machine_id=machine_id, status="running", started_at=started_at, source=source)))
        diff, total = FileDiff(), 0
        hives = HiveSkip(stored_hives(conn, machine_id), enabled=previous is not None,
                         unchanged=unchanged_hives)
        for spec, items, skip in ((FILE_STATE, entities, None),
                                  (REGISTRY_STATE, registry, hives)):
            diff, staged = diff_into_state(
                conn, machine_id, scan_id, items,
                previous_policies=previous.policies if previous else None,
                current_policies=policies, unreadable=unreadable, spec=spec, out=diff,
                skip=skip)
            total += staged
        record_hives(conn, machine_id, scan_id, hives.seen)
        commit_inventory(conn, machine_id, scan_id, inventory, previous is None, diff)
        if diff.events:
            window_start = previous.finished_at if previous else None
            bulk_insert(conn, change_event, _EVENT_COLUMNS, (
                (machine_id, scan_id, previous.id if previous else None, finished_at,
                 window_start, finished_at, e.entity_type, e.category, e.path, e.value_name,
                 tuple(e.fields_changed), e.previous, e.current, tuple(e.policies),
                 None if e.package is None else storable(e.package), e.verdict,
                 None if e.content_diff is None else storable(e.content_diff))
                for e in diff.events))
        conn.execute(update(scan).where(scan.c.id == scan_id).values(
            status=status, finished_at=finished_at, source=source, baseline=diff.baseline,
            entities=total, policies=policies, coverage=coverage, error=None, **diff.counts()))
        found = {} if os_family is None else {"os": os_family}
        conn.execute(update(machine).where(machine.c.id == machine_id)
                     .values(last_scan_id=scan_id, **found))
        return scan_id, diff

    # -- queries ----------------------------------------------------------------------------
    def changes(self, *, machine_name: str | None = None, since: datetime | None = None,
                category: str | None = None, entity_type: str | None = None,
                scan_id: int | None = None, limit: int | None = None,
                account_name: str | None = None, path_prefix: str | None = None,
                prefix_case_sensitive: bool = True,
                unexplained: bool = False) -> list[dict[str, Any]]:
        """Change events, oldest first, with the machine's name; ``path_prefix`` keeps the
        events whose path starts with it (compared in lower case unless
        ``prefix_case_sensitive``); ``unexplained`` the events no package explains
        (:data:`scanner.changetracking.query.UNEXPLAINED`)."""
        query = (select(change_event, machine.c.name.label("machine"))
                 .join(machine, machine.c.id == change_event.c.machine_id))
        if machine_name is not None:
            query = query.where(machine.c.name == machine_name)
        if account_name is not None:
            query = query.join(account, account.c.id == machine.c.account_id).where(
                account.c.name == account_name)
        if path_prefix:
            if prefix_case_sensitive:
                query = query.where(change_event.c.path.startswith(path_prefix, autoescape=True))
            else:
                query = query.where(func.lower(change_event.c.path).startswith(
                    path_prefix.lower(), autoescape=True))
        if since is not None:
            query = query.where(change_event.c.detected_at >= since)
        if category is not None:
            query = query.where(change_event.c.category == category)
        if entity_type is not None:
            query = query.where(change_event.c.entity_type == entity_type)
        if scan_id is not None:
            query = query.where(change_event.c.scan_id == scan_id)
        if unexplained:
            query = query.where(UNEXPLAINED)
        query = query.order_by(change_event.c.id)
        if limit is not None:
            query = query.order_by(None).order_by(change_event.c.id.desc()).limit(limit)
        with self.transaction() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if limit is not None:
            rows.reverse()
        for row in rows:
            for key in ("detected_at", "window_start", "window_end"):
                row[key] = utc(row[key])
        return rows

    def scans(self, machine_name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent scans, newest first, with the machine's name."""
        query = (select(scan, machine.c.name.label("machine"))
                 .join(machine, machine.c.id == scan.c.machine_id))
        if machine_name is not None:
            query = query.where(machine.c.name == machine_name)
        query = query.order_by(scan.c.id.desc()).limit(limit)
        with self.transaction() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["started_at"], row["finished_at"] = utc(row["started_at"]), utc(row["finished_at"])
        return rows

    def scan_row(self, scan_id: int) -> dict[str, Any]:
        """One scan with its machine's name."""
        query = (select(scan, machine.c.name.label("machine"))
                 .join(machine, machine.c.id == scan.c.machine_id).where(scan.c.id == scan_id))
        with self.transaction() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no scan with id {scan_id}")
        return dict(row._mapping)

    def machines(self, account_name: str | None = None) -> list[dict[str, Any]]:
        """All machines (or one account's), by name, as the ``fim_machine_status`` view shows
        them: ``name``, ``account``, ``cloud``, ``os``, ``present``, ``scans`` (finished),
        ``last_scan_id``/``last_scan_status``/``last_scan_at``/``last_scan_error`` (the latest
        finished scan, any outcome), ``last_success_scan_id``/``last_success_at`` (the latest
        succeeded one) and ``total_changes``."""
        query = (select(MACHINE_STATUS).order_by(MACHINE_STATUS.c.machine,
                                                 MACHINE_STATUS.c.account))
        if account_name is not None:
            query = query.where(MACHINE_STATUS.c.account == account_name)
        with self.transaction() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["name"] = row.pop("machine")
            row["present"] = bool(row["present"])
            row["last_scan_at"] = utc(row["last_scan_at"])
            row["last_success_at"] = utc(row["last_success_at"])
        return rows

    def require_machine(self, name: str) -> None:
        """Raise :class:`NotFound` ("unknown machine 'x'") unless a machine has this name."""
        with self.transaction() as conn:
            found = conn.execute(select(machine.c.id).where(machine.c.name == name)
                                 .limit(1)).first()
        if found is None:
            raise NotFound(f"unknown machine {name!r}")


# The view the migrations create (0004): one row per machine with its latest scan.
MACHINE_STATUS = table(
    "fim_machine_status", *(column(name) for name in (
        "id", "account", "cloud", "machine", "os", "region", "state", "present",
        "last_scan_id", "last_scan_status", "last_scan_error", "last_success_scan_id",
        "scans", "total_changes")),
    column("last_scan_at", DateTime(timezone=True)),
    column("last_success_at", DateTime(timezone=True)))

_EVENT_COLUMNS = ("machine_id", "scan_id", "previous_scan_id", "detected_at", "window_start",
                  "window_end", "entity_type", "category", "path", "value_name",
                  "fields_changed", "previous", "current", "policies", "package",
                  "package_verdict", "content_diff")


def _new_id(result: Any) -> int:
    """The primary key an INSERT produced."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])
