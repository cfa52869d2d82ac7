"""What the `snapfim` command prints for people, and its exit codes.

Every line and table cell goes through :func:`scanner.terminal.for_terminal` (names, targets,
registry data, labels and fstab lines come from the scanned disk); the consoles have rich
markup and emoji codes off. JSON output does not come here (``scanner.terminal.write_json``).
Tables fold long cells instead of cutting them, write ``-`` (or a word) instead of leaving a
cell blank, and stay readable at 80 columns and when piped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from scanner.emitters.records import change_lines
from scanner.terminal import console, for_terminal

# Exit codes (README "Exit codes", `snapfim --help`).
EXIT_OK = 0          # done; every scan succeeded
EXIT_ERROR = 1       # an error (nothing scanned, unknown machine, a scan of the cycle failed)
EXIT_USAGE = 2       # bad arguments or settings
EXIT_PARTIAL = 3     # a scan was partial: some paths could not be read (their state is kept)
EXIT_CODES_HELP = (
    "Exit codes: 0 done, every scan succeeded; 1 error (nothing scanned, unknown machine, "
    "a scan of the cycle failed); 2 bad arguments or settings; 3 a scan was partial (some "
    "paths could not be read); N with --exit-code N on scan and cycle: changes were found "
    "(an error outranks N, N outranks 3).")


def scan_exit_code(statuses: list[str], changes: int, exit_code: int) -> int:
    """The exit code of `scan` and `cycle`: 1 when a scan failed, N (``--exit-code``) when
    changes were found, 3 when a scan was partial, else 0."""
    if "failed" in statuses:
        return EXIT_ERROR
    if exit_code and changes:
        return exit_code
    if "partial" in statuses:
        return EXIT_PARTIAL
    return EXIT_OK


NONE = "-"


@cache
def stdout_console() -> Any:
    """The console of what a command prints on stdout (made on first use: a ``--json``
    command never loads rich)."""
    return console(soft_wrap=False)


@cache
def stderr_console() -> Any:
    """The console of warnings and the progress bar, on stderr (made on first use)."""
    return console(stderr=True, soft_wrap=True)


def say(text: str) -> None:
    """Print one line on stdout, escaped for the terminal: a newline inside ``text`` (a file
    name can hold one) is shown as ``\\x0a``, never a line of its own."""
    stdout_console().print(for_terminal(text), soft_wrap=True)


def warn(text: str) -> None:
    """Print one line on stderr, escaped for the terminal."""
    stderr_console().print(for_terminal(text))


def stamp(value: datetime | None, seconds: bool = False) -> str:
    """A UTC time as ``2026-11-20 03:14`` (``-`` when there is none)."""
    if value is None:
        return NONE
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def iso(value: datetime | None) -> str | None:
    """A UTC time as ISO 8601 for JSON (``Z`` suffix)."""
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Cell = str | tuple[str, ...]


def _cell(value: Cell) -> str:
    if isinstance(value, tuple):  # several lines, each escaped
        return "\n".join(for_terminal(line) for line in value) or NONE
    return for_terminal(value) if value else NONE


def table(columns: Sequence[str | tuple[str, str]], rows: Iterable[Sequence[Cell]]) -> None:
    """Print a table: every cell escaped, long cells folded (never cut), empty cells ``-``.

    A column is a header, or ``(header, "n")`` for a right-aligned number column that never
    wraps. A cell is a string, or a tuple of lines. The last column takes what the others
    leave.
    """
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold",
                 collapse_padding=True)
    for spec in columns:
        header, kind = (spec, "") if isinstance(spec, str) else spec
        if kind == "n":
            grid.add_column(header, justify="right", no_wrap=True)
        else:
            grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    out = stdout_console()
    with out.capture() as captured:
        out.print(grid)
    for line in captured.get().splitlines():  # no trailing padding in pipes and files
        out.file.write(line.rstrip() + "\n")


# -- change events ----------------------------------------------------------------------------
def event_lines(row: dict[str, Any], diff: bool = False) -> list[str]:
    """One event as lines: when, machine, category, what; then one line per changed field
    (``diff``: then the unified diff of its content, when kept)."""
    when = stamp(row["detected_at"], seconds=True)
    what = row["path"]
    if row.get("value_name") is not None:
        what = f"{what}  value {row['value_name'] or '(Default)'!r}"
    lines = [f"{when}  {row['machine']}  {row['category']:<8}  {what}"]
    lines.extend(f"    {line}" for line in change_lines(row))
    if diff and row.get("content_diff"):
        lines.extend(f"      {line}" for line in row["content_diff"].split("\n"))
    return lines


def print_events(rows: Iterable[dict[str, Any]], diff: bool = False) -> None:
    """Print change events for a person (``diff``: with their content diffs)."""
    for row in rows:
        for line in event_lines(row, diff):
            say(line)


# -- coverage reports -------------------------------------------------------------------------
def size(n: int | None) -> str:
    """Bytes for people (``24.0 MiB``)."""
    from scanner.coverage import human_size

    return NONE if n is None else human_size(n)


def coverage_lines(coverage: dict[str, Any], *, detailed: bool = False) -> list[str]:
    """A stored coverage report as lines: each disk then its volumes (``detailed``: their
    offset, UUID and label), each hive, notes, unreadable paths, and (``detailed``) the
    counts. Reports stored before disks were listed describe their one disk at the top."""
    if not coverage:
        return []
    volumes = coverage.get("volumes", [])
    disks = coverage.get("disks")
    if not disks:  # an old report: one disk
        disks = [{"name": coverage.get("source", NONE), "size": coverage.get("disk_size"),
                  "partition_table": coverage.get("partition_table"),
                  "volumes": [v["volume"] for v in volumes]}]
    by_label = {v["volume"]: v for v in volumes}
    lines: list[str] = []
    listed: set[str] = set()
    for index, disk in enumerate(disks):
        lines.append(_disk_line(disk, None if len(disks) == 1 else index))
        for label in disk.get("volumes", []):
            if label in by_label and label not in listed:
                listed.add(label)
                lines.extend(_volume_lines(by_label[label], detailed))
    for v in volumes:
        if v["volume"] not in listed:
            lines.extend(_volume_lines(v, detailed))
    for h in coverage.get("hives", []):
        counts = (f", {h.get('keys', 0)} keys, {h.get('values', 0)} values"
                  if h.get("status") not in ("failed", "missing") else "")
        why = f" — {h['reason']}" if h.get("reason") else ""
        file = f", file {h['file']}" if detailed and h.get("file") else ""
        lines.append(f"  hive {h['hive']} ({h['mount']}): {h.get('status')}{counts}{file}{why}")
    lines.extend(f"  note: {n}" for n in coverage.get("notes", []))
    unreadable = coverage.get("unreadable", {})
    total = coverage.get("unreadable_count", len(unreadable))
    for path, reason in sorted(unreadable.items())[:20]:
        lines.append(f"  unreadable: {path}: {reason}")
    if total > min(len(unreadable), 20):
        lines.append(f"  ... and {total - min(len(unreadable), 20)} more unreadable paths")
    if detailed:
        lines.append(f"  counts: {coverage.get('entities', 0)} entities, "
                     f"{coverage.get('files_hashed', 0)} files hashed "
                     f"({size(coverage.get('bytes_hashed', 0))}), {total} unreadable")
    return lines


def _disk_line(disk: dict[str, Any], index: int | None) -> str:
    """``disk: NAME (SIZE, partition table: gpt)``; ``disk N: ...`` on a machine with several
    disks; a disk that could not be read says why."""
    head = "disk" if index is None else f"disk {index}"
    line = (f"{head}: {disk.get('name', NONE)} ({size(disk.get('size'))}, "
            f"partition table: {disk.get('partition_table') or 'none'})")
    if disk.get("status") == "failed":
        line += f" — failed: {disk.get('reason') or NONE}"
    return line


def _volume_lines(v: dict[str, Any], detailed: bool) -> list[str]:
    where = f" mounted at {v['mountpoint']}" if v.get("mountpoint") else ""
    why = f" — {v['reason']}" if v.get("reason") else ""
    at = f", offset {v.get('offset', 0):,}" if detailed else ""
    lines = [f"  {v['volume']}: {v.get('filesystem') or '?'}{at}, "
             f"{size(v.get('length'))}, {v.get('status', NONE)}{where}{why}"]
    if detailed:
        lines.append(f"    uuid {v.get('uuid') or NONE}, label {v.get('label') or NONE}"
                     f", partition {v.get('description') or NONE}")
    return lines
