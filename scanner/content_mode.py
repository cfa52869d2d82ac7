"""The content setting of a monitored entity, apart from the policy model so that the
command line can name its choices without loading the policy (start-up cost)."""

from __future__ import annotations

from enum import StrEnum


class ContentMode(StrEnum):
    """Whether an entity keeps the content of its small text files (for diffs)."""

    DEFAULT = "default"  # the built-in list decides (/etc/ and the like)
    KEEP = "keep"
    NEVER = "never"
