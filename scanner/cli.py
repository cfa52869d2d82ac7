"""The ``snapfim`` command line.

Errors of our own tree are printed as one line on stderr with a non-zero exit; anything else
is a bug and keeps its traceback. Exit codes are in :mod:`scanner.cli_output`. Everything a
person reads goes through :func:`scanner.terminal.for_terminal`; ``--json`` output is exact.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from scanner import cli_deliver, cli_fleet, cli_inventory, cli_policy, cli_serve
from scanner.cli_output import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_USAGE,
    coverage_lines,
    iso,
    print_events,
    say,
    scan_exit_code,
    stamp,
    stderr_console,
    table,
    warn,
)
from scanner.cli_support import (
    JsonFlag,
    MachineFilter,
    not_empty,
    open_repository,
    parse_since,
)
from scanner.emitters.records import event_record
from scanner.errors import ConfigError, SnapfimError
from scanner.terminal import for_terminal, write_json

__all__ = ["app", "main", "open_repository", "parse_since"]

SCAN_PANEL, SETUP_PANEL, FLEET_PANEL = "Scan and review", "Policy and setup", "Fleet"
ENTITY_TYPES = ("file", "registry", "software", "service", "daemon")
CATEGORIES = ("added", "removed", "modified", "installed", "upgraded", "downgraded",
              "enabled", "disabled")

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="rich", epilog=EXIT_CODES_HELP,
                  help="Agentless file integrity monitoring from disk images and snapshots.")

ExitCodeOption = Annotated[int, typer.Option(
    "--exit-code", min=0, max=255, metavar="N",
    help="Exit with N when changes were found (0, the default: do not).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("snapfim")
        except PackageNotFoundError:
            from scanner import __version__ as text
        say(f"snapfim {text}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """Agentless file integrity monitoring from disk images and snapshots."""


class _BarProgress:
    """A rich progress bar on stderr, for terminals only."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description:>8}"), BarColumn(),
                                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                  console=stderr_console(), transient=True)
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


# -- scan -----------------------------------------------------------------------------------
def scan(
    images: Annotated[list[str], typer.Argument(
        help="Raw disk image (MBR/GPT/bare fs) or fixed VHD, or an EBS snapshot "
             "(ebs://snap-ID?region=REGION); several: the disks of one machine, in order (the "
             "first keeps one-disk volume names, the others' are d1:p1, d2:p1, ...).",
        metavar="IMAGE...")],
    machine: Annotated[str, typer.Option(
        "--machine", "-m", help="Machine these disks belong to (created on its first scan).",
        callback=not_empty("--machine"))],
    parents: Annotated[list[str] | None, typer.Option(
        "--parent", help="Incremental: an earlier snapshot of the same volume "
                         "(ebs://snap-ID), the one the machine's last scan read (once per "
                         "disk); files on no changed block keep their digest unread.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    exit_code: ExitCodeOption = 0,
) -> None:
    """Scan disk images or snapshots (all the disks of one machine) as the machine's next
    state and report the changes."""
    from scanner.cli_sources import open_argument
    from scanner.emitters.settings import DeliveryConfig
    from scanner.pipeline import ScanOptions
    from scanner.runner import run_machine_scan
    from scanner.settings import Settings

    settings = Settings.from_env()
    repo = open_repository(settings)
    delivery = DeliveryConfig.from_settings(settings)
    with contextlib.ExitStack() as stack:
        sources = []
        for image in images:
            source = open_argument(image)
            stack.callback(source.close)
            sources.append(source)
        reuse = _incremental(repo, machine, parents, sources) if parents else None
        if sys.stderr.isatty() and not as_json:
            bar = stack.enter_context(_BarProgress())
            options = ScanOptions(settings.hash_workers, bar, settings.limits, reuse)
        else:
            options = ScanOptions(settings.hash_workers, limits=settings.limits, reuse=reuse)
        record = run_machine_scan(repo, sources, machine, options, images, delivery=delivery)
    rows = repo.changes(scan_id=record.id)
    coverage = repo.scan_row(record.id)["coverage"] or {}
    total = record.added + record.removed + record.modified
    code = scan_exit_code([record.status], total, exit_code)
    if as_json:
        write_json({
            "scan_id": record.id, "machine": machine, "status": record.status,
            "baseline": record.baseline, "entities": record.entities,
            "added": record.added, "removed": record.removed, "modified": record.modified,
            "coverage": coverage, "events": [event_record(r) for r in rows]})
        raise typer.Exit(code)
    for line in coverage_lines(coverage):
        say(line)
    if record.baseline:
        say(f"{machine}: baseline recorded — {record.entities} entities "
            "(first scan: changes are reported from the next scan on)")
    else:
        say(f"{machine}: scan {record.id} ({record.status}): {total} changes — "
            f"{record.added} added, {record.removed} removed, {record.modified} modified "
            f"({record.entities} entities)")
        print_events(rows)
    if record.status == "partial":
        warn(f"warning: scan {record.id} is partial: "
             f"{coverage.get('unreadable_count', 0)} paths could not be read "
             "(their previous state is kept)")
    raise typer.Exit(code)


def _incremental(repo: Any, machine: str, parents: list[str], sources: list[Any]) -> Any:
    """The reuse of an incremental scan against ``parents`` (each disk's parent is the one of
    its lineage: :func:`scanner.runner.incremental_reuse`), or None, with a warning saying
    why the scan reads everything."""
    from scanner.cli_sources import changed_ranges, locator_of
    from scanner.errors import NotFound
    from scanner.redact import redact_url
    from scanner.runner import Disk, incremental_reuse
    from scanner.sources.locators import stored_locator

    parent_locators = [locator_of(parent) for parent in parents]
    try:
        with repo.transaction() as conn:
            machine_id = repo.machine_id(conn, machine)
    except NotFound:
        machine_id = None
    plan = incremental_reuse(repo, machine_id,
                             [Disk(s, s.locator, parent_locators) for s in sources],
                             changed_ranges)
    for disk in plan.unmatched:
        described = disk.locator.get("snapshot") or stored_locator(disk.locator)
        warn(f"no --parent is of the lineage of {described}: that disk is read in full")
    for text, parent in zip(parents, parent_locators, strict=True):
        if parent not in plan.used:
            warn(f"{redact_url(text)} is not of the same volume's lineage as any disk: "
                 "full scan")
    if plan.used and plan.reuse is None:
        warn(f"{machine}'s last scan did not read the --parent snapshots (or was partial): "
             "full scan")
    return plan.reuse


# -- changes ----------------------------------------------------------------------------------
def changes(
    machine: MachineFilter = None,
    account: Annotated[str | None, typer.Option(
        "--account", help="Only the machines of this account.",
        callback=not_empty("--account"))] = None,
    path: Annotated[str | None, typer.Option(
        "--path", metavar="PATTERN", callback=not_empty("--path"),
        help="Only this path and what lies below it; * and ? match within one segment "
             "(/etc/*.conf, C:\\Windows\\*.ini, HKLM\\SOFTWARE\\*\\Run); Windows paths and "
             "registry keys ignore case.")] = None,
    since: Annotated[str | None, typer.Option(help="7d, 12h, 30m, 2w or an ISO date.")] = None,
    category: Annotated[str | None, typer.Option(
        help="added, removed or modified; software: installed, upgraded, downgraded; "
             "daemons: enabled, disabled.")] = None,
    entity_type: Annotated[str | None, typer.Option(
        "--type", help="file, registry, software, service or daemon.")] = None,
    show_diff: Annotated[bool, typer.Option(
        "--diff", help="Show the unified diff of modified small text files.")] = False,
    unexplained: Annotated[bool, typer.Option(
        "--unexplained", help="Only what no package explains (every event but software's "
                              "and files whose verdict is matches-package).")] = False,
    scan_id: Annotated[int | None, typer.Option("--scan", help="Only this scan's events.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many (the newest).")
                     ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="With --json: configchange or ocsf.")
                   ] = "configchange",
) -> None:
    """List change events (oldest first)."""
    from scanner.policy import path_matcher

    if category is not None and category not in CATEGORIES:
        raise ConfigError(f"--category {category!r}: use {', '.join(CATEGORIES)}")
    if entity_type is not None and entity_type not in ENTITY_TYPES:
        raise ConfigError(f"--type {entity_type!r}: use {', '.join(ENTITY_TYPES)}")
    repo = open_repository()
    if machine is not None:
        repo.require_machine(machine)
    if account is not None:
        from scanner.storage.fleet import get_account

        with repo.transaction() as conn:
            get_account(conn, account)
    matches, prefix = path_matcher(path) if path else (None, None)
    rows = repo.changes(machine_name=machine, since=parse_since(since) if since else None,
                        category=category, entity_type=entity_type, scan_id=scan_id,
                        limit=None if matches else limit, account_name=account,
                        path_prefix=prefix, prefix_case_sensitive=bool(path and path[0] == "/"),
                        unexplained=unexplained)
    if matches is not None:
        rows = [r for r in rows if matches(r["path"])]
        rows = rows[-limit:] if limit else rows
    if as_json or fmt != "configchange":
        from scanner.emitters.sinks import format_records

        for line in format_records(rows, fmt):
            sys.stdout.write(line + "\n")
        return
    if not rows:
        say("no changes")
        return
    print_events(rows, diff=show_diff)


def _scan_json(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "machine", "status", "baseline", "entities", "added", "removed", "modified",
            "error", "attempts", "source", "coverage")
    return {"started_at": iso(row["started_at"]), "finished_at": iso(row["finished_at"]),
            **{k: row.get(k) for k in keys}}


def scans(
    machine: MachineFilter = None,
    coverage: Annotated[bool, typer.Option(
        "--coverage", help="Show each scan's coverage report: volumes with offsets, UUIDs and "
                           "labels, hives, notes, unreadable paths, counts.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many scans (the newest).")
                     ] = 20,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON (every scan with its coverage report).")] = False,
) -> None:
    """List recent scans with status, counts and (optionally) coverage reports."""
    repo = open_repository()
    if machine is not None:
        repo.require_machine(machine)
    rows = repo.scans(machine, limit)
    if as_json:
        write_json([_scan_json(r) for r in rows])
        return
    if not rows:
        say("no scans")
        return
    if not coverage:
        table([("scan", "n"), "machine", "started", "status", ("entities", "n"), "result"],
              [(str(r["id"]), r["machine"], stamp(r["started_at"], seconds=True), r["status"],
                str(r["entities"]), _scan_result(r)) for r in rows])
        return
    for row in rows:
        say(f"scan {row['id']}  {row['machine']}  {stamp(row['started_at'], seconds=True)}  "
            f"{row['status']}  {row['entities']} entities  {_scan_result(row)}")
        for line in coverage_lines(row["coverage"] or {}, detailed=True):
            say("  " + line)


def _scan_result(row: dict[str, Any]) -> str:
    if row["status"] == "failed":
        return f"error: {row['error']}" if row["error"] else "no result"
    if row["status"] not in ("succeeded", "partial"):
        return "in flight"
    if row["baseline"]:
        return "baseline"
    return f"{row['added']} added, {row['removed']} removed, {row['modified']} modified"


def machines(
    account: Annotated[str | None, typer.Option(
        "--account", help="Only the machines of this account.",
        callback=not_empty("--account"))] = None,
    as_json: JsonFlag = False,
) -> None:
    """List machines with their latest scan (any outcome) and their last successful one."""
    rows = open_repository().machines(account)
    if as_json:
        write_json([{
            "machine": r["name"], "account": r["account"], "cloud": r["cloud"], "os": r["os"],
            "present": r["present"], "scans": r["scans"], "last_scan_id": r["last_scan_id"],
            "last_scan_status": r["last_scan_status"], "last_scan_at": iso(r["last_scan_at"]),
            "last_scan_error": r["last_scan_error"],
            "last_success_scan_id": r["last_success_scan_id"],
            "last_success_at": iso(r["last_success_at"]),
            "total_changes": r["total_changes"]} for r in rows])
        return
    if not rows:
        say("no machines (scan one with `snapfim scan IMAGE --machine NAME`)")
        return
    table(["machine", "account", "os", ("changes", "n"), "last scan", "last success"],
          [(r["name"], r["account"], r["os"] or "unknown", str(r["total_changes"]),
            f"{r['last_scan_status']} {stamp(r['last_scan_at'])}" if r["last_scan_status"]
            else "never", stamp(r["last_success_at"]) if r["last_success_at"] else "never")
           for r in rows])


# -- demo and maintenance ---------------------------------------------------------------------
def demo(
    workdir: Annotated[Path | None, typer.Option(
        help="Where to build the images (default: the data directory's demo/).")] = None,
    machine: Annotated[str, typer.Option(
        "--machine", "-m", help="Machine name the demo scans under (its history is reset).",
        callback=not_empty("--machine"))] = "demo-web-01",
) -> None:
    """Build two small real Linux disk images (before/after), scan both, print the changes."""
    from scanner.demo import build_demo_images, closing_note
    from scanner.settings import Settings
    from scanner.storage.policies import load_policy

    settings = Settings.from_env()
    workdir = workdir or settings.data_dir / "demo"
    say(f"building demo disk images in {workdir} ...")
    before, after = build_demo_images(workdir)
    repo = open_repository(settings)
    if repo.delete_machine(machine):
        say(f"(forgot the previous {machine} scans)")
    for image in (before, after):
        say("")
        say(f"$ snapfim scan {image} --machine {machine}")
        with contextlib.suppress(typer.Exit):  # scan's exit code: the demo goes on
            scan([str(image)], machine)
    scan_id = repo.scans(machine, 1)[0]["id"]
    reported = {row["path"] for row in repo.changes(scan_id=scan_id)}
    with repo.transaction() as conn:
        policy = load_policy(conn)
    say("")
    for line in closing_note(policy, reported):
        say(line)
    say("")
    say(f"Next: `snapfim changes --machine {machine} --json`, `snapfim policy show`, "
        f"`snapfim scans --coverage`; database: {settings.database_url}")


db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (done automatically by every command)."""
    from scanner.settings import Settings

    settings = Settings.from_env()
    open_repository(settings)
    say(f"schema up to date: {settings.database_url}")


# -- the command tree, in the order `snapfim --help` lists it ----------------------------------
# Panels appear in the order of their first command: scan and review, then policy and setup,
# then the fleet.
for _command, _name, _panel in (
        (scan, "scan", SCAN_PANEL), (changes, "changes", SCAN_PANEL),
        (scans, "scans", SCAN_PANEL), (machines, "machines", SCAN_PANEL),
        (cli_inventory.inventory, "inventory", SCAN_PANEL),
        (cli_fleet.summary, "summary", SCAN_PANEL), (demo, "demo", SETUP_PANEL),
        (cli_fleet.run_cycle, "cycle", FLEET_PANEL), (cli_fleet.worker, "worker", FLEET_PANEL),
        (cli_fleet.beat, "beat", FLEET_PANEL), (cli_deliver.deliver, "deliver", FLEET_PANEL),
        (cli_serve.serve, "serve", SCAN_PANEL)):
    app.command(_name, rich_help_panel=_panel)(_command)
app.add_typer(cli_policy.policy_app, name="policy", rich_help_panel=SETUP_PANEL)
app.add_typer(db_app, name="db", rich_help_panel=SETUP_PANEL)
app.add_typer(cli_fleet.account_app, name="account", rich_help_panel=FLEET_PANEL)


class _EscapingFormatter(logging.Formatter):
    """Log lines for a terminal: disk text in messages is escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_EscapingFormatter("snapfim: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def main() -> None:
    """Console entry point: one clear line for our errors, a non-zero exit."""
    _log_to_stderr()
    try:
        app(prog_name="snapfim")
    except SnapfimError as exc:
        message = " ".join(str(exc).split("\n"))
        warn(f"snapfim: error: {message}")
        sys.exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR)
    except KeyboardInterrupt:
        warn("snapfim: interrupted")
        sys.exit(130)
