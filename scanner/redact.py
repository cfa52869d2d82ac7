"""Secrets kept out of what snapfim stores, logs and prints.

A SAS URL's credential is its query: ``sig`` is the signature (an HMAC of the other signed
fields made with the account's or a user delegation key), the one parameter that grants
access. The other SAS fields (``sv``, ``sr``, ``sp``, ``st``, ``se``, ``spr``, ``sip``,
``si``, ``skoid``, ``sktid``, ``skt``, ``ske``, ``sks``, ``skv``, ``sdd``, ``ses``, ``rsc*``...)
are what was signed (version, permissions, validity, key ids): no secret, but they change
with every grant of the same blob, so they do not identify it. :func:`redact_url` therefore
keeps only the parameters that say *which* blob is read (``snapshot``, ``versionid``: two
snapshots of one blob are two different disks) and drops every other one, a credential of
any other scheme included. :func:`scrub` removes every URL query from free text (an HTTP
library's error message quotes the URL it failed on).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

_QUERY = re.compile(r"\?[^\s'\"()<>\[\]{}]*=[^\s'\"()<>\[\]{}]*")
IDENTITY_PARAMETERS = frozenset({"snapshot", "versionid"})


def redact_url(text: str) -> str:
    """An http(s) URL without its user info, fragment and every query parameter but those
    naming what is read (:data:`IDENTITY_PARAMETERS`: a blob snapshot or version), so it
    identifies the blob snapshot and cannot read it; other text unchanged."""
    try:
        url = urlsplit(text)
    except ValueError:
        return scrub(text)
    if url.scheme.lower() not in ("http", "https") or not url.netloc:
        return text
    host = url.netloc.rpartition("@")[2]
    kept = [(name.lower(), value)
            for name, value in parse_qsl(url.query, keep_blank_values=True)
            if name.lower() in IDENTITY_PARAMETERS]
    return urlunsplit((url.scheme, host, url.path,
                       urlencode(sorted(kept), quote_via=quote, safe=":"), ""))


def scrub(text: str) -> str:
    """``text`` with every URL query holding a parameter (``?a=b&sig=...``) cut out."""
    return _QUERY.sub("", text)
