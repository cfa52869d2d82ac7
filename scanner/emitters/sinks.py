"""Record formats, and the JSON-lines file sink (``SNAPFIM_EVENTS_JSONL``): one record per
line, ConfigurationChange-style or OCSF, appended under an exclusive lock and fsynced before
the batch counts as delivered."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scanner.emitters.item import Outgoing
from scanner.emitters.records import event_record
from scanner.errors import ConfigError, DeliveryError

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


class JsonlSink:
    """Appends each batch to a JSON-lines file."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def send(self, items: Sequence[Outgoing]) -> None:
        """Append the records, one line each, in one locked, fsynced write."""
        text = "".join(json.dumps(item.record, separators=(",", ":")) + "\n" for item in items)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as handle:  # one locked append: writers never interleave
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    handle.write(text.encode())
                    handle.flush()
                    os.fsync(handle.fileno())
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as exc:
            raise DeliveryError(f"events file {self.path}: {exc.strerror or exc}") from exc
