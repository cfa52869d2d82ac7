"""Where committed change events go: a JSON-lines file (ConfigurationChange-style or OCSF)."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scanner.emitters.records import event_record
from scanner.errors import ConfigError

FORMATS = ("configchange", "ocsf")


def format_records(rows: Iterable[dict[str, Any]], fmt: str = "configchange") -> Iterator[str]:
    """Stored event rows as compact JSON lines in the chosen format."""
    if fmt == "configchange":
        for row in rows:
            yield json.dumps(event_record(row), separators=(",", ":"))
    elif fmt == "ocsf":
        from scanner.emitters.ocsf import ocsf_lines

        yield from ocsf_lines(rows)
    else:
        raise ConfigError(f"unknown output format {fmt!r}: use {' or '.join(FORMATS)}")


def emit_events(rows: list[dict[str, Any]], *, jsonl_path: str | None,
                fmt: str = "configchange") -> int:
    """Append the events to the JSON-lines file (if one is configured); returns how many."""
    if not jsonl_path or not rows:
        return 0
    path = Path(jsonl_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in format_records(rows, fmt)).encode()
    with path.open("ab") as handle:  # one locked append: concurrent emitters never interleave
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(text)
            handle.flush()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return len(rows)
