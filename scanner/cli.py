"""The ``snapfim`` command line.

Errors of our own tree are printed as one line on stderr with a non-zero exit; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from scanner import cli_deliver, cli_fleet
from scanner.emitters.records import change_lines, event_record
from scanner.errors import ConfigError, SnapfimError
from scanner.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Agentless file integrity monitoring from disk images and snapshots.")
policy_app = typer.Typer(no_args_is_help=True, help="Show and edit the monitored entities.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")
app.add_typer(cli_fleet.account_app, name="account")
app.command()(cli_fleet.summary)
app.command("cycle")(cli_fleet.run_cycle)
app.command()(cli_fleet.worker)
app.command()(cli_fleet.beat)
app.command()(cli_deliver.deliver)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def open_repository(settings: Settings | None = None) -> Any:
    """The repository on the configured database, its schema brought up to date."""
    from scanner.storage.db import make_engine, upgrade
    from scanner.storage.repository import Repository

    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return Repository(engine)


class _BarProgress:
    """A rich progress bar on stderr, for terminals only."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:>8}"), BarColumn(),
                                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                  console=err, transient=True)
        self._task: Any = None
        self._bytes = False

    def __enter__(self) -> _BarProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._bytes = name == "hashing"
        self._task = self._progress.add_task(name, total=total, detail="")

    def advance(self, amount: int) -> None:
        if self._task is None:
            return
        self._progress.advance(self._task, amount)
        task = self._progress.tasks[-1]
        done, total = int(task.completed), int(task.total or 0)
        detail = (f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB" if self._bytes
                  else f"{done:,}/{total:,}")
        self._progress.update(self._task, detail=detail)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` ago, or an ISO 8601 date/time (UTC if no zone)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount),
                 "d": timedelta(days=amount), "w": timedelta(weeks=amount)}[unit]
        return now - delta
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(f"--since {text!r}: use 7d, 12h, 30m, 2w or an ISO date") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _print_events(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        when = row["detected_at"].strftime("%Y-%m-%d %H:%M:%S") if row["detected_at"] else "-"
        what = row["path"]
        if row.get("value_name") is not None:
            what = f"{what}  value {row['value_name'] or '(Default)'!r}"
        out.print(f"{when}  {row['machine']}  {row['category']:<8}  {what}", markup=False)
        for line in change_lines(row):
            out.print(f"    {line}", markup=False)


# -- scan -----------------------------------------------------------------------------------
@app.command()
def scan(
    image: Annotated[Path, typer.Argument(help="Raw disk image (MBR/GPT/bare fs) or fixed VHD.")],
    machine: Annotated[str, typer.Option("--machine", "-m", help="Machine this disk belongs to.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Scan a disk image as the machine's next state and report the changes."""
    from scanner.emitters.delivery import DeliveryConfig
    from scanner.pipeline import ScanOptions
    from scanner.runner import run_scan
    from scanner.sources.local import open_local

    settings = Settings.from_env()
    repo = open_repository(settings)
    delivery = DeliveryConfig.from_settings(settings)
    with open_local(image) as source:
        if sys.stderr.isatty() and not as_json:
            with _BarProgress() as bar:
                options = ScanOptions(settings.hash_workers, bar, settings.limits)
                record = run_scan(repo, source, machine, options, str(image), delivery=delivery)
        else:
            options = ScanOptions(settings.hash_workers, limits=settings.limits)
            record = run_scan(repo, source, machine, options, str(image), delivery=delivery)
    rows = repo.changes(scan_id=record.id)
    scan_row = repo.scans(machine)[0]
    coverage = scan_row["coverage"] or {}
    if as_json:
        out.print_json(json.dumps({
            "scan_id": record.id, "machine": machine, "status": record.status,
            "baseline": record.baseline, "entities": record.entities,
            "added": record.added, "removed": record.removed, "modified": record.modified,
            "coverage": coverage, "events": [event_record(r) for r in rows]}))
        return
    _print_coverage(coverage)
    if record.baseline:
        out.print(f"{machine}: baseline recorded — {record.entities} entities "
                  f"(first scan: changes are reported from the next scan on)")
    else:
        total = record.added + record.removed + record.modified
        out.print(f"{machine}: scan {record.id} ({record.status}): {total} changes — "
                  f"{record.added} added, {record.removed} removed, {record.modified} modified "
                  f"({record.entities} entities)")
        _print_events(rows)
    if record.status == "partial":
        err.print(f"warning: scan {record.id} is partial: "
                  f"{coverage.get('unreadable_count', 0)} paths could not be read "
                  "(their previous state is kept)")


def _print_coverage(coverage: dict[str, Any]) -> None:
    from scanner.coverage import Coverage, HiveReport, VolumeReport

    if not coverage:
        return
    report = Coverage(source=coverage["source"], disk_size=coverage["disk_size"],
                      partition_table=coverage["partition_table"],
                      volumes=[VolumeReport(**v) for v in coverage["volumes"]],
                      notes=coverage.get("notes", []), unreadable=coverage.get("unreadable", {}),
                      hives=[HiveReport(**h) for h in coverage.get("hives", [])])
    for line in report.summary_lines():
        out.print(line, markup=False)


# -- changes ----------------------------------------------------------------------------------
@app.command()
def changes(
    machine: Annotated[str | None, typer.Option("--machine", "-m")] = None,
    since: Annotated[str | None, typer.Option(help="7d, 12h, 30m, 2w or an ISO date.")] = None,
    category: Annotated[str | None, typer.Option(help="added, removed or modified.")] = None,
    entity_type: Annotated[str | None, typer.Option("--type", help="file or registry.")] = None,
    scan_id: Annotated[int | None, typer.Option("--scan", help="Only this scan's events.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many (the newest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="With --json: configchange or ocsf.")
                   ] = "configchange",
) -> None:
    """List change events (oldest first)."""
    if category is not None and category not in ("added", "removed", "modified"):
        raise ConfigError(f"--category {category!r}: use added, removed or modified")
    if entity_type is not None and entity_type not in ("file", "registry"):
        raise ConfigError(f"--type {entity_type!r}: use file or registry")
    repo = open_repository()
    rows = repo.changes(machine_name=machine, since=parse_since(since) if since else None,
                        category=category, entity_type=entity_type, scan_id=scan_id,
                        limit=limit)
    if as_json or fmt != "configchange":
        from scanner.emitters.sinks import format_records

        for line in format_records(rows, fmt):
            sys.stdout.write(line + "\n")
        return
    if not rows:
        out.print("no changes")
        return
    _print_events(rows)


@app.command()
def machines() -> None:
    """List machines with their last scan."""
    rows = open_repository().machines()
    table = Table(box=None, pad_edge=False)
    for column in ("machine", "account", "os", "scans", "last scan"):
        table.add_column(column)
    for row in rows:
        last = row["last_scan"].strftime("%Y-%m-%d %H:%M") if row["last_scan"] else "-"
        table.add_row(row["name"], row["account"], row["os"] or "-", str(row["scans"]), last)
    out.print(table)


@app.command()
def scans(
    machine: Annotated[str | None, typer.Option("--machine", "-m")] = None,
    coverage: Annotated[bool, typer.Option("--coverage",
                                           help="Show each scan's coverage.")] = False,
    limit: Annotated[int, typer.Option()] = 20,
) -> None:
    """List recent scans with status, counts and (optionally) coverage reports."""
    for row in open_repository().scans(machine, limit):
        kind = "baseline" if row["baseline"] else (
            f"+{row['added']} -{row['removed']} ~{row['modified']}")
        started = row["started_at"].strftime("%Y-%m-%d %H:%M:%S")
        out.print(f"scan {row['id']}  {row['machine']}  {started}  {row['status']}  "
                  f"{row['entities']} entities  {kind}", markup=False)
        if row["error"]:
            out.print(f"  error: {row['error']}", markup=False)
        if coverage:
            _print_coverage(row["coverage"] or {})


# -- policy -----------------------------------------------------------------------------------
AccountOption = Annotated[str | None, typer.Option(
    "--account", help="An onboarded account's policy (default: the one `snapfim scan` uses).")]


def _scope(conn: Any, account: str | None) -> int | None:
    from scanner.storage.fleet import get_account
    from scanner.storage.policies import ensure_recommended

    account_id = None if account is None else get_account(conn, account).id
    ensure_recommended(conn, account_id)
    return account_id


@policy_app.command("show")
def policy_show(as_json: Annotated[bool, typer.Option("--json")] = False,
                account: AccountOption = None) -> None:
    """Show the monitored entities (recommended and custom), enabled or not."""
    from scanner.storage.policies import load_policy

    repo = open_repository()
    with repo.transaction() as conn:
        entities = load_policy(conn, _scope(conn, account))
    if as_json:
        out.print_json(json.dumps([{
            "name": e.name, "kind": e.kind.value, "path": e.path, "depth": e.depth,
            "excludes": list(e.excludes), "values": list(e.values), "enabled": e.enabled,
            "source": e.source.value} for e in entities]))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("enabled", "kind", "source", "name", "path", "depth", "excludes", "values"):
        table.add_column(column, overflow="fold")
    for e in entities:
        depth = "∞" if e.depth is None else str(e.depth)
        table.add_row("yes" if e.enabled else "no", e.kind.value, e.source.value, e.name,
                      e.path if e.path != e.name else "", depth, ", ".join(e.excludes),
                      ", ".join(repr(v) for v in e.values))
    out.print(table)


@policy_app.command("add")
def policy_add(
    path: Annotated[str, typer.Argument(help="/path, /dir/*.conf, C:\\path or HKLM\\key")],
    name: Annotated[str | None, typer.Option(help="Entity name (default: the path).")] = None,
    depth: Annotated[int | None,
                     typer.Option(help="Levels below a directory (default: all).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Path pattern to leave out.")] = None,
    value: Annotated[list[str] | None, typer.Option(
        help="Registry keys: monitor only this value (repeatable).")] = None,
    account: AccountOption = None,
) -> None:
    """Monitor a custom path or registry key (a directory or key monitors its tree)."""
    from scanner.policy import make_entity
    from scanner.storage.policies import add_entity

    entity = make_entity(path, name=name, depth=depth, excludes=tuple(exclude or ()),
                         values=tuple(value or ()))
    repo = open_repository()
    with repo.transaction() as conn:
        add_entity(conn, entity, _scope(conn, account))
    out.print(f"added {entity.name} ({entity.kind.value}: {entity.path})", markup=False)


def _set_enabled(name: str, enabled: bool, account: str | None) -> None:
    from scanner.storage.policies import set_enabled

    repo = open_repository()
    with repo.transaction() as conn:
        set_enabled(conn, name, enabled, _scope(conn, account))
    out.print(f"{'enabled' if enabled else 'disabled'} {name}", markup=False)


@policy_app.command("disable")
def policy_disable(name: str, account: AccountOption = None) -> None:
    """Stop monitoring an entity, keeping its definition."""
    _set_enabled(name, False, account)


@policy_app.command("enable")
def policy_enable(name: str, account: AccountOption = None) -> None:
    """Monitor a disabled entity again."""
    _set_enabled(name, True, account)


@policy_app.command("remove")
def policy_remove(name: str, account: AccountOption = None) -> None:
    """Delete a custom entity (recommended ones can only be disabled)."""
    from scanner.storage.policies import remove_entity

    repo = open_repository()
    with repo.transaction() as conn:
        remove_entity(conn, name, _scope(conn, account))
    out.print(f"removed {name}", markup=False)


# -- demo and maintenance ---------------------------------------------------------------------
@app.command()
def demo(
    workdir: Annotated[Path | None, typer.Option(help="Where to build the images.")] = None,
    machine: Annotated[str, typer.Option("--machine", "-m")] = "demo-web-01",
) -> None:
    """Build two small real Linux disk images (before/after), scan both, print the changes."""
    from scanner.demo import build_demo_images

    settings = Settings.from_env()
    workdir = workdir or settings.data_dir / "demo"
    out.print(f"building demo disk images in {workdir} ...", markup=False)
    before, after = build_demo_images(workdir)
    repo = open_repository(settings)
    if repo.delete_machine(machine):
        out.print(f"(forgot the previous {machine} scans)", markup=False)
    for image in (before, after):
        out.print(f"\n$ snapfim scan {image} --machine {machine}", markup=False)
        scan(image, machine)
    out.print("\nThe intruder also rewrote /etc/ssh/sshd_config and /var/log/syslog: they are not "
              "in the recommended policy, so they are not reported (`snapfim policy add "
              "/etc/ssh` watches the first from the next scan on).", markup=False)
    out.print(f"\nNext: `snapfim changes --machine {machine} --json`, `snapfim policy show`, "
              f"`snapfim scans --coverage`; database: {settings.database_url}", markup=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (done automatically by every command)."""
    settings = Settings.from_env()
    open_repository(settings)
    out.print(f"schema up to date: {settings.database_url}", markup=False)


def main() -> None:
    """Console entry point: one clear line for our errors, a non-zero exit."""
    try:
        app()
    except SnapfimError as exc:
        err.print(f"snapfim: error: {exc}", markup=False)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        err.print("snapfim: interrupted", markup=False)
        sys.exit(130)
