"""What a sink is handed: one record, formatted, with what transports need to label it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event or alert on its way to a sink.

    ``record`` is the JSON object in the configured format; ``time`` when the change was
    detected (or the alert raised); ``msgid`` a short kind (``added``, ``scan-failed``...);
    ``severity`` a syslog severity (3 error, 4 warning, 5 notice); ``params`` labels for
    transports that carry structured data (syslog SD parameters).
    """

    delivery_id: int
    record: dict[str, Any]
    time: datetime
    msgid: str
    severity: int
    params: dict[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    """A destination: ``send`` returns once the batch is accepted, or raises DeliveryError."""

    name: str

    def send(self, items: Sequence[Outgoing]) -> None:
        """Deliver the batch, in order."""
        ...
