"""Monitored entities in the database: the recommended defaults (seeded) and custom ones."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update

from scanner.errors import NotFound, PolicyError
from scanner.policy import EntityKind, EntitySource, PolicyEntity, recommended_entities
from scanner.storage.tables import policy_entity


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
                         enabled=bool(r.enabled), source=EntitySource(r.source))
            for r in conn.execute(query)]


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
            "source": entity.source.value}
