"""Secrets kept out of what snapfim stores, logs and prints.

A SAS URL's query is its credential (``sig=`` signs the rest): :func:`redact_url` gives the
URL without it, which still names the blob; :func:`scrub` removes every URL query from free
text (an HTTP library's error message quotes the URL it failed on).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_QUERY = re.compile(r"\?[^\s'\"()<>\[\]{}]*=[^\s'\"()<>\[\]{}]*")


def redact_url(text: str) -> str:
    """An http(s) URL without its query, fragment and user info; other text unchanged."""
    try:
        url = urlsplit(text)
    except ValueError:
        return scrub(text)
    if url.scheme.lower() not in ("http", "https") or not url.netloc:
        return text
    host = url.netloc.rpartition("@")[2]
    return urlunsplit((url.scheme, host, url.path, "", ""))


def scrub(text: str) -> str:
    """``text`` with every URL query holding a parameter (``?a=b&sig=...``) cut out."""
    return _QUERY.sub("", text)
