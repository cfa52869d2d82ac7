"""Monitored entities in the database: the recommended defaults (seeded) and custom ones,
with their content settings (``policy_entity.content``: keep | never, NULL the default)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update

from scanner.changetracking.keeping import ContentRules
from scanner.errors import NotFound, PolicyError
from scanner.policy import (
    ContentMode,
    EntityKind,
    EntitySource,
    PolicyEntity,
    check_content,
    recommended_entities,
)
from scanner.storage.tables import machine, policy_entity

if TYPE_CHECKING:
    from scanner.storage.repository import Repository


def _scope(account_id: int | None) -> ColumnElement[bool]:
    return func.coalesce(policy_entity.c.account_id, 0) == (account_id or 0)


def ensure_recommended(conn: Connection, account_id: int | None = None) -> int:
    """Insert the recommended entities missing from a scope; returns how many were added."""
    have = set(conn.execute(select(policy_entity.c.name).where(_scope(account_id))).scalars())
    rows = [_row(e, account_id) for e in recommended_entities() if e.name not in have]
    if rows:
        conn.execute(insert(policy_entity), rows)
    return len(rows)


def load_policy(conn: Connection, account_id: int | None = None) -> list[PolicyEntity]:
    """All entities of a scope (global when ``account_id`` is None), enabled or not."""
    query = select(policy_entity).where(_scope(account_id)).order_by(policy_entity.c.kind,
                                                                      policy_entity.c.name)
    return [PolicyEntity(name=r.name, kind=EntityKind(r.kind), path=r.path, depth=r.depth,
                         excludes=tuple(r.excludes or ()), values=tuple(r.value_names or ()),
                         enabled=bool(r.enabled), source=EntitySource(r.source),
                         content=_content(r.content))
            for r in conn.execute(query)]


def _content(value: str | None) -> ContentMode:
    try:
        return ContentMode(value or ContentMode.DEFAULT.value)
    except ValueError:  # a value this version does not know: the safe side
        return ContentMode.NEVER


def add_entity(conn: Connection, entity: PolicyEntity, account_id: int | None = None) -> None:
    """Add a custom entity; its name must be new in the scope."""
    taken = conn.execute(select(policy_entity.c.id).where(
        _scope(account_id), policy_entity.c.name == entity.name)).first()
    if taken is not None:
        raise PolicyError(f"an entity named {entity.name!r} exists already")
    conn.execute(insert(policy_entity).values(**_row(entity, account_id)))


def set_enabled(conn: Connection, name: str, enabled: bool, account_id: int | None = None) -> None:
    """Enable or disable an entity by name, keeping its definition."""
    done = conn.execute(update(policy_entity)
                        .where(_scope(account_id), policy_entity.c.name == name)
                        .values(enabled=enabled))
    if done.rowcount == 0:
        raise NotFound(f"no monitored entity named {name!r} (see `snapfim policy show`)")


def set_content(conn: Connection, name: str, content: ContentMode,
                account_id: int | None = None) -> PolicyEntity:
    """Set an entity's content setting by name (recommended entities too); returns it. The
    machines it covers apply it at their next scan (content newly kept is read, content no
    longer kept is purged)."""
    found = [e for e in load_policy(conn, account_id) if e.name == name]
    if not found:
        raise NotFound(f"no monitored entity named {name!r} (see `snapfim policy show`)")
    check_content(found[0].path, found[0].kind, content)
    conn.execute(update(policy_entity)
                 .where(_scope(account_id), policy_entity.c.name == name)
                 .values(content=_stored(content)))
    return replace(found[0], content=content)


def remove_entity(conn: Connection, name: str, account_id: int | None = None) -> None:
    """Delete a custom entity; recommended ones can only be disabled."""
    row = conn.execute(select(policy_entity.c.source).where(
        _scope(account_id), policy_entity.c.name == name)).first()
    if row is None:
        raise NotFound(f"no monitored entity named {name!r} (see `snapfim policy show`)")
    if row.source == EntitySource.RECOMMENDED.value:
        raise PolicyError(f"{name!r} is a recommended entity: disable it instead "
                          f"(`snapfim policy disable {name}`)")
    conn.execute(delete(policy_entity).where(_scope(account_id), policy_entity.c.name == name))


def _row(entity: PolicyEntity, account_id: int | None) -> dict[str, object]:
    return {"account_id": account_id, "name": entity.name, "kind": entity.kind.value,
            "path": entity.path, "depth": entity.depth, "excludes": list(entity.excludes),
            "value_names": list(entity.values), "enabled": entity.enabled,
            "source": entity.source.value, "content": _stored(entity.content)}


def _stored(content: ContentMode) -> str | None:
    return None if content is ContentMode.DEFAULT else content.value


def previous_content_rules(repo: Repository, machine_name: str,
                           account_id: int | None = None) -> ContentRules | None:
    """The content settings the machine's last scan kept content under (None: no such
    machine; the built-in list when it recorded none)."""
    with repo.transaction() as conn:
        try:
            mid = repo.machine_id(conn, machine_name, account_id=account_id)
        except NotFound:
            return None
        return ContentRules.from_json(conn.execute(
            select(machine.c.content_rules).where(machine.c.id == mid)).scalar())
