"""Webhook: each batch is one HTTPS POST of a JSON array of records.

Accepted means a 2xx answer; anything else (another status, a redirect, a timeout, a TLS or
connection error) is a DeliveryError and the batch is retried. Headers: ``Content-Type:
application/json``, ``User-Agent: snapfim/<version>``, ``X-Snapfim-Batch: <first>-<last>``
(delivery ids: the same batch retried has the same value, for receivers that deduplicate),
``Authorization: Bearer <token>`` when a token is configured, and with an HMAC key
``X-Snapfim-Timestamp: <unix seconds>`` plus ``X-Snapfim-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``<timestamp>.<body>`` (check it, and reject old timestamps, to refuse forged
or replayed batches). ``http://`` is only accepted for loopback addresses (settings).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from scanner import __version__
from scanner.emitters.item import Outgoing
from scanner.errors import DeliveryError


def signature(key: bytes, stamp: str, body: bytes) -> str:
    """The ``X-Snapfim-Signature`` value of a body sent at ``stamp``."""
    return "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POSTs batches to one URL."""

    name = "webhook"

    def __init__(self, url: str, *, timeout: float, ca_bundle: Path | None = None,
                 bearer: str | None = None, hmac_key: bytes | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.bearer = bearer
        self.hmac_key = hmac_key
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._context = (ssl.create_default_context(
            cafile=str(ca_bundle) if ca_bundle else None) if self._https else None)

    def send(self, items: Sequence[Outgoing]) -> None:
        """POST the batch; DeliveryError unless the answer is 2xx."""
        body = json.dumps([item.record for item in items], separators=(",", ":"),
                          ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"snapfim/{__version__}",
                   "X-Snapfim-Batch": f"{items[0].delivery_id}-{items[-1].delivery_id}"}
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        if self.hmac_key:
            stamp = str(int(time.time()))
            headers["X-Snapfim-Timestamp"] = stamp
            headers["X-Snapfim-Signature"] = signature(self.hmac_key, stamp, body)
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            detail = response.read(200).decode("utf-8", "replace").strip()
        except TimeoutError as exc:
            raise DeliveryError(f"webhook {self.url}: no answer within {self.timeout:g} s"
                                ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(f"webhook {self.url}: {exc or type(exc).__name__}") from exc
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise DeliveryError(f"webhook {self.url}: HTTP {response.status} {response.reason}"
                                + (f": {detail}" if detail else ""))
