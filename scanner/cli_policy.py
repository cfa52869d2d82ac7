"""`snapfim policy`: show and edit the monitored entities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from scanner.cli_output import say, table
from scanner.cli_support import JsonFlag, open_repository
from scanner.content_mode import ContentMode
from scanner.terminal import write_json

if TYPE_CHECKING:  # the policy's model is loaded when a command reads it
    from scanner.policy import PolicyEntity

policy_app = typer.Typer(no_args_is_help=True, help="Show and edit the monitored entities.")

AccountOption = Annotated[str | None, typer.Option(
    "--account", help="An onboarded account's policy (default: the one `snapfim scan` uses).")]
EntityName = Annotated[str, typer.Argument(
    help="The entity's name, as `snapfim policy show` lists it.")]
KINDS = {"linux_file": "linux", "windows_file": "windows", "windows_registry": "registry"}
CONTENT_HELP = (
    "Content of small text files (for diffs) at and below the path: keep, never, or default "
    "(the built-in list: /etc/, /usr/local/etc/, systemd units, /boot/grub/, "
    "drivers\\etc). The most specific setting wins; at the same path, never. "
    "Secret-looking paths (shadow files, private keys, .env, credentials...) and files "
    "holding a private key block are never kept, even with keep.")


def _scope(conn: Any, account: str | None) -> int | None:
    from scanner.storage.fleet import get_account
    from scanner.storage.policies import ensure_recommended

    account_id = None if account is None else get_account(conn, account).id
    ensure_recommended(conn, account_id)
    return account_id


def load_entities(account: str | None = None) -> list[PolicyEntity]:
    """Every entity of a policy (the global one by default), enabled or not."""
    from scanner.storage.policies import load_policy

    repo = open_repository()
    with repo.transaction() as conn:
        return load_policy(conn, _scope(conn, account))


def entity_cell(e: PolicyEntity) -> tuple[str, ...]:
    """An entity's name, with its path, excludes and value names below when it has them."""
    lines = [e.name]
    if e.path != e.name:
        lines.append(f"  path: {e.path}")
    if e.excludes:
        lines.append("  exclude: " + ", ".join(e.excludes))
    if e.values:
        lines.append("  values: " + ", ".join(e.values))
    return tuple(lines)


@policy_app.command("show")
def policy_show(as_json: JsonFlag = False, account: AccountOption = None) -> None:
    """Show the monitored entities (recommended and custom), enabled or not."""
    entities = load_entities(account)
    if as_json:
        write_json([{
            "name": e.name, "kind": e.kind.value, "path": e.path, "depth": e.depth,
            "excludes": list(e.excludes), "values": list(e.values), "enabled": e.enabled,
            "source": e.source.value, "content": e.content.value} for e in entities])
        return
    table(["on", "kind", "source", "depth", "content", "entity (path, excludes, values)"],
          [("yes" if e.enabled else "no", KINDS.get(e.kind.value, e.kind.value),
            e.source.value, "all" if e.depth is None else str(e.depth),
            "" if e.content is ContentMode.DEFAULT else e.content.value, entity_cell(e))
           for e in entities])


@policy_app.command("add")
def policy_add(
    path: Annotated[str, typer.Argument(help="/path, /dir/*.conf, C:\\path or HKLM\\key")],
    name: Annotated[str | None, typer.Option(help="Entity name (default: the path).")] = None,
    depth: Annotated[int | None, typer.Option(
        help="Levels below a directory or key (default: all; 0 = the entry itself).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        help="Path pattern to leave out, with its subtree (repeatable).")] = None,
    value: Annotated[list[str] | None, typer.Option(
        help="Registry keys: monitor only this value (repeatable).")] = None,
    content: Annotated[ContentMode, typer.Option(help=CONTENT_HELP)] = ContentMode.DEFAULT,
    account: AccountOption = None,
) -> None:
    """Monitor a custom path or registry key (a directory or key monitors its tree).

    With --content keep, the content of its small text files is kept so
    that their changes carry a unified diff; --content never keeps none.
    Secret-looking paths and files holding a private key are never kept,
    whatever the setting."""
    from scanner.policy import make_entity
    from scanner.storage.policies import add_entity

    entity = make_entity(path, name=name, depth=depth, excludes=tuple(exclude or ()),
                         values=tuple(value or ()), content=content)
    repo = open_repository()
    with repo.transaction() as conn:
        add_entity(conn, entity, _scope(conn, account))
    setting = "" if content is ContentMode.DEFAULT else f", content {content.value}"
    say(f"added {entity.name} ({entity.kind.value}: {entity.path}{setting})")


@policy_app.command("content")
def policy_content(
    name: EntityName,
    content: Annotated[ContentMode, typer.Argument(help=CONTENT_HELP)],
    account: AccountOption = None,
) -> None:
    """Set the content setting of an entity, recommended ones too.

    Applied at each machine's next scan: content newly kept is read then,
    content no longer kept is purged from the database and from the diffs
    stored in its events."""
    from scanner.storage.policies import set_content

    repo = open_repository()
    with repo.transaction() as conn:
        entity = set_content(conn, name, content, _scope(conn, account))
    say(f"content {content.value} for {name} ({entity.path} and below)")


def _set_enabled(name: str, enabled: bool, account: str | None) -> None:
    from scanner.storage.policies import set_enabled

    repo = open_repository()
    with repo.transaction() as conn:
        set_enabled(conn, name, enabled, _scope(conn, account))
    say(f"{'enabled' if enabled else 'disabled'} {name}")


@policy_app.command("disable")
def policy_disable(name: EntityName, account: AccountOption = None) -> None:
    """Stop monitoring an entity, keeping its definition."""
    _set_enabled(name, False, account)


@policy_app.command("enable")
def policy_enable(name: EntityName, account: AccountOption = None) -> None:
    """Monitor a disabled entity again."""
    _set_enabled(name, True, account)


@policy_app.command("remove")
def policy_remove(name: EntityName, account: AccountOption = None) -> None:
    """Delete a custom entity (recommended ones can only be disabled)."""
    from scanner.storage.policies import remove_entity

    repo = open_repository()
    with repo.transaction() as conn:
        remove_entity(conn, name, _scope(conn, account))
    say(f"removed {name}")
